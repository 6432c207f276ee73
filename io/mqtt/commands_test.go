package mqtt

import (
	"encoding/base64"
	"strings"
	"testing"
)

// A well-formed model_install: sha is 64 hex digits, sig the base64 of 64
// bytes.
var (
	sha = strings.Repeat("ab", 32)
	sig = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 64)))
)

// install is a model_install request with more fields appended (each
// starting with a comma).
func install(more string) string {
	return `{"correlation_id":"1","url":"https://files.plant/gear.tar.gz","sha256":"` + sha + `","signature":"` + sig + `"` + more + `}`
}

func TestParseRequest(t *testing.T) {
	long := strings.Repeat("x", 129)
	for _, tc := range []struct {
		name, cmd, payload string
		want               string // error text; "" = valid
		field              string
	}{
		{"trigger ok", "trigger", `{"correlation_id":"1","part_id":"A42"}`, "", ""},
		{"trigger no part", "trigger", `{"correlation_id":"1"}`, "", ""},
		{"not json", "trigger", `hello`, "field payload: not a JSON object", "payload"},
		{"json array", "status", `[1]`, "field payload: not a JSON object", "payload"},
		{"null", "status", `null`, "field payload: not a JSON object", "payload"},
		{"no correlation", "status", `{}`, "field correlation_id: is required", "correlation_id"},
		{"correlation number", "status", `{"correlation_id":5}`, "field correlation_id: must be a string", "correlation_id"},
		{"correlation long", "status", `{"correlation_id":"` + long + `"}`, "field correlation_id: is 129 bytes long; at most 128", "correlation_id"},
		{"unknown command", "explode", `{"correlation_id":"1"}`, `field command: unknown command "explode"; use one of clear_fault, model_activate, model_install, model_rollback, pause, product, reload, resume, status, threshold, trigger`, "command"},
		{"unknown field", "threshold", `{"correlation_id":"1","imge":0.5}`, "field imge: unknown for command threshold; allowed: correlation_id, image_threshold, pixel_threshold", "imge"},
		{"part id long", "trigger", `{"correlation_id":"1","part_id":"` + long + `"}`, "field part_id: is 129 bytes long; at most 128", "part_id"},
		{"part id control", "trigger", `{"correlation_id":"1","part_id":"A\u0007"}`, "field part_id: contains the non-printable character U+0007", "part_id"},
		{"part id number", "trigger", `{"correlation_id":"1","part_id":42}`, "field part_id: must be a string", "part_id"},
		{"threshold ok", "threshold", `{"correlation_id":"1","image_threshold":0.5,"pixel_threshold":1}`, "", ""},
		{"threshold zero", "threshold", `{"correlation_id":"1","image_threshold":0}`, "field image_threshold: 0 is out of range (0, 1]", "image_threshold"},
		{"threshold big", "threshold", `{"correlation_id":"1","pixel_threshold":1.5}`, "field pixel_threshold: 1.5 is out of range (0, 1]", "pixel_threshold"},
		{"threshold string", "threshold", `{"correlation_id":"1","image_threshold":"0.5"}`, `field image_threshold: must be a number in (0, 1], got "0.5"`, "image_threshold"},
		{"threshold null", "threshold", `{"correlation_id":"1","image_threshold":null}`, "field image_threshold: must be a number", "image_threshold"},
		{"threshold none", "threshold", `{"correlation_id":"1"}`, "field image_threshold: set image_threshold and/or pixel_threshold", "image_threshold"},
		{"pause extra", "pause", `{"correlation_id":"1","now":true}`, "field now: unknown for command pause; allowed: correlation_id", "now"},
		{"clear_fault ok", "clear_fault", `{"correlation_id":"1"}`, "", ""},
		{"clear_fault extra", "clear_fault", `{"correlation_id":"1","all":true}`, "field all: unknown for command clear_fault; allowed: correlation_id", "all"},
		// Issue 26: product changeover and model rollout.
		{"product ok", "product", `{"correlation_id":"1","product":"gear-2.b_X"}`, "", ""},
		{"product missing", "product", `{"correlation_id":"1"}`, "field product: is required", "product"},
		{"product number", "product", `{"correlation_id":"1","product":7}`, "field product: must be a string", "product"},
		{"product null", "product", `{"correlation_id":"1","product":null}`, "field product: must be a string", "product"},
		{"product empty", "product", `{"correlation_id":"1","product":""}`, `field product: "" must be 1-64 characters`, "product"},
		{"product long", "product", `{"correlation_id":"1","product":"` + strings.Repeat("p", 65) + `"}`, "field product: \"" + strings.Repeat("p", 65) + `" must be 1-64 characters`, "product"},
		{"product 64", "product", `{"correlation_id":"1","product":"` + strings.Repeat("p", 64) + `"}`, "", ""},
		{"product slash", "product", `{"correlation_id":"1","product":"gear/2"}`, `field product: "gear/2" contains "/"; a product name is 1-64 characters`, "product"},
		{"product space", "product", `{"correlation_id":"1","product":"gear 2"}`, `field product: "gear 2" contains " "`, "product"},
		{"product extra", "product", `{"correlation_id":"1","product":"gear","code":1}`, "field code: unknown for command product; allowed: correlation_id, product", "code"},
		{"install ok", "model_install", install(``), "", ""},
		{"install all", "model_install", install(`,"product":"gear","activate":true,"size":1234`), "", ""},
		{"install http", "model_install", strings.Replace(install(``), "https://", "http://", 1), "", ""},
		{"install upper hex", "model_install", strings.Replace(install(``), sha, strings.ToUpper(sha), 1), "", ""},
		{"install no url", "model_install", `{"correlation_id":"1","sha256":"` + sha + `","signature":"` + sig + `"}`, "field url: is required", "url"},
		{"install url ftp", "model_install", strings.Replace(install(``), "https://", "ftp://", 1), `field url: "ftp://files.plant/gear.tar.gz": the scheme must be https (or http where rollout.allow_http is set), got "ftp"`, "url"},
		{"install url relative", "model_install", strings.Replace(install(``), "https://files.plant/", "", 1), `field url: "gear.tar.gz": the scheme must be https`, "url"},
		{"install url no host", "model_install", strings.Replace(install(``), "https://files.plant/", "https:///", 1), `field url: "https:///gear.tar.gz" has no host`, "url"},
		{"install url port only", "model_install", strings.Replace(install(``), "files.plant", ":443", 1), `field url: "https://:443/gear.tar.gz" has no host`, "url"},
		{"install url bad", "model_install", strings.Replace(install(``), "https://files.plant/", "https://files plant/%zz", 1), "field url: cannot be parsed", "url"},
		{"install url creds", "model_install", strings.Replace(install(``), "https://", "https://user:pw@", 1), "field url: carries credentials", "url"},
		{"install url long", "model_install", strings.Replace(install(``), "gear.tar.gz", strings.Repeat("g", 2100), 1), "field url: is 2120 bytes long; at most 2048", "url"},
		{"install url number", "model_install", `{"correlation_id":"1","url":5,"sha256":"` + sha + `","signature":"` + sig + `"}`, "field url: must be a string", "url"},
		{"install no sha", "model_install", `{"correlation_id":"1","url":"https://a/b","signature":"` + sig + `"}`, "field sha256: is required", "sha256"},
		{"install sha short", "model_install", strings.Replace(install(``), sha, sha[:63], 1), `field sha256: "` + sha[:63] + `" is not 64 hex digits`, "sha256"},
		{"install sha not hex", "model_install", strings.Replace(install(``), sha, "g"+sha[1:], 1), "field sha256: \"g" + sha[1:] + `" is not 64 hex digits`, "sha256"},
		{"install sha prefixed", "model_install", strings.Replace(install(``), sha, "sha256:"+sha, 1), `field sha256: "sha256:` + sha + `" is not 64 hex digits`, "sha256"},
		{"install no signature", "model_install", `{"correlation_id":"1","url":"https://a/b","sha256":"` + sha + `"}`, "field signature: is required", "signature"},
		{"install signature not base64", "model_install", strings.Replace(install(``), sig, "!!"+sig[2:], 1), "field signature: is not standard base64; want the base64 of a 64-byte ed25519 signature", "signature"},
		{"install signature short", "model_install", strings.Replace(install(``), sig, base64.StdEncoding.EncodeToString(make([]byte, 63)), 1), "field signature: is 63 bytes once decoded; want the base64 of a 64-byte", "signature"},
		{"install signature urlsafe", "model_install", strings.Replace(install(``), sig, strings.Repeat("_", 86)+"==", 1), "field signature: is not standard base64", "signature"},
		{"install bad product", "model_install", install(`,"product":"a b"`), `field product: "a b" contains " "`, "product"},
		{"install activate string", "model_install", install(`,"activate":"yes"`), `field activate: must be true or false, got "yes"`, "activate"},
		{"install size float", "model_install", install(`,"size":1.5`), "field size: must be a whole number of bytes, got 1.5", "size"},
		{"install size negative", "model_install", install(`,"size":-1`), "field size: -1 is negative", "size"},
		{"install extra", "model_install", install(`,"force":true`), "field force: unknown for command model_install; allowed: correlation_id, url, sha256, signature, product, activate, size", "force"},
		{"activate ok", "model_activate", `{"correlation_id":"1","sha256":"` + sha + `","product":"gear"}`, "", ""},
		{"activate no product", "model_activate", `{"correlation_id":"1","sha256":"` + sha + `"}`, "", ""},
		{"activate no sha", "model_activate", `{"correlation_id":"1","product":"gear"}`, "field sha256: is required", "sha256"},
		{"activate bad sha", "model_activate", `{"correlation_id":"1","sha256":"abc"}`, `field sha256: "abc" is not 64 hex digits`, "sha256"},
		{"activate url", "model_activate", `{"correlation_id":"1","sha256":"` + sha + `","url":"https://a/b"}`, "field url: unknown for command model_activate; allowed: correlation_id, sha256, product", "url"},
		{"rollback ok", "model_rollback", `{"correlation_id":"1"}`, "", ""},
		{"rollback product", "model_rollback", `{"correlation_id":"1","product":"gear"}`, "", ""},
		{"rollback bad product", "model_rollback", `{"correlation_id":"1","product":""}`, `field product: "" must be 1-64`, "product"},
		{"rollback sha", "model_rollback", `{"correlation_id":"1","sha256":"` + sha + `"}`, "field sha256: unknown for command model_rollback; allowed: correlation_id, product", "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRequest(tc.cmd, []byte(tc.payload))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
			if fe, ok := err.(*fieldError); !ok || fe.field != tc.field {
				t.Fatalf("field %v, want %q", err, tc.field)
			}
		})
	}
}

// TestRequestDescribe: what makes two requests under one correlation id
// the same request (issue 24 #10): the command's fields, not their order or
// spelling in JSON.
func TestRequestDescribe(t *testing.T) {
	for _, tc := range []struct {
		cmd, a, b string
		same      bool
	}{
		{"trigger", `{"correlation_id":"1","part_id":"A"}`, `{ "part_id" : "A", "correlation_id":"1"}`, true},
		{"trigger", `{"correlation_id":"1","part_id":"A"}`, `{"correlation_id":"1","part_id":"B"}`, false},
		{"trigger", `{"correlation_id":"1"}`, `{"correlation_id":"1","part_id":""}`, true},
		{"threshold", `{"correlation_id":"1","image_threshold":0.5}`, `{"correlation_id":"1","image_threshold":5e-1}`, true},
		{"threshold", `{"correlation_id":"1","image_threshold":0.5}`, `{"correlation_id":"1","pixel_threshold":0.5}`, false},
		{"pause", `{"correlation_id":"1"}`, `{"correlation_id":"1"}`, true},
		{"product", `{"correlation_id":"1","product":"gear"}`, `{"product":"gear","correlation_id":"1"}`, true},
		{"product", `{"correlation_id":"1","product":"gear"}`, `{"correlation_id":"1","product":"shaft"}`, false},
		{"model_install", install(``), install(`,"activate":false`), true},
		{"model_install", install(``), install(`,"activate":true`), false},
		{"model_install", install(``), install(`,"product":"gear"`), false},
		{"model_install", install(``), install(`,"size":7`), false},
		{"model_install", install(``), strings.Replace(install(``), "gear.tar", "gear2.tar", 1), false},
		{"model_install", install(``), strings.Replace(install(``), sig, base64.StdEncoding.EncodeToString([]byte(strings.Repeat("t", 64))), 1), false},
		{"model_install", install(``), strings.Replace(install(``), sha, strings.ToUpper(sha), 1), true},
		{"model_activate", `{"correlation_id":"1","sha256":"` + sha + `"}`, `{"correlation_id":"1","sha256":"` + sha + `","product":"gear"}`, false},
		{"model_rollback", `{"correlation_id":"1"}`, `{"correlation_id":"1","product":"gear"}`, false},
	} {
		ra, err := parseRequest(tc.cmd, []byte(tc.a))
		if err != nil {
			t.Fatal(err)
		}
		rb, err := parseRequest(tc.cmd, []byte(tc.b))
		if err != nil {
			t.Fatal(err)
		}
		if got := ra.describe() == rb.describe(); got != tc.same {
			t.Errorf("%s %s vs %s: same=%v (%q, %q), want %v", tc.cmd, tc.a, tc.b, got, ra.describe(), rb.describe(), tc.same)
		}
	}
}

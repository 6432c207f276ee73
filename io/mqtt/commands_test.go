package mqtt

import (
	"strings"
	"testing"
)

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
		{"unknown command", "explode", `{"correlation_id":"1"}`, `field command: unknown command "explode"; use one of clear_fault, pause, reload, resume, status, threshold, trigger`, "command"},
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

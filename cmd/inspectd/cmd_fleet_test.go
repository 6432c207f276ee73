package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

// fakeFleet answers model commands for stations on a real broker the way
// inspectd's MQTT client does (reply on reply/<name> with the request's
// correlation_id; progress as events), each station as its behaviour says:
// "ok", "fail", "silent" (never answers), "drop" (goes offline after the
// command, as a crashing station's Last Will says).
type fakeFleet struct {
	t        *testing.T
	cli      paho.Client
	behave   map[string]string
	mu       sync.Mutex
	requests map[string]map[string]any // station → request
}

func startFakeFleet(t *testing.T, b *mqtttest.Broker, behave map[string]string) *fakeFleet {
	t.Helper()
	f := &fakeFleet{t: t, behave: behave, requests: map[string]map[string]any{}}
	subscribed := make(chan struct{})
	var once sync.Once
	opts := mqtttest.ClientOptions(t, b, "fake-fleet").SetOnConnectHandler(func(c paho.Client) {
		tok := c.Subscribe("inspectd/+/cmd/+", 1, f.onCommand)
		tok.Wait()
		once.Do(func() { close(subscribed) })
	})
	f.cli = paho.NewClient(opts)
	if tok := f.cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("fake fleet: connect: %v", tok.Error())
	}
	t.Cleanup(func() { f.cli.Disconnect(100) })
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("fake fleet: not subscribed within 10s")
	}
	for st, how := range behave {
		state := "online"
		if how == "offline" {
			state = "offline"
		}
		f.publish("inspectd/"+st+"/status", map[string]any{"state": state, "station": st, "reason": map[bool]string{true: "connection_lost"}[state == "offline"]}, true)
	}
	return f
}

func (f *fakeFleet) publish(topic string, v any, retained bool) {
	b, _ := json.Marshal(v)
	f.cli.Publish(topic, 1, retained, b).Wait()
}

func (f *fakeFleet) onCommand(_ paho.Client, m paho.Message) {
	parts := strings.Split(m.Topic(), "/") // inspectd/<st>/cmd/<name>
	st, name := parts[1], parts[3]
	var req map[string]any
	json.Unmarshal(m.Payload(), &req)
	f.mu.Lock()
	f.requests[st] = req
	f.mu.Unlock()
	corr, _ := req["correlation_id"].(string)
	sha, _ := req["sha256"].(string)
	base := "inspectd/" + st + "/"
	go func() {
		switch f.behave[st] {
		case "ok":
			f.publish(base+"event", inspection.Event{Station: st, Kind: inspection.EventModelInstall, Severity: inspection.Info,
				Message: "model install: download 10 of 20 bytes", Fields: map[string]string{"stage": "download", "sha256": sha}}, false)
			f.publish(base+"event", inspection.Event{Station: st, Kind: inspection.EventModelInstall, Severity: inspection.Info,
				Message: "another archive", Fields: map[string]string{"stage": "download", "sha256": strings.Repeat("e", 64)}}, false)
			time.Sleep(50 * time.Millisecond)
			f.publish(base+"reply/"+name, map[string]any{"correlation_id": "someone-else", "command": name, "ok": false, "error": "not ours"}, false)
			f.publish(base+"reply/"+name, map[string]any{"correlation_id": corr, "command": name, "ok": true,
				"result": inspection.ModelOutcome{Product: "gear", ArchiveSHA256: sha, BundleHash: "sha256:b1", State: "active", Previous: strings.Repeat("9", 64)}}, false)
		case "fail":
			f.publish(base+"reply/"+name, map[string]any{"correlation_id": corr, "command": name, "ok": false,
				"error": "model_install: download https://x/b.tar.gz: sha256 mismatch: got 12ab…, want " + sha + "\n(the running model is untouched)"}, false)
		case "drop":
			f.publish(base+"status", map[string]any{"state": "offline", "station": st, "reason": "connection_lost"}, true)
		}
	}()
}

func (f *fakeFleet) request(st string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[st]
}

var testSig = base64.StdEncoding.EncodeToString(make([]byte, 64))

func TestFleetInstall(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	f := startFakeFleet(t, b, map[string]string{"st01": "ok", "st02": "fail", "st03": "silent", "st04": "offline", "st05": "ok", "st06": "drop"})
	sha := strings.Repeat("ab", 32)
	dir := t.TempDir()
	stations := filepath.Join(dir, "stations")
	os.WriteFile(stations, []byte("# line 1\nst01\nst02  # the one with the bad download\n\nst03\nst04\nst05\nst06\n"), 0o644)
	sig := filepath.Join(dir, "b.tar.gz.sig")
	os.WriteFile(sig, fmt.Appendf(nil, `{"url":"","sha256":%q,"signature":%q,"size":1234}`, strings.ToUpper(sha), testSig), 0o644)

	start := time.Now()
	code, stdout, stderr := runCLI(t, "fleet", "install", "--broker", b.URL, "--stations-file", stations,
		"--url", "https://files.local/b.tar.gz", "--sig", sig, "--activate", "--product", "gear", "--timeout", "3s", "-v")
	took := time.Since(start)
	t.Logf("fleet install output:\n%s\nstderr:\n%s", stdout, stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stations failed)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if took > 8*time.Second {
		t.Errorf("took %s; the timeout was 3s", took)
	}
	want := []string{
		`(?m)^STATION +OUTCOME +TIME +DETAIL$`,
		`(?m)^st01 +ok +\d+\.\d\ds  active product gear bundle sha256:b1 archive ababababab.. \(previous 999999999999\)$`,
		`(?m)^st02 +FAILED +\d+\.\d\ds  model_install: download https://x/b.tar.gz: sha256 mismatch: got 12ab…, want ` + sha + ` \(the running model is untouched\)$`,
		`(?m)^st03 +NO REPLY +\d+\.\d\ds  no reply within 3s; station online$`,
		`(?m)^st04 +OFFLINE +-  not sent: the station is offline \(connection_lost\)$`,
		`(?m)^st05 +ok `,
		`(?m)^st06 +OFFLINE +\d+\.\d\ds  the station went offline \(connection_lost\) before replying$`,
		`(?m)^fleet install: 2 of 6 stations ok, 1 failed, 2 offline, 1 no reply; total \d+\.\d\ds \(slowest ok: st0[15] \d+\.\d\ds\)$`,
	}
	for _, re := range want {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("stdout does not match %s:\n%s", re, stdout)
		}
	}
	for _, w := range []string{"fleet install: 4 of 6 stations did not succeed", "st01         model_install: model install: download 10 of 20 bytes",
		"sent to 5 of 6 stations"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, "another archive") {
		t.Errorf("progress of another archive was shown:\n%s", stderr)
	}
	// The request: exactly the fields the station accepts.
	req := f.request("st01")
	corr, _ := req["correlation_id"].(string)
	delete(req, "correlation_id")
	wantReq := map[string]any{"url": "https://files.local/b.tar.gz", "sha256": sha, "signature": testSig, "product": "gear", "activate": true, "size": 1234.0}
	if fmt.Sprint(req) != fmt.Sprint(wantReq) {
		t.Errorf("request %v, want %v", req, wantReq)
	}
	if corr == "" || corr == f.request("st02")["correlation_id"] {
		t.Errorf("correlation ids %q and %q: want one per station", corr, f.request("st02")["correlation_id"])
	}
	if f.request("st04") != nil {
		t.Errorf("the offline station was sent %v", f.request("st04"))
	}
}

func TestFleetActivateRollbackAllOK(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	f := startFakeFleet(t, b, map[string]string{"a1": "ok", "a2": "ok"})
	sha := strings.Repeat("cd", 32)
	code, stdout, stderr := runCLI(t, "fleet", "activate", "--broker", b.URL, "--stations", "a1, a2", "--sha256", sha, "--timeout", "10s")
	if code != 0 || !strings.Contains(stdout, "fleet activate: 2 of 2 stations ok, 0 failed, 0 offline, 0 no reply") {
		t.Fatalf("activate: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got := f.request("a2"); got["sha256"] != sha || len(got) != 2 {
		t.Errorf("activate request %v, want correlation_id and sha256 only", got)
	}
	code, stdout, stderr = runCLI(t, "fleet", "rollback", "--broker", b.URL, "--stations", "a1,a2", "--product", "gear")
	if code != 0 || !strings.Contains(stdout, "fleet rollback: 2 of 2 stations ok") {
		t.Fatalf("rollback: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got := f.request("a1"); got["product"] != "gear" || len(got) != 2 {
		t.Errorf("rollback request %v, want correlation_id and product only", got)
	}
}

func TestFleetUsage(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	dir := t.TempDir()
	dup := filepath.Join(dir, "dup")
	os.WriteFile(dup, []byte("st01\nst01\n"), 0o644)
	badName := filepath.Join(dir, "bad")
	os.WriteFile(badName, []byte("st01\nline/+\n"), 0o644)
	badSig := filepath.Join(dir, "bad.sig")
	os.WriteFile(badSig, []byte(`{"sha256":"x","extra":1}`), 0o644)
	inst := func(extra ...string) []string {
		return append([]string{"fleet", "install", "--broker", "tcp://127.0.0.1:1"}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"fleet"}, "fleet: name a subcommand: install, activate or rollback"},
		{"unknown subcommand", []string{"fleet", "upgrade"}, `fleet: unknown subcommand "upgrade"`},
		{"no broker", []string{"fleet", "rollback", "--stations", "a"}, "--broker is required"},
		{"bad broker", []string{"fleet", "rollback", "--broker", "localhost", "--stations", "a"}, `--broker "localhost" is not a broker URL`},
		{"no stations", []string{"fleet", "rollback", "--broker", "tcp://h:1"}, "name the stations: --stations st01,st02 or --stations-file FILE"},
		{"both station flags", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations", "a", "--stations-file", dup}, "give --stations or --stations-file, not both"},
		{"wildcard station", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations", "a,#"}, `--stations: station id "#" (entry 2) must be 1-64 characters without '+', '#', '/' or spaces`},
		{"duplicate in file", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations-file", dup}, `station "st01" is listed twice`},
		{"bad line in file", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations-file", badName}, badName + `:2: station id "line/+"`},
		{"missing file", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations-file", filepath.Join(dir, "none")}, "--stations-file: open"},
		{"bad prefix", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations", "a", "--prefix", "a/#"}, `--prefix "a/#"`},
		{"bad product", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations", "a", "--product", "a b"}, `--product "a b": a product name is 1-64 of`},
		{"install needs url", inst("--stations", "a", "--sha256", sha, "--signature", testSig), "--url is required"},
		{"install http url ok, ftp not", inst("--stations", "a", "--url", "ftp://h/x", "--sha256", sha, "--signature", testSig), `--url "ftp://h/x": want an https:// (or http://) URL`},
		{"install bad sha", inst("--stations", "a", "--url", "https://h/x", "--sha256", "abc", "--signature", testSig), `--sha256 "abc": want 64 hex digits`},
		{"install bad signature", inst("--stations", "a", "--url", "https://h/x", "--sha256", sha, "--signature", "AAAA"), "--signature: want the standard base64 of a 64-byte ed25519 signature"},
		{"install sig and sha", inst("--stations", "a", "--url", "https://h/x", "--sig", badSig, "--sha256", sha), "give --sig FILE.sig or --sha256 and --signature, not both"},
		{"install bad sig file", inst("--stations", "a", "--url", "https://h/x", "--sig", badSig), `not the JSON inspectd sign writes`},
		{"activate needs sha", []string{"fleet", "activate", "--broker", "tcp://h:1", "--stations", "a"}, "--sha256 is required"},
		{"rollback has no sha", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations", "a", "--sha256", sha}, "flag provided but not defined: -sha256"},
		{"bad timeout", []string{"fleet", "rollback", "--broker", "tcp://h:1", "--stations", "a", "--timeout", "0s"}, "--timeout 0s must be positive"},
		{"cert without key", []string{"fleet", "rollback", "--broker", "ssl://h:1", "--stations", "a", "--cert-file", "c"}, "--cert-file and --key-file go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
	code, stdout, _ := runCLI(t, "fleet", "--help")
	if code != 0 || !strings.Contains(stdout, "Usage: inspectd fleet install|activate|rollback") {
		t.Errorf("fleet --help: exit %d, stdout %q", code, stdout)
	}
	// A broker that is not there: exit 1 naming it.
	code, _, stderr := runCLI(t, "fleet", "rollback", "--broker", "tcp://127.0.0.1:1", "--stations", "a")
	if code != 1 || !strings.Contains(stderr, "fleet: connect to tcp://127.0.0.1:1:") {
		t.Errorf("unreachable broker: exit %d, stderr %q", code, stderr)
	}
}

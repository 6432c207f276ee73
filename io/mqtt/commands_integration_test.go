package mqtt_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

// ask publishes a command and waits for the reply with its correlation id.
func ask(t *testing.T, sub *mqtttest.Subscriber, cmd, payload, corr string) mqtt.Reply {
	t.Helper()
	sub.Publish("inspectd/"+station+"/cmd/"+cmd, []byte(payload), false)
	return waitReply(t, sub, cmd, corr)
}

func waitReply(t *testing.T, sub *mqtttest.Subscriber, cmd, corr string) mqtt.Reply {
	t.Helper()
	var r mqtt.Reply
	sub.WaitFor(5*time.Second, "reply "+corr+" to "+cmd, func(msgs []mqtttest.Message) bool {
		for _, m := range msgs {
			r = mqtt.Reply{}
			if strings.HasSuffix(m.Topic, "/reply/"+cmd) && json.Unmarshal(m.Payload, &r) == nil && r.CorrelationID == corr {
				return true
			}
		}
		return false
	})
	return r
}

// replies returns the replies to cmd with correlation id corr, in order.
func replies(msgs []mqtttest.Message, cmd, corr string) []mqtt.Reply {
	var out []mqtt.Reply
	for _, m := range msgs {
		var r mqtt.Reply
		if strings.HasSuffix(m.Topic, "/reply/"+cmd) && json.Unmarshal(m.Payload, &r) == nil && r.CorrelationID == corr {
			out = append(out, r)
		}
	}
	return out
}

func countReplies(sub *mqtttest.Subscriber, cmd, corr string) int {
	return len(replies(sub.Messages(), cmd, corr))
}

// askAgain publishes a command whose correlation id was used before and
// returns the new reply (ask would find the old one).
func askAgain(t *testing.T, sub *mqtttest.Subscriber, cmd, payload, corr string) mqtt.Reply {
	t.Helper()
	before := countReplies(sub, cmd, corr)
	sub.Publish("inspectd/"+station+"/cmd/"+cmd, []byte(payload), false)
	var r mqtt.Reply
	sub.WaitFor(5*time.Second, "another reply "+corr+" to "+cmd, func(msgs []mqtttest.Message) bool {
		rs := replies(msgs, cmd, corr)
		if len(rs) > before {
			r = rs[len(rs)-1]
			return true
		}
		return false
	})
	return r
}

func TestCommands(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/reply/#", "inspectd/+/status"}})
	ctl := newFakeControl()
	// A retained command is refused: it would run again on every reconnect.
	sub.Publish("inspectd/"+station+"/cmd/pause", []byte(`{"correlation_id":"retained"}`), true)
	c := startClient(t, baseConfig(t, b), ctl)
	sub.WaitFor(5*time.Second, "online", hasStatus(mqtt.StateOnline, ""))
	if r := waitReply(t, sub, "pause", "retained"); r.OK || !strings.Contains(r.Error, "retained commands are ignored") {
		t.Errorf("retained command: %+v", r)
	}
	sub.Publish("inspectd/"+station+"/cmd/pause", nil, true) // clear it

	ok := func(r mqtt.Reply) {
		t.Helper()
		if !r.OK || r.Error != "" {
			t.Fatalf("%s failed: %s", r.Command, r.Error)
		}
	}

	// Issue 24 #15: a command published retained while the station is
	// connected reaches it as a live message (MQTT 3.1.1 clears the flag
	// on delivery to an existing subscription); it is refused all the
	// same, never run, with one error reply.
	time.Sleep(200 * time.Millisecond) // the SUBSCRIBE follows the CONNACK
	sub.Publish("inspectd/"+station+"/cmd/pause", []byte(`{"correlation_id":"live-retained"}`), true)
	if r := waitReply(t, sub, "pause", "live-retained"); r.OK || !strings.Contains(r.Error, "retained commands are ignored") {
		t.Errorf("retained command published while connected: %+v", r)
	}
	time.Sleep(300 * time.Millisecond)
	if n := countReplies(sub, "pause", "live-retained"); n != 1 {
		t.Errorf("%d replies to the retained command, want 1", n)
	}
	sub.Publish("inspectd/"+station+"/cmd/pause", nil, true) // clear it
	ctl.mu.Lock()
	if ctl.paused {
		t.Error("a retained command published while connected was executed")
	}
	ctl.mu.Unlock()
	// A command that is not retained runs, quickly, with the check.
	start := time.Now()
	ok(ask(t, sub, "status", `{"correlation_id":"after-retained"}`, "after-retained"))
	t.Logf("status command round trip with the retained check: %s", time.Since(start))
	ok(ask(t, sub, "trigger", `{"correlation_id":"t1","part_id":"A42"}`, "t1"))
	ok(ask(t, sub, "threshold", `{"correlation_id":"th1","image_threshold":0.7}`, "th1"))
	r := ask(t, sub, "status", `{"correlation_id":"s1"}`, "s1")
	ok(r)
	if st := r.Result.(map[string]any)["model"].(map[string]any); st["threshold"] != 0.7 || st["threshold_source"] != "runtime" {
		t.Errorf("status after threshold: %v", st)
	}
	ok(ask(t, sub, "pause", `{"correlation_id":"p1"}`, "p1"))
	if r := ask(t, sub, "trigger", `{"correlation_id":"t2"}`, "t2"); r.OK || !strings.Contains(r.Error, "inspection is paused") {
		t.Errorf("trigger while paused: %+v", r)
	}
	ok(ask(t, sub, "resume", `{"correlation_id":"r1"}`, "r1"))
	ok(ask(t, sub, "reload", `{"correlation_id":"l1"}`, "l1"))
	ctl.mu.Lock()
	ctl.reloadErr = errors.New("bundle hash mismatch")
	ctl.mu.Unlock()
	if r := ask(t, sub, "reload", `{"correlation_id":"l2"}`, "l2"); r.OK || !strings.Contains(r.Error, "reload failed (the previous configuration stays): bundle hash mismatch") {
		t.Errorf("failed reload: %+v", r)
	}

	// Bad requests: an error reply naming the field, and no change.
	for i, tc := range []struct{ cmd, payload, field, want string }{
		{"threshold", `{"correlation_id":"%s","image_threshold":1.5}`, "image_threshold", "field image_threshold: 1.5 is out of range (0, 1]"},
		{"threshold", `{"correlation_id":"%s","image_threshold":0.2,"pixel_threshold":-1}`, "pixel_threshold", "field pixel_threshold: -1 is out of range"},
		{"threshold", `{"correlation_id":"%s","image":0.2}`, "image", "field image: unknown for command threshold"},
		{"trigger", `{"correlation_id":"%s","part_id":"` + strings.Repeat("x", 200) + `"}`, "part_id", "field part_id: is 200 bytes long"},
		{"trigger", `{"correlation_id":"%s","part_id":7}`, "part_id", "field part_id: must be a string"},
		{"explode", `{"correlation_id":"%s"}`, "command", `field command: unknown command "explode"`},
	} {
		corr := fmt.Sprintf("bad%d", i)
		r := ask(t, sub, tc.cmd, fmt.Sprintf(tc.payload, corr), corr)
		if r.OK || r.Field != tc.field || !strings.HasPrefix(r.Error, tc.want) {
			t.Errorf("%s %s: reply %+v; want field %q, error %q", tc.cmd, tc.payload[:30], r, tc.field, tc.want)
		}
	}
	sub.Publish("inspectd/"+station+"/cmd/status", []byte(`not json`), false)
	sub.WaitFor(5*time.Second, "reply to non-JSON", func(msgs []mqtttest.Message) bool {
		for _, m := range msgs {
			if strings.HasSuffix(m.Topic, "/reply/status") && strings.Contains(string(m.Payload), "field payload: not a JSON object") {
				return true
			}
		}
		return false
	})
	ctl.mu.Lock()
	if ctl.image != 0.7 || ctl.pixel != 0.4 || len(ctl.triggers) != 1 || ctl.paused || ctl.reloads != 2 {
		t.Errorf("bad requests changed something: image %v pixel %v triggers %v paused %v reloads %d", ctl.image, ctl.pixel, ctl.triggers, ctl.paused, ctl.reloads)
	}
	ctl.mu.Unlock()

	// A repeated request (same correlation id) is answered, not run again,
	// also with its fields in another order.
	ok(askAgain(t, sub, "trigger", `{"correlation_id":"t1","part_id":"A42"}`, "t1"))
	ok(askAgain(t, sub, "trigger", `{"part_id":"A42", "correlation_id":"t1"}`, "t1"))
	// Issue 24 #10: a different request under a used correlation id is
	// refused, not answered with the old reply (and not run).
	reused := askAgain(t, sub, "trigger", `{"correlation_id":"t1","part_id":"B99"}`, "t1")
	const wantReused = `field correlation_id: "t1" was already used for a different trigger request (part_id "A42"); this request (part_id "B99") was not executed: use a fresh correlation_id per request`
	if reused.OK || reused.Field != "correlation_id" || reused.Error != wantReused {
		t.Errorf("reused correlation id: reply %+v; want error %q", reused, wantReused)
	}
	// The same request again still gets its original reply.
	if r := askAgain(t, sub, "trigger", `{"correlation_id":"t1","part_id":"A42"}`, "t1"); !r.OK {
		t.Errorf("the original request repeated after a refused reuse: %+v", r)
	}

	// clear_fault calls the host and reports what is left.
	cr := ask(t, sub, "clear_fault", `{"correlation_id":"cf1"}`, "cf1")
	ok(cr)
	if res, _ := cr.Result.(map[string]any); res["cleared"] != true || res["problems"] == nil {
		t.Errorf("clear_fault result %v", cr.Result)
	}
	ctl.mu.Lock()
	ctl.clearErr = errors.New("no output of this station latches faults")
	ctl.mu.Unlock()
	if r := ask(t, sub, "clear_fault", `{"correlation_id":"cf2"}`, "cf2"); r.OK || r.Error != "clear_fault: no output of this station latches faults" {
		t.Errorf("failing clear_fault: %+v", r)
	}
	ctl.mu.Lock()
	if ctl.clears != 2 {
		t.Errorf("ClearFaults called %d times, want 2", ctl.clears)
	}
	ctl.mu.Unlock()
	b.Stop()
	b.Start()
	sub.WaitFor(15*time.Second, "online after broker restart", func(msgs []mqtttest.Message) bool {
		return c.Stats().Reconnects >= 1 && hasStatus(mqtt.StateOnline, "")(msgs)
	})
	// Subscriptions restored: commands work after the broker restart.
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Connected == false && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the SUBSCRIBE follows the CONNACK
	ok(ask(t, sub, "trigger", `{"correlation_id":"after-restart","part_id":"B7"}`, "after-restart"))
	ctl.mu.Lock()
	if fmt.Sprint(ctl.triggers) != "[A42 B7]" || ctl.paused {
		t.Errorf("triggers %v paused %v (a repeated or retained command ran)", ctl.triggers, ctl.paused)
	}
	ctl.mu.Unlock()
	if s := c.Stats(); s.CommandErrors < 8 {
		t.Errorf("command errors %d", s.CommandErrors)
	}
	loadSchemas(t).validateAll(t, sub.Messages())
}

func TestTLSAndPassword(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{TLS: true, Users: map[string]string{"inspectd": "right-pw"}})
	dir := t.TempDir()
	write := func(name, s string) string {
		p := dir + "/" + name
		os.WriteFile(p, []byte(s+"\n"), 0o600)
		return p
	}
	right, wrong := write("right", "right-pw"), write("wrong", "wrong-pw")
	plainURL := strings.Replace(b.URL, "ssl://", "tcp://", 1)
	for _, tc := range []struct {
		name                 string
		broker, ca, user, pw string
		want                 string // "" = accepted
	}{
		{"right CA and password", b.URL, b.CAFile, "inspectd", right, ""},
		{"wrong password", b.URL, b.CAFile, "inspectd", wrong, `refused user "inspectd" (not authorized): check mqtt.username and mqtt.password_file`},
		{"unknown user", b.URL, b.CAFile, "nobody", right, "not authorized"},
		{"no credentials", b.URL, b.CAFile, "", "", "refused anonymous clients (not authorized)"},
		{"wrong CA", b.URL, b.OtherCAFile, "inspectd", right, "the broker's certificate is not signed by a CA in mqtt.ca_file"},
		{"plain TCP to the TLS port", plainURL, "", "inspectd", right, "closed the connection during the MQTT handshake: is that port a TLS listener (then use ssl://)?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, b)
			cfg.Broker, cfg.CAFile, cfg.Username, cfg.PasswordFile = tc.broker, tc.ca, tc.user, tc.pw
			c, err := mqtt.New(mqtt.Options{Config: cfg, Station: station, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(t.Context())
			err = c.Start(t.Context(), nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v; want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "right-pw") {
				t.Fatal("password in error")
			}
			if err != nil {
				t.Logf("start-up error: %v", err)
			}
		})
	}
}

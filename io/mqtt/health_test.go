package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
	"github.com/inspectd/inspectd/logging/logtest"
)

// brokerClient starts a client (package-internal, for the seams) on a real
// broker and closes it at the end of the test.
func brokerClient(t *testing.T, b *mqtttest.Broker, logs *logtest.Buffer) *Client {
	t.Helper()
	cfg := config.Default().MQTT
	cfg.Broker = b.URL
	cfg.KeepAlive, cfg.ConnectTimeout = config.Dur(2*time.Second), config.Dur(2*time.Second)
	cfg.OutboxDir, cfg.StatsInterval = t.TempDir(), config.Dur(time.Hour)
	c, err := New(Options{Config: cfg, Station: "s1", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasProblem(c *Client, sub string) bool {
	for _, p := range c.Problems() {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

// errDiskFull is what the injected commit failure returns.
var errDiskFull = errors.New("write outbox.db: no space left on device (injected)")

// TestUnwritableOutbox (issue 24 #7): when the outbox cannot be written
// (read-only or full state disk) results are not dropped silently. While
// the broker is connected they are published directly (at most once,
// counted); once the client knows the outbox fails, Deliver waits for that
// and returns an error for a result it could neither persist nor publish
// (the broker down); Problems and the metrics say so; Close's error and
// summary count the lost results.
//
// What it simulates: the failure is injected at the outbox's commit seam
// (onCommit returns an error inside bbolt's write transaction, which bbolt
// rolls back), the point where a read-only or full disk makes bbolt's
// commit fail. Tests run as root in CI, where a chmod'ed directory would
// not fail, and the bbolt file stays open anyway; the kernel's own error
// path is exercised by TestOutboxFileSizeLimit.
func TestUnwritableOutbox(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/result", "inspectd/+/event"}})
	var logs logtest.Buffer
	c := brokerClient(t, b, &logs)
	var failing atomic.Bool
	c.box.onCommit = func(*bolt.Tx) error {
		if failing.Load() {
			return errDiskFull
		}
		return nil
	}
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "connected", 10*time.Second, c.conn.isUp)
	deliver := func(i int) error {
		return c.Deliver(context.Background(), &inspection.Result{ID: fmt.Sprintf("r%d", i)})
	}
	for i := range 3 {
		if err := deliver(i); err != nil {
			t.Fatal(err)
		}
	}
	c.Flush(context.Background())

	// The disk fails while the broker is connected: published directly.
	failing.Store(true)
	for i := 3; i < 8; i++ {
		if err := deliver(i); err != nil {
			t.Fatalf("result %d while connected: %v", i, err)
		}
	}
	c.Flush(context.Background())
	sub.WaitFor(10*time.Second, "8 results", func(ms []mqtttest.Message) bool { return len(ms) >= 8 && countResults(ms) == 8 })
	st := c.Stats()
	if st.PublishedUnpersisted < 5 || st.ResultsLost != 0 || st.OutboxWritable || st.Persisted != 3 {
		t.Fatalf("stats %+v: want 5 results published directly, none lost, outbox not writable", st)
	}
	if !hasProblem(c, "cannot be written since") || !hasProblem(c, "no space left on device") {
		t.Fatalf("Problems %q: want the unwritable outbox", c.Problems())
	}
	// The critical event saying so reached the broker too.
	sub.WaitFor(10*time.Second, "the critical outbox event", func(ms []mqtttest.Message) bool {
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/event") && strings.Contains(string(m.Payload), "cannot be written") {
				return true
			}
		}
		return false
	})
	const wantMetrics = `
# HELP inspectd_mqtt_outbox_writable 0 while writes to the MQTT outbox fail (results are then published directly, at most once).
# TYPE inspectd_mqtt_outbox_writable gauge
inspectd_mqtt_outbox_writable 0
# HELP inspectd_mqtt_results_lost_total Results neither written to the outbox nor published (outbox not writable and the broker not reachable).
# TYPE inspectd_mqtt_results_lost_total counter
inspectd_mqtt_results_lost_total 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(wantMetrics), "inspectd_mqtt_outbox_writable", "inspectd_mqtt_results_lost_total"); err != nil {
		t.Fatal(err)
	}

	// The broker goes away too: Deliver says the result is lost.
	b.Stop()
	waitUntil(t, "disconnected", 10*time.Second, func() bool { return !c.conn.isUp() })
	err := deliver(100)
	if err == nil || !strings.Contains(err.Error(), "outbox not writable") || !strings.Contains(err.Error(), "the broker is not connected") {
		t.Fatalf("Deliver with neither outbox nor broker: %v", err)
	}
	if st := c.Stats(); st.ResultsLost != 1 || st.Dropped < 1 {
		t.Fatalf("stats %+v: want 1 result lost", st)
	}
	if !hasProblem(c, "MQTT lost 1 results since") {
		t.Fatalf("Problems %q: want the lost result", c.Problems())
	}

	// The disk recovers: results are persisted again; the loss stays
	// reported until an operator clears it.
	failing.Store(false)
	b.Start()
	for i := 200; i < 202; i++ {
		if err := deliver(i); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	c.Flush(context.Background())
	if st := c.Stats(); !st.OutboxWritable || st.Persisted != 5 {
		t.Fatalf("stats %+v after recovery: want writable, 5 persisted", st)
	}
	if p := c.Problems(); len(p) != 1 || !strings.Contains(p[0], "MQTT lost 1 results") {
		t.Fatalf("Problems after recovery %q: want only the latched loss", p)
	}
	c.ClearFault()
	if p := c.Problems(); len(p) != 0 {
		t.Fatalf("Problems after ClearFault: %q", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 results and") || !strings.Contains(err.Error(), "were neither written to the outbox") {
		t.Fatalf("Close: %v; want the count of lost results", err)
	}
	if !strings.Contains(logs.String(), "results_lost=1") {
		t.Fatalf("no shutdown summary with results_lost=1:\n%s", logs.String())
	}
}

func countResults(ms []mqtttest.Message) int {
	seen := map[string]bool{}
	for _, m := range ms {
		if strings.HasSuffix(m.Topic, "/result") {
			var r struct {
				ID string `json:"result_id"`
			}
			json.Unmarshal(m.Payload, &r)
			seen[r.ID] = true
		}
	}
	return len(seen)
}

// TestNothingWaitsForABlockedWrite (issue 24 #8): while an outbox write
// is blocked inside its commit (as on a frozen disk: bbolt's write lock and
// the outbox lock held), Collect, Stats, Problems, Event and Deliver return
// at once, and Problems reports the blocked write.
func TestNothingWaitsForABlockedWrite(t *testing.T) {
	c, _ := newTestClient(t)
	c.hooks.stalledAfter = 100 * time.Millisecond
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	gate, entered := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	c.box.onCommit = func(*bolt.Tx) error {
		if once.CompareAndSwap(false, true) {
			close(entered)
			<-gate
		}
		return nil
	}
	defer close(gate)
	if err := c.Deliver(context.Background(), &inspection.Result{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
	<-entered
	time.Sleep(150 * time.Millisecond)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Collect", func() {
			if n := testutil.CollectAndCount(c); n != len(metrics) {
				t.Errorf("%d series", n)
			}
		}},
		{"Stats", func() { c.Stats() }},
		{"Problems", func() {
			if !hasProblem(c, "a write has waited") {
				t.Errorf("Problems %q: want the blocked write", c.Problems())
			}
		}},
		{"Event", func() { c.Event(inspection.Event{Kind: "x", Message: "m"}) }},
		{"Deliver", func() {
			if err := c.Deliver(context.Background(), &inspection.Result{ID: "r2"}); err != nil {
				t.Error(err)
			}
		}},
	} {
		done := make(chan struct{})
		go func() { tc.f(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s blocked while an outbox write was blocked", tc.name)
		}
	}
}

// TestClientIDTakeover (issue 24 #15): another client connecting with our
// client id makes the broker close our connection (EOF) right after every
// reconnect. That is reported as what it most likely is — naming
// mqtt.client_id — with an event and a problem, not as "error=EOF".
func TestClientIDTakeover(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/event"}})
	var logs logtest.Buffer
	c := brokerClient(t, b, &logs)
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "connected", 10*time.Second, c.conn.isUp)
	intruder := mqtttest.ClientOptions(t, b, c.clientID) // reconnects every 100 ms
	cli := paho.NewClient(intruder)
	if tok := cli.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("intruder: %v", tok.Error())
	}
	defer cli.Disconnect(0)
	waitUntil(t, "the takeover to be reported", 20*time.Second, func() bool {
		return strings.Contains(logs.String(), "another client with client id")
	})
	if !hasProblem(c, fmt.Sprintf("another client with client id %q may be connected", c.clientID)) || !hasProblem(c, "mqtt.client_id") {
		t.Fatalf("Problems %q: want the takeover", c.Problems())
	}
	if !strings.Contains(logs.String(), "key=mqtt.client_id") {
		t.Fatalf("the log does not name the key:\n%s", logs.String())
	}
	cli.Disconnect(0) // the intruder leaves: the event reaches the broker
	sub.WaitFor(15*time.Second, "the takeover event", func(ms []mqtttest.Message) bool {
		for _, m := range ms {
			if strings.Contains(string(m.Payload), EventClientIDTakeover) && strings.Contains(string(m.Payload), "mqtt.client_id") {
				return true
			}
		}
		return false
	})
}

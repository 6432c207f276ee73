//go:build workstation

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

// The MQTT end-to-end tests run the real `inspectd run` binary against a
// real mosquitto (io/mqtt/mqtttest). Station "e2e", topic prefix "inspectd".
const e2eTopics = "inspectd/e2e/"

// mqttStation is a daemon configuration for the MQTT tests: an image replay
// (the synthetic good plates, looped and paced at 200 fps) inspected in
// trigger mode `mode` (software or free_run), the HTTP API, and MQTT to
// broker.
type mqttStation struct {
	cfg  string // config file
	base string // http://127.0.0.1:PORT
}

func newMQTTStation(t *testing.T, env e2e, broker *mqtttest.Broker, mode string) mqttStation {
	t.Helper()
	dir, replay, goods := goodReplay(t, env, 1)
	for i, g := range goods {
		writePNG(t, filepath.Join(replay, fmt.Sprintf("%02d.png", i)), loadPNG(t, g))
	}
	port := freePort(t)
	cfg := writeRunConfig(t, dir, env.bundle, fmt.Sprintf(`[camera]
source = "images"
path = %q
loop = true
fps = 200.0
[trigger]
mode = %q
timeout = "2s"
[http]
enabled = true
listen = "127.0.0.1:%d"
[mqtt]
enabled = true
broker = %q
keepalive = "2s"
connect_timeout = "2s"
stats_interval = "1h"
`, replay, mode, port, broker.URL))
	// writeRunConfig turns MQTT off; this configuration's [mqtt] replaces
	// that table (TOML allows a table once).
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(text), "[mqtt]\nenabled = false\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return mqttStation{cfg: cfg, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// start runs the daemon and waits until its HTTP API answers.
func (s mqttStation) start(t *testing.T, env e2e) *daemonProc {
	t.Helper()
	p := startDaemon(t, env.bin, "-c", s.cfg, "--print")
	waitFor(t, 20*time.Second, "the daemon's HTTP API", func() bool {
		var st inspection.Status
		return getJSON(s.base+"/api/status", &st) == nil && st.Camera.State == inspection.CameraOnline
	})
	return p
}

func (s mqttStation) status(t *testing.T) inspection.Status {
	t.Helper()
	var st inspection.Status
	if err := getJSON(s.base+"/api/status", &st); err != nil {
		t.Fatalf("GET /api/status: %v", err)
	}
	return st
}

// metric reads one unlabelled series from /metrics.
func (s mqttStation) metric(t *testing.T, name string) float64 {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no series %s", name)
	return 0
}

// trigger posts software triggers for parts prefix-from … prefix-(from+n-1)
// over HTTP, keeping at most 32 parts waiting for their verdict (the
// daemon's trigger queue holds 64; beyond it parts become ERROR overload).
func (s mqttStation) trigger(t *testing.T, from, n int) {
	t.Helper()
	base := s.status(t).Counts.Total
	c := http.Client{Timeout: 5 * time.Second}
	for i := range n {
		if i%16 == 0 {
			waitFor(t, 20*time.Second, "the daemon to catch up with the triggers", func() bool {
				return int(s.status(t).Counts.Total-base) >= i-32
			})
		}
		resp, err := c.Post(s.base+"/api/trigger", "application/json", strings.NewReader(fmt.Sprintf(`{"part_id":"p%04d"}`, from+i)))
		if err != nil {
			t.Fatalf("trigger p%04d: %v", from+i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("trigger p%04d: %d %s", from+i, resp.StatusCode, body)
		}
	}
}

// waitPersisted waits until the daemon produced total results, printed
// them, and the MQTT output reports every one of them fsync'd to the outbox
// (inspectd_mqtt_results_persisted_total): from then on a kill loses none.
func (s mqttStation) waitPersisted(t *testing.T, p *daemonProc, total int) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d results produced, printed and persisted in the outbox", total), func() bool {
		return int(s.status(t).Counts.Total) == total && len(printedLines(p.stdout.String())) == total &&
			int(s.metric(t, "inspectd_mqtt_results_persisted_total")) == total
	})
}

// received is one result as a SCADA subscriber sees it.
type received struct {
	ID     string `json:"result_id"`
	PartID string `json:"part_id"`
	Seq    uint64 `json:"seq"`
}

// runOf is the daemon-run part of a result ID (<station>-<run>-<seq>).
func runOf(t *testing.T, id string) string {
	t.Helper()
	f := strings.Split(id, "-")
	if len(f) != 3 || f[0] != "e2e" {
		t.Fatalf("result ID %q is not e2e-<run>-<seq>", id)
	}
	return f[1]
}

func parseResults(t *testing.T, msgs []mqtttest.Message) []received {
	t.Helper()
	out := make([]received, 0, len(msgs))
	for _, m := range msgs {
		var r received
		if err := json.Unmarshal(m.Payload, &r); err != nil || r.ID == "" {
			t.Fatalf("result message %q: %v", m.Payload, err)
		}
		out = append(out, r)
	}
	return out
}

// delivery is what a subscriber received, per daemon run.
type delivery struct {
	runs  []string          // daemon runs in order of their first result
	count map[string]uint64 // per run: results 1…count arrived, without a gap
	first map[string]int    // per run: index of its first message
	dups  int               // messages that repeat an earlier result
}

// checkOrder checks that the results of each daemon run arrive in order:
// every message is the next seq of its run or repeats an earlier one.
func checkOrder(t *testing.T, results []received) delivery {
	t.Helper()
	d := delivery{count: map[string]uint64{}, first: map[string]int{}}
	for i, r := range results {
		run := runOf(t, r.ID)
		if _, ok := d.count[run]; !ok {
			d.runs = append(d.runs, run)
			d.first[run] = i
		}
		switch {
		case r.Seq == d.count[run]+1:
			d.count[run]++
		case r.Seq <= d.count[run]:
			d.dups++
		default:
			t.Fatalf("message %d: result %s (seq %d) arrived while seq %d of its run was still missing", i, r.ID, r.Seq, d.count[run]+1)
		}
	}
	return d
}

// TestMQTTOutageKillRestartDeliversAll: 1,000 results through `inspectd
// run` on an image replay, with the broker stopped for 10 s mid-run and the
// daemon killed (SIGKILL) and restarted on the same state_dir while the
// broker is down. Every result arrives at a SCADA subscriber, in order per
// daemon run (seq 1…N without gaps; a duplicate only ever repeats an earlier
// result), and the part IDs match what each run printed. SIGKILL comes only
// once the outbox holds everything the run produced: what the product
// guarantees is results persisted in the outbox (see docs/mqtt.md, the
// durable point), not results still in the daemon's memory.
func TestMQTTOutageKillRestartDeliversAll(t *testing.T) {
	env := setupE2E(t)
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Persistence: true})
	// A persistent session on a persistent broker: the subscriber misses
	// nothing published while it reconnects after the outage.
	sub := mqtttest.Subscribe(t, broker, mqtttest.SubscriberOptions{Topics: []string{e2eTopics + "result"}, Persistent: true})
	st := newMQTTStation(t, env, broker, "software")
	start := time.Now()
	const (
		nBefore  = 300 // run 1, broker up
		nOutage1 = 300 // run 1, broker down, then SIGKILL
		nOutage2 = 250 // run 2 (same outbox), broker still down
		nAfter   = 150 // run 2, broker back
		total    = nBefore + nOutage1 + nOutage2 + nAfter
	)

	run1 := st.start(t, env)
	st.trigger(t, 0, nBefore)
	sub.WaitFor(20*time.Second, fmt.Sprintf("%d results before the outage", nBefore), func(m []mqtttest.Message) bool {
		return len(m) >= nBefore
	})

	broker.Stop()
	outage := time.Now()
	st.trigger(t, nBefore, nOutage1)
	st.waitPersisted(t, run1, nBefore+nOutage1)
	depth := int(st.metric(t, "inspectd_mqtt_outbox_messages"))
	if depth < nOutage1 {
		t.Fatalf("outbox depth %d with the broker down after %d results", depth, nOutage1)
	}
	if err := run1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	run1.wait(10 * time.Second)
	printed1 := printedLines(run1.stdout.String())

	run2 := st.start(t, env)
	st.trigger(t, nBefore+nOutage1, nOutage2)
	st.waitPersisted(t, run2, nOutage2)
	if d := time.Since(outage); d < 10*time.Second {
		time.Sleep(10*time.Second - d) // the outage lasts 10 s by design
	}
	broker.Start()
	t.Logf("broker down for %s; run 1 killed after %d results with %d messages in the outbox; run 2 started and produced %d more meanwhile",
		time.Since(outage).Round(100*time.Millisecond), nBefore+nOutage1, depth, nOutage2)
	restored := time.Now()
	st.trigger(t, nBefore+nOutage1+nOutage2, nAfter)

	msgs := sub.WaitFor(40*time.Second, fmt.Sprintf("all %d results", total), func(msgs []mqtttest.Message) bool {
		seen := map[string]bool{}
		for _, m := range msgs {
			var r received
			if json.Unmarshal(m.Payload, &r) == nil {
				seen[r.ID] = true
			}
		}
		return len(seen) >= total
	})
	backlog := time.Since(restored)
	st.waitPersisted(t, run2, nOutage2+nAfter)
	if err := run2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := run2.wait(20 * time.Second); err != nil {
		t.Errorf("run 2 after SIGTERM: %v", err)
	}
	printed2 := printedLines(run2.stdout.String())
	if len(printed1) != nBefore+nOutage1 || len(printed2) != nOutage2+nAfter {
		t.Fatalf("runs printed %d and %d results, want %d and %d", len(printed1), len(printed2), nBefore+nOutage1, nOutage2+nAfter)
	}

	results := parseResults(t, msgs)
	d := checkOrder(t, results)
	if len(d.runs) != 2 {
		t.Fatalf("results of %d daemon runs %v, want 2", len(d.runs), d.runs)
	}
	printed := map[string][][]string{d.runs[0]: printed1, d.runs[1]: printed2}
	for _, run := range d.runs {
		if got, want := d.count[run], uint64(len(printed[run])); got != want {
			t.Errorf("run %s: %d of %d results arrived", run, got, want)
		}
	}
	// One outbox: run 2's first result comes after all of run 1's.
	seenRun1 := map[uint64]bool{}
	for _, r := range results[:d.first[d.runs[1]]] {
		if runOf(t, r.ID) == d.runs[0] {
			seenRun1[r.Seq] = true
		}
	}
	if uint64(len(seenRun1)) != d.count[d.runs[0]] {
		t.Errorf("only %d of run 1's %d results arrived before run 2's first", len(seenRun1), d.count[d.runs[0]])
	}
	// The part IDs are the ones each run printed, in its order.
	for _, r := range results {
		if got, want := r.PartID, printed[runOf(t, r.ID)][r.Seq-1][0]; got != want {
			t.Errorf("result %s: part %s, the daemon printed %s", r.ID, got, want)
		}
	}
	t.Logf("%d results (%d + %d over two daemon runs) delivered in order, %d duplicates; the backlog and the live results after the outage took %s; test %s",
		total, d.count[d.runs[0]], d.count[d.runs[1]], d.dups, backlog.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
}

// TestMQTTKillInFlight: SIGKILL while the daemon inspects at full speed
// (free run). What the product guarantees is the durable point: every
// result in the outbox on disk (inspectd_mqtt_results_persisted_total) is
// delivered after a restart, in order, the run's results forming an
// unbroken prefix seq 1…K. Results produced but not yet on disk (the sink
// queue, the writer's stage, the commit in progress) are lost, although
// the daemon may already have printed, archived or actuated them: the test
// reports how many.
func TestMQTTKillInFlight(t *testing.T) {
	env := setupE2E(t)
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, broker, mqtttest.SubscriberOptions{Topics: []string{e2eTopics + "result"}})
	st := newMQTTStation(t, env, broker, "free_run")

	run1 := st.start(t, env)
	waitFor(t, 20*time.Second, "200 results persisted", func() bool {
		return st.metric(t, "inspectd_mqtt_results_persisted_total") >= 200
	})
	persisted := uint64(st.metric(t, "inspectd_mqtt_results_persisted_total"))
	if err := run1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	run1.wait(10 * time.Second)
	printed := len(printedLines(run1.stdout.String()))

	// Run 2 sends run 1's leftovers first: once one of its own results
	// arrives, all of run 1's are in.
	run2 := st.start(t, env)
	var d delivery
	sub.WaitFor(20*time.Second, "the first result of the second run", func(msgs []mqtttest.Message) bool {
		d = checkOrder(t, parseResults(t, msgs))
		return len(d.runs) == 2
	})
	if err := run2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := run2.wait(20 * time.Second); err != nil {
		t.Errorf("run 2 after SIGTERM: %v", err)
	}
	got := d.count[d.runs[0]]
	if got < persisted {
		t.Errorf("run 1: %d results arrived, but %d were persisted in the outbox before the kill", got, persisted)
	}
	t.Logf("kill -9 in full flight: run 1 printed %d results, had persisted at least %d, delivered %d (seq 1…%d, %d duplicates); lost: %d printed but not delivered",
		printed, persisted, got, got, d.dups, max(printed-int(got), 0))
}

// lastStatus returns the newest status message and how many arrived.
func lastStatus(t *testing.T, msgs []mqtttest.Message) (mqtt.StatusMessage, int) {
	t.Helper()
	var s mqtt.StatusMessage
	n := 0
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/status") {
			s = mqtt.StatusMessage{}
			if err := json.Unmarshal(m.Payload, &s); err != nil {
				t.Fatalf("status %q: %v", m.Payload, err)
			}
			n++
		}
	}
	return s, n
}

// waitStatus waits for a status message after the first `after` ones with
// the given state and reason and returns how many status messages arrived.
func waitStatus(t *testing.T, sub *mqtttest.Subscriber, after int, state, reason string) int {
	t.Helper()
	n := 0
	sub.WaitFor(15*time.Second, fmt.Sprintf("status %s %s", state, reason), func(msgs []mqtttest.Message) bool {
		var s mqtt.StatusMessage
		s, n = lastStatus(t, msgs)
		return n > after && s.State == state && s.Reason == reason
	})
	return n
}

// TestMQTTLastWillOnKill: kill -9 of the daemon makes the broker publish
// the retained Last Will (offline, connection_lost); a restart publishes
// online again; SIGTERM publishes offline, shutdown. A subscriber arriving
// late sees the retained state.
func TestMQTTLastWillOnKill(t *testing.T) {
	env := setupE2E(t)
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, broker, mqtttest.SubscriberOptions{Topics: []string{e2eTopics + "status"}})
	st := newMQTTStation(t, env, broker, "software")

	p := st.start(t, env)
	n := waitStatus(t, sub, 0, mqtt.StateOnline, "")
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	n = waitStatus(t, sub, n, mqtt.StateOffline, mqtt.ReasonConnectionLost)
	t.Logf("Last Will (offline, connection_lost) %s after kill -9", time.Since(killed).Round(time.Millisecond))
	late := mqtttest.Subscribe(t, broker, mqtttest.SubscriberOptions{Topics: []string{e2eTopics + "status"}})
	late.WaitFor(5*time.Second, "the retained offline status", func(msgs []mqtttest.Message) bool {
		s, k := lastStatus(t, msgs)
		return k > 0 && msgs[0].Retained && s.State == mqtt.StateOffline && s.Reason == mqtt.ReasonConnectionLost
	})
	p.wait(10 * time.Second)

	p = st.start(t, env)
	n = waitStatus(t, sub, n, mqtt.StateOnline, "")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(20 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	waitStatus(t, sub, n, mqtt.StateOffline, mqtt.ReasonShutdown)
}

// commander sends commands to the daemon and reads the replies.
type commander struct {
	t   *testing.T
	sub *mqtttest.Subscriber
	n   int
}

// ask sends one command with a fresh correlation ID and waits for its
// reply.
func (c *commander) ask(cmd, fields string) mqtt.Reply {
	c.t.Helper()
	c.n++
	corr := fmt.Sprintf("%s-%d", cmd, c.n)
	payload := fmt.Sprintf(`{"correlation_id":%q%s}`, corr, fields)
	c.sub.Publish(e2eTopics+"cmd/"+cmd, []byte(payload), false)
	return c.reply(cmd, func(r mqtt.Reply) bool { return r.CorrelationID == corr }, 10*time.Second)
}

// reply waits for a reply to cmd that match accepts.
func (c *commander) reply(cmd string, match func(mqtt.Reply) bool, timeout time.Duration) mqtt.Reply {
	c.t.Helper()
	var r mqtt.Reply
	c.sub.WaitFor(timeout, "a reply to "+cmd, func(msgs []mqtttest.Message) bool {
		for _, m := range msgs {
			r = mqtt.Reply{}
			if m.Topic == e2eTopics+"reply/"+cmd && json.Unmarshal(m.Payload, &r) == nil && match(r) {
				return true
			}
		}
		return false
	})
	return r
}

// ok asks and fails the test unless the reply is a success; it returns
// the reply's result.
func (c *commander) ok(cmd, fields string) map[string]any {
	c.t.Helper()
	r := c.ask(cmd, fields)
	if !r.OK || r.Error != "" {
		c.t.Fatalf("%s%s: %s", cmd, fields, r.Error)
	}
	res, _ := r.Result.(map[string]any)
	return res
}

// status is the daemon's status through the status command.
func (c *commander) status() inspection.Status {
	c.t.Helper()
	b, err := json.Marshal(c.ok("status", ""))
	if err != nil {
		c.t.Fatal(err)
	}
	var st inspection.Status
	if err := json.Unmarshal(b, &st); err != nil {
		c.t.Fatalf("status reply: %v", err)
	}
	return st
}

// waitResult waits for the result of part id on the result topic.
func (c *commander) waitResult(id string) map[string]any {
	c.t.Helper()
	var res map[string]any
	c.sub.WaitFor(10*time.Second, "the result of part "+id, func(msgs []mqtttest.Message) bool {
		for _, m := range msgs {
			res = nil
			if m.Topic == e2eTopics+"result" && json.Unmarshal(m.Payload, &res) == nil && res["part_id"] == id {
				return true
			}
		}
		return false
	})
	return res
}

// TestMQTTCommandsThroughDaemon: trigger, threshold, status, pause/resume
// and reload round-trip through the real daemon (trigger.mode software);
// malformed and out-of-range commands get error replies naming the field
// and change nothing; commands work again after a broker restart.
func TestMQTTCommandsThroughDaemon(t *testing.T) {
	env := setupE2E(t)
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, broker, mqtttest.SubscriberOptions{Topics: []string{e2eTopics + "#"}})
	st := newMQTTStation(t, env, broker, "software")
	c := &commander{t: t, sub: sub}
	start := time.Now()

	p := st.start(t, env)
	// "online" is published once the command subscription is in place.
	n := waitStatus(t, sub, 0, mqtt.StateOnline, "")

	if res := c.ok("trigger", `,"part_id":"cmd-1"`); res["accepted"] != true || res["part_id"] != "cmd-1" {
		t.Errorf("trigger reply: %v", res)
	}
	if r := c.waitResult("cmd-1"); r["trigger"] != inspection.TriggerMQTT {
		t.Errorf("result of an MQTT trigger: trigger %v", r["trigger"])
	}
	if res := c.ok("threshold", `,"image_threshold":0.77`); res["image"] != 0.77 || res["source"] != "runtime" {
		t.Errorf("threshold reply: %v", res)
	}
	before := c.status()
	if before.Model.Threshold != 0.77 || before.Model.ThresholdFrom != "runtime" || before.Counts.Total != 1 {
		t.Fatalf("status after threshold: threshold %v from %s, %d parts", before.Model.Threshold, before.Model.ThresholdFrom, before.Counts.Total)
	}

	// Bad requests: an error reply naming the field, and nothing changes.
	for _, tc := range []struct {
		name, cmd, payload, corr, field, want string
	}{
		{"not JSON", "threshold", `{"correlation_id":"bad-1","image_threshold":`, "", "payload", "field payload: not a JSON object"},
		{"wrong type", "threshold", `{"correlation_id":"bad-2","image_threshold":"high"}`, "bad-2", "image_threshold", `field image_threshold: must be a number in (0, 1], got "high"`},
		{"image threshold out of range", "threshold", `{"correlation_id":"bad-3","image_threshold":1.5}`, "bad-3", "image_threshold", "field image_threshold: 1.5 is out of range (0, 1]"},
		{"pixel threshold out of range", "threshold", `{"correlation_id":"bad-4","image_threshold":0.3,"pixel_threshold":0}`, "bad-4", "pixel_threshold", "field pixel_threshold: 0 is out of range (0, 1]"},
		{"unknown field", "trigger", `{"correlation_id":"bad-5","part":"x"}`, "bad-5", "part", "field part: unknown for command trigger"},
		{"part ID too long", "trigger", `{"correlation_id":"bad-6","part_id":"` + strings.Repeat("x", 129) + `"}`, "bad-6", "part_id", "field part_id: is 129 bytes long; at most 128 are allowed"},
		{"no correlation ID", "pause", `{}`, "", "correlation_id", "field correlation_id: is required"},
		{"unknown command", "explode", `{"correlation_id":"bad-8"}`, "bad-8", "command", `field command: unknown command "explode"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub.Publish(e2eTopics+"cmd/"+tc.cmd, []byte(tc.payload), false)
			r := c.reply(tc.cmd, func(r mqtt.Reply) bool {
				return r.CorrelationID == tc.corr && r.Field == tc.field
			}, 10*time.Second)
			if r.OK || !strings.HasPrefix(r.Error, tc.want) {
				t.Errorf("reply %+v, want an error starting with %q", r, tc.want)
			}
		})
	}
	after := c.status()
	if after.Model.Threshold != before.Model.Threshold || after.Model.PixelThreshold != before.Model.PixelThreshold ||
		after.Paused || after.Counts.Total != before.Counts.Total {
		t.Errorf("bad commands changed the daemon: threshold %v→%v, pixel %v→%v, paused %v, parts %d→%d",
			before.Model.Threshold, after.Model.Threshold, before.Model.PixelThreshold, after.Model.PixelThreshold,
			after.Paused, before.Counts.Total, after.Counts.Total)
	}

	if res := c.ok("pause", ""); res["paused"] != true {
		t.Errorf("pause reply: %v", res)
	}
	if !c.status().Paused {
		t.Error("status not paused after pause")
	}
	if r := c.ask("trigger", `,"part_id":"while-paused"`); r.OK || !strings.Contains(r.Error, "trigger refused: inspection is paused") {
		t.Errorf("trigger while paused: %+v", r)
	}
	if res := c.ok("resume", ""); res["paused"] != false {
		t.Errorf("resume reply: %v", res)
	}
	if c.status().Paused {
		t.Error("status paused after resume")
	}

	res := c.ok("reload", "")
	if res["bundle_hash"] != before.Model.BundleHash || res["product"] != before.Model.Product {
		t.Errorf("reload reply %v; running %s %s", res, before.Model.Product, before.Model.BundleHash)
	}
	waitFor(t, 10*time.Second, "the reloaded model to be swapped in", func() bool {
		return strings.Contains(p.stderr.String(), "reload done")
	})
	if s := c.status(); s.Model.Threshold != 0.77 || s.Model.ThresholdFrom != "runtime" {
		t.Errorf("after reload: threshold %v from %s; the runtime threshold should stay", s.Model.Threshold, s.Model.ThresholdFrom)
	}

	// A broker restart: the daemon reconnects, announces online and takes
	// commands again.
	broker.Stop()
	broker.Start()
	waitStatus(t, sub, n, mqtt.StateOnline, "")
	c.ok("trigger", `,"part_id":"cmd-2"`)
	if r := c.waitResult("cmd-2"); r["threshold"] != 0.77 {
		t.Errorf("result after the broker restart: threshold %v", r["threshold"])
	}
	if s := c.status(); s.Counts.Total != 2 {
		t.Errorf("%d parts after two accepted triggers", s.Counts.Total)
	}
	t.Logf("commands round-tripped, before and after a broker restart, in %s", time.Since(start).Round(100*time.Millisecond))
}

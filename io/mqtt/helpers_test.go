package mqtt_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

const station = "line1-cam1"

func baseConfig(t testing.TB, b *mqtttest.Broker) config.MQTT {
	cfg := config.Default().MQTT
	cfg.Broker = b.URL
	cfg.KeepAlive, cfg.ConnectTimeout = config.Dur(2*time.Second), config.Dur(2*time.Second)
	cfg.OutboxDir, cfg.StatsInterval = t.TempDir(), config.Dur(time.Hour)
	return cfg
}

// testLogger writes the client's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startClient(t testing.TB, cfg config.MQTT, host mqtt.Host) *mqtt.Client {
	t.Helper()
	return startClientWith(t, mqtt.Options{Config: cfg, Station: station, Logger: testLogger(t), Version: "1.2.3"}, host)
}

// startClientWith starts a client with o and host and closes it at the
// end of the test.
func startClientWith(t testing.TB, o mqtt.Options, host mqtt.Host) *mqtt.Client {
	t.Helper()
	c, err := mqtt.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func result(i int) *inspection.Result {
	now := time.Now().UTC()
	v, reason := inspection.OK, inspection.ReasonPass
	var regions []inspection.Region
	if i%3 == 0 {
		v, reason = inspection.NG, inspection.ReasonRegion
		regions = []inspection.Region{{X: 10, Y: 20, Width: 5, Height: 6, Area: 30, Peak: 0.9}}
	}
	return &inspection.Result{
		ID: fmt.Sprintf("%s-%06d", station, i), PartID: fmt.Sprintf("P%d", i), Station: station,
		Seq: uint64(i), FrameSeq: uint64(i), Trigger: inspection.TriggerFreeRun, Verdict: v, Reason: reason,
		TriggerTime: now, CaptureTime: now, VerdictTime: now,
		Latency: inspection.Latency{CaptureWaitMs: 1, AlignMs: 2, LocalizeMs: 20, DecideMs: 0.1, TotalMs: 23.1},
		Score:   0.42, Threshold: 0.5, PixelThreshold: 0.5, Regions: regions,
		Model: inspection.Model{Product: "demo", BundleHash: "sha256:abc"},
	}
}

// schemas validates payloads by topic against docs/schema.
type schemas map[string]*jsonschema.Schema

func loadSchemas(t testing.TB) schemas {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s := schemas{}
	for _, name := range []string{"result", "status", "stats", "event", "reply"} {
		path, err := filepath.Abs(filepath.Join("..", "..", "docs", "schema", name+".schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile(path)
		if err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		s[name] = sch
	}
	return s
}

// kindOf maps a topic to its schema name.
func kindOf(topic string) string {
	parts := strings.Split(topic, "/")
	if len(parts) >= 4 && parts[2] == "reply" {
		return "reply"
	}
	if len(parts) >= 4 && parts[2] == "cmd" {
		return "cmd"
	}
	return parts[len(parts)-1]
}

// validateAll checks every message against its schema and returns how many
// were checked per kind.
func (s schemas) validateAll(t testing.TB, msgs []mqtttest.Message) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, m := range msgs {
		k := kindOf(m.Topic)
		if k == "cmd" {
			continue
		}
		sch, ok := s[k]
		if !ok {
			t.Errorf("message on unexpected topic %s", m.Topic)
			continue
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Payload))
		if err != nil {
			t.Errorf("%s: not JSON: %v: %s", m.Topic, err, m.Payload)
			continue
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s: payload does not validate against %s.schema.json: %v\n%s", m.Topic, k, err, m.Payload)
		}
		n[k]++
	}
	return n
}

// resultIDs returns the result ids in arrival order.
func resultIDs(t testing.TB, msgs []mqtttest.Message) []string {
	var ids []string
	for _, m := range msgs {
		if !strings.HasSuffix(m.Topic, "/result") {
			continue
		}
		var r struct {
			ID string `json:"result_id"`
		}
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Fatalf("result payload: %v", err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

// checkInOrder verifies that ids 1..n all arrived and that first arrivals
// are in order; it returns the number of duplicates.
func checkInOrder(t testing.TB, ids []string, n int) (dups int) {
	t.Helper()
	seen := map[string]bool{}
	next := 1
	for _, id := range ids {
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		want := fmt.Sprintf("%s-%06d", station, next)
		if id != want {
			t.Fatalf("first arrival #%d is %s, want %s (out of order or missing)", next, id, want)
		}
		next++
	}
	if next-1 != n {
		t.Fatalf("%d distinct results arrived, want %d", next-1, n)
	}
	return dups
}

func uniqueResults(msgs []mqtttest.Message) int {
	seen := map[string]bool{}
	for _, m := range msgs {
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

// fakeControl records commands.
type fakeControl struct {
	mu            sync.Mutex
	triggers      []string
	image, pixel  float64
	paused        bool
	reloads       int
	reloadErr     error
	thresholdFrom string
	clears        int
	clearErr      error
}

func newFakeControl() *fakeControl {
	return &fakeControl{image: 0.5, pixel: 0.4, thresholdFrom: "bundle"}
}

func (f *fakeControl) Trigger(partID, source string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if source != inspection.TriggerMQTT {
		return errors.New("wrong source " + source)
	}
	if f.paused {
		return inspection.ErrPaused
	}
	f.triggers = append(f.triggers, partID)
	return nil
}

func (f *fakeControl) Reload(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadErr
}

func (f *fakeControl) SetThresholds(image, pixel *float64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if image != nil {
		f.image = *image
	}
	if pixel != nil {
		f.pixel = *pixel
	}
	f.thresholdFrom = "runtime"
	return nil
}

// ClearFaults counts the calls; clearErr makes it fail.
func (f *fakeControl) ClearFaults() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clears++
	return f.clearErr
}

func (f *fakeControl) Pause()  { f.mu.Lock(); f.paused = true; f.mu.Unlock() }
func (f *fakeControl) Resume() { f.mu.Lock(); f.paused = false; f.mu.Unlock() }

func (f *fakeControl) Status() inspection.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	return inspection.Status{
		Station: inspection.Station{ID: station, Name: "Cam 1", Line: "line1"}, Version: "1.2.3",
		Started: now.Add(-time.Minute), UptimeS: 60, Trigger: "mqtt", Paused: f.paused,
		Model:  inspection.ModelStatus{Product: "demo", BundleHash: "sha256:abc", Threshold: f.image, PixelThreshold: f.pixel, ThresholdFrom: f.thresholdFrom},
		Camera: inspection.CameraStatus{State: inspection.CameraOnline, Since: now.Add(-time.Minute)},
		Counts: inspection.Counts{Total: 10, OK: 8, NG: 1, Error: 1}, RatePerS: 2.5, Healthy: true,
		Problems: []string{}, Latency: inspection.LatencyStats{P50: 20, P99: 35, Max: 40},
		Sinks: []inspection.SinkStatus{{Name: "mqtt", Capacity: 1024, Delivered: 10, Dropped: 1}},
	}
}

// helperBins are the helper programs under testdata (killed with SIGKILL
// by the tests), each built once per test binary into one temporary
// directory that TestMain removes.
var helperBins struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

// helperBin builds ./testdata/<name> once and returns the executable.
func helperBin(t testing.TB, name string) string {
	t.Helper()
	helperBins.Lock()
	defer helperBins.Unlock()
	if p, ok := helperBins.paths[name]; ok {
		return p
	}
	if helperBins.dir == "" {
		dir, err := os.MkdirTemp("", "mqtt-helpers-")
		if err != nil {
			t.Fatal(err)
		}
		helperBins.dir, helperBins.paths = dir, map[string]string{}
	}
	p := filepath.Join(helperBins.dir, name)
	if out, err := exec.Command("go", "build", "-o", p, "./testdata/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/%s: %v\n%s", name, err, out)
	}
	helperBins.paths[name] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if helperBins.dir != "" {
		os.RemoveAll(helperBins.dir)
	}
	os.Exit(code)
}

func publisherBin(t testing.TB) string { return helperBin(t, "publisher") }

// proc is a running publisher helper.
type proc struct {
	cmd       *exec.Cmd
	mu        sync.Mutex
	persisted int
	lines     []string
	done      chan struct{}
}

func startPublisher(t testing.TB, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(publisherBin(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = tWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			if v, ok := strings.CutPrefix(line, "persisted "); ok {
				p.persisted, _ = strconv.Atoi(v)
			}
			p.mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) waitLine(t testing.TB, prefix string, timeout time.Duration) {
	t.Helper()
	seen := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.lines {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		return false
	}
	deadline := time.After(timeout)
	for !seen() {
		select {
		case <-p.done:
			// The reader has appended every line before done closes:
			// look once more, then the line is really missing.
			if seen() {
				return
			}
			p.mu.Lock()
			lines := append([]string(nil), p.lines...)
			p.mu.Unlock()
			t.Fatalf("publisher exited before printing %q; it printed %q", prefix, lines)
		case <-deadline:
			t.Fatalf("publisher did not print %q within %s", prefix, timeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (p *proc) Persisted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.persisted
}

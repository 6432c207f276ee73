package mqtt

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt/sparkplug"
)

// newTestClient is New with testConfig on a fresh outbox directory below
// a temporary directory (so that a test can see whether it was created).
func newTestClient(t *testing.T, mutate ...func(*Options)) (*Client, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "outbox")
	o := Options{Config: testConfig(dir), Station: "s1", StateDir: filepath.Join(filepath.Dir(dir), "state")}
	for _, m := range mutate {
		m(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, dir
}

// TestNewAcquiresNothing: New creates no file or directory, takes no lock
// and starts no goroutine, in both modes; Close without Start is harmless.
func TestNewAcquiresNothing(t *testing.T) {
	for _, mode := range []string{config.MQTTModeJSON, config.MQTTModeSparkplug} {
		t.Run(mode, func(t *testing.T) {
			before := countGoroutines()
			c, dir := newTestClient(t, func(o *Options) { o.Config.Mode = mode })
			if after := countGoroutines(); after > before {
				t.Errorf("New started %d goroutines", after-before)
			}
			for _, p := range []string{dir, filepath.Join(filepath.Dir(dir), "state", sparkplug.BdSeqFile)} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("New created %s (stat: %v)", p, err)
				}
			}
			if err := c.Close(context.Background()); err != nil {
				t.Fatalf("Close without Start: %v", err)
			}
			if err := c.Close(context.Background()); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := c.Start(context.Background(), nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("Start after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func countGoroutines() int {
	// A goroutine of an earlier test may still be on its way out: let it
	// go, so that the count only grows when something new runs.
	time.Sleep(30 * time.Millisecond)
	return runtime.NumGoroutine()
}

// TestDeliverBeforeStartAndAfterClose: a result before Start is an error,
// not a panic and not silently kept; an event before Start waits for it.
func TestDeliverBeforeStartAndAfterClose(t *testing.T) {
	c, _ := newTestClient(t)
	r := &inspection.Result{ID: "r1"}
	if err := c.Deliver(context.Background(), r); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Deliver before Start: %v, want ErrNotStarted", err)
	}
	if err := c.Flush(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Flush before Start: %v, want ErrNotStarted", err)
	}
	c.Event(inspection.Event{Severity: inspection.Info, Kind: inspection.EventCameraOnline, Message: "before start"})
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "Start called twice") {
		t.Fatalf("second Start: %v", err)
	}
	if err := c.Deliver(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, _, err := c.box.next(0, 10)
	if err != nil || len(recs) != 2 || recs[0].kind != kindEvent || recs[1].kind != kindResult {
		t.Fatalf("outbox after Start: %d records (%v), want the early event then the result", len(recs), err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(context.Background(), r); !errors.Is(err, ErrClosed) {
		t.Fatalf("Deliver after Close: %v, want ErrClosed", err)
	}
}

// silentBroker accepts TCP connections and never answers: a connection
// attempt to it waits for its CONNACK until connect_timeout.
func silentBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	return "tcp://" + ln.Addr().String()
}

// TestStartFailureReleasesEverything: when Start fails after opening the
// outbox (here its context ends during the first connection attempt), the
// outbox is closed again (its lock free for the next process), no
// goroutine of the client runs, and the client is closed.
func TestStartFailureReleasesEverything(t *testing.T) {
	broker := silentBroker(t)
	for _, mode := range []string{config.MQTTModeJSON, config.MQTTModeSparkplug} {
		t.Run(mode, func(t *testing.T) {
			c, dir := newTestClient(t, func(o *Options) {
				o.Config.Broker, o.Config.Mode = broker, mode
				o.Config.ConnectTimeout = config.Dur(10 * time.Second)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := c.Start(ctx, nil)
			if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
				t.Fatalf("Start: %v, want the context's error", err)
			}
			o, _, err := openOutbox(dir, 10)
			if err != nil {
				t.Fatalf("outbox still held after a failed Start: %v", err)
			}
			o.close()
			select {
			case <-c.writerDone:
			default:
				t.Error("writer not stopped")
			}
			waited := make(chan struct{})
			go func() { c.routines.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(5 * time.Second):
				t.Error("goroutines of the failed Start still run")
			}
			if err := c.Deliver(context.Background(), &inspection.Result{ID: "r"}); !errors.Is(err, ErrClosed) {
				t.Errorf("Deliver after a failed Start: %v, want ErrClosed", err)
			}
			if err := c.Close(context.Background()); err != nil {
				t.Errorf("Close after a failed Start: %v", err)
			}
		})
	}
}

// holdWriter makes the client's writer stop before its next batch until
// the returned release function is called; entered is closed once it
// waits.
func holdWriter(c *Client) (entered <-chan struct{}, release func()) {
	in, gate := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	c.hooks.beforeWrite = func() {
		if once.CompareAndSwap(false, true) {
			close(in)
			<-gate
		}
	}
	return in, func() { close(gate) }
}

// TestCloseWaitsForTheWriter: a result delivered just before Close is in
// the outbox file after Close, because Close waits for the writer goroutine
// (held here in the middle of its work) before it closes the outbox.
func TestCloseWaitsForTheWriter(t *testing.T) {
	c, dir := newTestClient(t)
	entered, release := holdWriter(c)
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(context.Background(), &inspection.Result{ID: "last-before-close"}); err != nil {
		t.Fatal(err)
	}
	<-entered
	var released atomic.Bool
	timer := time.AfterFunc(200*time.Millisecond, func() { released.Store(true); release() })
	defer timer.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !released.Load() {
		t.Fatal("Close returned while the writer goroutine was still running")
	}
	select {
	case <-c.writerDone:
	default:
		t.Fatal("writer goroutine still running after Close")
	}
	o, _, err := openOutbox(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	recs, _, _ := o.next(0, 10)
	if len(recs) != 1 || !strings.Contains(string(recs[0].payload), "last-before-close") {
		t.Fatalf("outbox after Close holds %d records, want the result delivered before Close", len(recs))
	}
}

// TestFlushWakesWhenWritten: Flush waits for the writer's commit and
// returns as soon as it happens (no timer to wait for), and not before.
func TestFlushWakesWhenWritten(t *testing.T) {
	c, _ := newTestClient(t)
	entered, release := holdWriter(c)
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(context.Background(), &inspection.Result{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
	<-entered
	var released atomic.Bool
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(context.Background()) }()
	time.AfterFunc(50*time.Millisecond, func() { released.Store(true); release() })
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatal(err)
		}
		if !released.Load() {
			t.Fatal("Flush returned before the writer wrote the result")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Flush did not return after the writer committed")
	}
	if d := c.box.depth(); d != 1 {
		t.Fatalf("outbox depth %d after Flush, want 1", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush with nothing pending: %v", err)
	}
}

// TestCloseInterruptsWriteRetries: a failing outbox write is retried after
// a pause; Close whose context ends does not wait for those pauses.
func TestCloseInterruptsWriteRetries(t *testing.T) {
	c, _ := newTestClient(t)
	c.hooks.retryDelay = 20 * time.Second
	entered, release := holdWriter(c)
	release()
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.box.db.Close(); err != nil { // every write fails from now on
		t.Fatal(err)
	}
	if err := c.Deliver(context.Background(), &inspection.Result{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	c.Close(ctx)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %s: it waited for the writer's retry pauses", d)
	}
	// The result is lost (no broker to publish it to), and so are the
	// events saying so: counted, not silent.
	if s := c.Stats(); s.ResultsLost != 1 || s.Dropped < 1 || s.Persisted != 0 {
		t.Fatalf("results lost %d, dropped %d, persisted %d; want the result counted as lost", s.ResultsLost, s.Dropped, s.Persisted)
	}
}

// TestMetrics: the client's series, with the names, help texts and types
// the station's dashboards use, and their values.
func TestMetrics(t *testing.T) {
	c, _ := newTestClient(t)
	if n := testutil.CollectAndCount(c); n != 13 {
		t.Fatalf("%d series, want 13", n)
	}
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := c.Deliver(context.Background(), &inspection.Result{ID: "r" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP inspectd_mqtt_command_errors_total Commands answered with an error.
# TYPE inspectd_mqtt_command_errors_total counter
inspectd_mqtt_command_errors_total 0
# HELP inspectd_mqtt_connected 1 while connected to the broker.
# TYPE inspectd_mqtt_connected gauge
inspectd_mqtt_connected 0
# HELP inspectd_mqtt_outbox_dropped_total Messages dropped because the outbox was full (oldest first).
# TYPE inspectd_mqtt_outbox_dropped_total counter
inspectd_mqtt_outbox_dropped_total 0
# HELP inspectd_mqtt_outbox_messages Messages waiting in the durable outbox.
# TYPE inspectd_mqtt_outbox_messages gauge
inspectd_mqtt_outbox_messages 2
# HELP inspectd_mqtt_outbox_writable 0 while writes to the MQTT outbox fail (results are then published directly, at most once).
# TYPE inspectd_mqtt_outbox_writable gauge
inspectd_mqtt_outbox_writable 1
# HELP inspectd_mqtt_published_unpersisted_total Messages published directly, without the outbox, because it could not be written (at most once).
# TYPE inspectd_mqtt_published_unpersisted_total counter
inspectd_mqtt_published_unpersisted_total 0
# HELP inspectd_mqtt_outbox_quarantined_total Corrupt outbox records moved aside.
# TYPE inspectd_mqtt_outbox_quarantined_total counter
inspectd_mqtt_outbox_quarantined_total 0
# HELP inspectd_mqtt_publish_retries_total Publishes repeated after a timeout or an error (possible duplicates).
# TYPE inspectd_mqtt_publish_retries_total counter
inspectd_mqtt_publish_retries_total 0
# HELP inspectd_mqtt_published_total Messages acknowledged by the broker.
# TYPE inspectd_mqtt_published_total counter
inspectd_mqtt_published_total 0
# HELP inspectd_mqtt_reconnects_total Reconnections to the broker.
# TYPE inspectd_mqtt_reconnects_total counter
inspectd_mqtt_reconnects_total 0
# HELP inspectd_mqtt_results_accepted_total Results handed to the MQTT output (not yet on disk).
# TYPE inspectd_mqtt_results_accepted_total counter
inspectd_mqtt_results_accepted_total 2
# HELP inspectd_mqtt_results_lost_total Results neither written to the outbox nor published (outbox not writable and the broker not reachable).
# TYPE inspectd_mqtt_results_lost_total counter
inspectd_mqtt_results_lost_total 0
# HELP inspectd_mqtt_results_persisted_total Results written (fsync) to the MQTT outbox: from here on they survive a crash.
# TYPE inspectd_mqtt_results_persisted_total counter
inspectd_mqtt_results_persisted_total 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestCollectDoesNotWaitForTheOutbox: a scrape while an outbox
// transaction is in progress (its lock held) returns at once.
func TestCollectDoesNotWaitForTheOutbox(t *testing.T) {
	c, _ := newTestClient(t)
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	c.box.mu.Lock() // as append does across its fsync
	defer c.box.mu.Unlock()
	done := make(chan int, 1)
	go func() { done <- testutil.CollectAndCount(c) }()
	select {
	case n := <-done:
		if n != 13 {
			t.Fatalf("%d series", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Collect blocked on the outbox lock")
	}
}

// TestNewErrors: what New refuses, with the complete error text.
func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"station with wildcard", func(o *Options) { o.Station = "cam+1" },
			`mqtt: station id "cam+1" cannot be used in a topic (empty, or contains +, # or /)`},
		{"invalid section", func(o *Options) { o.Config.QoS = 0 },
			"mqtt: invalid [mqtt] section: mqtt.qos: 0 is out of range; allowed 1 to 2 (QoS 0 would drop results while disconnected)"},
		{"sparkplug without state dir", func(o *Options) { o.Config.Mode, o.StateDir = config.MQTTModeSparkplug, "" },
			`mqtt: mode "sparkplug" needs the state directory (Options.StateDir) for its bdSeq file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Config: testConfig(t.TempDir()), Station: "s1", StateDir: t.TempDir()}
			tc.mutate(&o)
			c, err := New(o)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %s", err, tc.want)
			}
			if c != nil {
				t.Fatal("a client with the error")
			}
		})
	}
}

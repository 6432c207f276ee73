package plc

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inspectd/inspectd/inspection"
)

// New opens no socket; Start connects.
func TestNewOpensNothingStartConnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	out, err := New(testCfg(ln.Addr().String(), "strobe"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("New connected to the PLC")
	case <-time.After(200 * time.Millisecond):
	}
	if err := out.Start(context.Background(), newEvents()); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not connect")
	}
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	cfg := testCfg(freeAddr(t), "strobe")
	ctx := context.Background()
	tests := []struct {
		name string
		do   func(*Output) error
		want string
	}{
		{"nil host", func(o *Output) error { return o.Start(ctx, nil) }, "plc: start: host is nil"},
		{"cancelled ctx", func(o *Output) error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			return o.Start(c, newEvents())
		}, "plc: start: context canceled"},
		{"started twice", func(o *Output) error {
			if err := o.Start(ctx, newEvents()); err != nil {
				return err
			}
			defer o.Close(ctx)
			return o.Start(ctx, newEvents())
		}, "plc: start: already started"},
		{"start after close", func(o *Output) error {
			if err := o.Close(ctx); err != nil {
				return err
			}
			return o.Start(ctx, newEvents())
		}, "plc: start: output is closed"},
		{"deliver before start", func(o *Output) error { return o.Deliver(ctx, result(1, inspection.OK, 0)) }, `plc: part "p1" not sent: output not started`},
		{"deliver after close", func(o *Output) error {
			if err := o.Start(ctx, newEvents()); err != nil {
				return err
			}
			if err := o.Close(ctx); err != nil {
				return err
			}
			return o.Deliver(ctx, result(1, inspection.OK, 0))
		}, `plc: part "p1" not sent: output closed`},
		{"close without start, twice", func(o *Output) error {
			return errors.Join(o.Close(ctx), o.Close(ctx))
		}, ""},
		{"close twice", func(o *Output) error {
			if err := o.Start(ctx, newEvents()); err != nil {
				return err
			}
			return errors.Join(o.Close(ctx), o.Close(ctx))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = tt.do(out)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// Close returns only once the connector goroutine has returned, also while
// it waits out a reconnect backoff.
func TestCloseWaitsForConnector(t *testing.T) {
	for range 20 {
		cfg := testCfg(freeAddr(t), "strobe") // nothing listens: connect attempts fail
		out, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		evs := newEvents()
		if err := out.Start(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, EventDisconnected)
		if err := out.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-out.done:
		default:
			t.Fatal("Close returned before the connector goroutine")
		}
	}
}

// A scrape (Collect, Stats) never waits for the PLC: not while Deliver
// waits for an acknowledgement that does not come, nor while a request
// hangs. Close interrupts the waiting Deliver.
func TestCollectDoesNotWaitForPLC(t *testing.T) {
	for _, stall := range []bool{false, true} {
		name := "never acks"
		if stall {
			name = "request hangs"
		}
		t.Run(name, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := testCfg(addr, "strobe")
			cfg.AckTimeout.D, cfg.Timeout.D = 30*time.Second, 30*time.Second
			h := newPLC(cfg)
			h.noAck, h.tookCh = true, make(chan string, 1)
			if stall {
				h.stall = make(chan struct{})
				defer close(h.stall)
			}
			startServer(t, addr, h)
			out, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			evs := newEvents()
			if err := out.Start(context.Background(), evs); err != nil {
				t.Fatal(err)
			}
			evs.wait(t, EventConnected)
			delivered := make(chan error, 1)
			go func() { delivered <- out.Deliver(context.Background(), result(1, inspection.NG, 0.5)) }()
			select {
			case <-h.tookCh: // written; Deliver now waits for the ack
			case <-time.After(5 * time.Second):
				t.Fatal("the PLC never got the part")
			}
			scraped := make(chan int, 1)
			go func() {
				_ = out.Stats()
				scraped <- testutil.CollectAndCount(out)
			}()
			select {
			case n := <-scraped:
				if n != 6 {
					t.Errorf("%d series, want 6", n)
				}
			case <-time.After(time.Second):
				t.Fatal("Collect blocked while Deliver waits for the PLC")
			}
			select {
			case err := <-delivered:
				t.Fatalf("Deliver returned early: %v", err)
			default:
			}
			if stall {
				// Close waits for the request in progress; let it end.
				go func() { time.Sleep(50 * time.Millisecond); h.stall <- struct{}{} }()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := out.Close(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-delivered:
				if err == nil {
					t.Fatal("interrupted Deliver succeeded")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not interrupt Deliver")
			}
		})
	}
}

// ageRE matches the age of a verdict stamped 2 s ago, rounded to ms.
var ageRE = regexp.MustCompile(`2(\.\d+)?s old`)

// A late verdict takes late_action and is never written as the verdict of
// another part: the sequence shows the gap.
func TestLateVerdict(t *testing.T) {
	tests := []struct {
		action  string
		wantErr string
		taken   []string // by the PLC: "seq:code:score:coil"
	}{
		{LateDrop, `plc: part "p1" (sequence 1): verdict too old: 2s old, more than plc.max_verdict_age 1s; not written; the PLC's own timeout rejects the part`,
			[]string{"2:1:100:false"}},
		{LateError, `plc: part "p1" (sequence 1): verdict too old: 2s old, more than plc.max_verdict_age 1s; written as ERROR for its own sequence`,
			[]string{"1:3:100:true", "2:1:100:false"}},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := testCfg(addr, "strobe")
			cfg.MaxVerdictAge.D, cfg.LateAction = time.Second, tt.action
			h := newPLC(cfg)
			startServer(t, addr, h)
			out, evs := start(t, cfg, true)
			old := result(1, inspection.OK, 0.1)
			old.VerdictTime = time.Now().Add(-2 * time.Second)
			err := out.Deliver(context.Background(), old)
			if err == nil || !errors.Is(err, ErrLate) || ageRE.ReplaceAllString(err.Error(), "2s old") != tt.wantErr {
				t.Fatalf("error %v\nwant %s", err, tt.wantErr)
			}
			e := evs.wait(t, EventLateVerdict)
			if e.Severity != inspection.Warning || e.Fields["part_id"] != "p1" || e.Fields["seq"] != "1" || e.Fields["action"] != tt.action || e.Station != "st1" {
				t.Errorf("event %+v", e)
			}
			if err := out.Deliver(context.Background(), result(2, inspection.OK, 0.1)); err != nil {
				t.Fatal(err)
			}
			if got := h.taken(); strings.Join(got, " ") != strings.Join(tt.taken, " ") {
				t.Errorf("PLC took %v, want %v", got, tt.taken)
			}
			st := out.Stats()
			if st.Late != 1 || st.Failed != 0 || st.LastSeq != 2 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// Parts queued behind a PLC that stopped acknowledging are not written
// once their verdicts are too old: the queue drains instead of handing
// the PLC a stream of stale verdicts.
func TestLateBacklog(t *testing.T) {
	addr := freeAddr(t)
	cfg := testCfg(addr, "strobe")
	cfg.AckTimeout.D, cfg.MaxVerdictAge.D = 100*time.Millisecond, 250*time.Millisecond
	h := newPLC(cfg)
	h.noAck = true
	startServer(t, addr, h)
	out, _ := start(t, cfg, true)
	stamp := time.Now()
	late := 0
	for i := 1; i <= 10; i++ {
		r := result(i, inspection.NG, 0.5)
		r.VerdictTime = stamp
		if err := out.Deliver(context.Background(), r); errors.Is(err, ErrLate) {
			late++
		}
	}
	written := len(h.taken())
	if written < 1 || written > 3 || written+late != 10 {
		t.Errorf("%d written, %d late; want 1 to 3 written, the rest late", written, late)
	}
	if st := out.Stats(); st.Late != uint64(late) || st.AckTimeouts != uint64(written) {
		t.Errorf("stats %+v", st)
	}
}

func TestMetrics(t *testing.T) {
	addr := freeAddr(t)
	cfg := testCfg(addr, "sequence")
	h := newPLC(cfg)
	startServer(t, addr, h)
	out, _ := start(t, cfg, true)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := out.Deliver(ctx, result(i, inspection.OK, 0)); err != nil {
			t.Fatal(err)
		}
	}
	old := result(4, inspection.NG, 0.9)
	old.VerdictTime = time.Now().Add(-time.Hour)
	_ = out.Deliver(ctx, old)
	want := `
# HELP inspectd_plc_ack_timeouts_total Parts written but not acknowledged in time.
# TYPE inspectd_plc_ack_timeouts_total counter
inspectd_plc_ack_timeouts_total 0
# HELP inspectd_plc_connected 1 while connected to the PLC.
# TYPE inspectd_plc_connected gauge
inspectd_plc_connected 1
# HELP inspectd_plc_failed_total Parts not written (disconnected or error).
# TYPE inspectd_plc_failed_total counter
inspectd_plc_failed_total 0
# HELP inspectd_plc_late_total Verdicts older than plc.max_verdict_age when the PLC output took them: not written (late_action drop) or written as ERROR (late_action error).
# TYPE inspectd_plc_late_total counter
inspectd_plc_late_total 1
# HELP inspectd_plc_reconnects_total Reconnections to the PLC.
# TYPE inspectd_plc_reconnects_total counter
inspectd_plc_reconnects_total 0
# HELP inspectd_plc_sent_total Parts written to the PLC and acknowledged.
# TYPE inspectd_plc_sent_total counter
inspectd_plc_sent_total 3
`
	if err := testutil.CollectAndCompare(out, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n, err := testutil.CollectAndLint(out); err != nil || len(n) != 0 {
		t.Errorf("lint: %v %v", n, err)
	}
}

package gpio

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// countingChip is a Sim that counts the lines it holds requested, can
// refuse chosen lines, and records its Close.
type countingChip struct {
	*Sim
	fail map[string]error // line → request error

	mu     sync.Mutex
	open   int
	total  int
	closed bool
}

func newCountingChip() *countingChip {
	return &countingChip{Sim: NewSim(), fail: map[string]error{}}
}

func (c *countingChip) state() (open int, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.closed
}

func (c *countingChip) requested() func() {
	c.mu.Lock()
	c.open++
	c.total++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.open--
			c.mu.Unlock()
		})
	}
}

type countedOutput struct {
	TaggedOutput
	release func()
}

func (o *countedOutput) Close() error { o.release(); return o.TaggedOutput.Close() }

type countedInput struct {
	Input
	release func()
}

func (i *countedInput) Close() error { i.release(); return i.Input.Close() }

func (c *countingChip) Output(line string, o OutputOptions) (Output, error) {
	if err := c.fail[line]; err != nil {
		return nil, err
	}
	out, err := c.Sim.Output(line, o)
	if err != nil {
		return nil, err
	}
	return &countedOutput{out.(TaggedOutput), c.requested()}, nil
}

func (c *countingChip) Input(line string, o InputOptions, h EdgeHandler) (Input, error) {
	if err := c.fail[line]; err != nil {
		return nil, err
	}
	in, err := c.Sim.Input(line, o, h)
	if err != nil {
		return nil, err
	}
	return &countedInput{in, c.requested()}, nil
}

func (c *countingChip) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.Sim.Close()
}

// New requests no line; Start requests them all; Close releases them and
// closes the chip, once; the lifecycle refuses what it cannot do.
func TestLifecycleLines(t *testing.T) {
	cfg := testConfig("energise_to_pass")
	cfg.OKLine, cfg.NGLine, cfg.StrobeLine = "ok", "ng", "strobe"
	chip := newCountingChip()
	a, err := New(cfg, chip, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, closed := chip.state(); n != 0 || closed {
		t.Fatalf("after New: %d lines requested, chip closed %v; want 0, false", n, closed)
	}
	if err := a.Start(context.Background(), nil); err == nil || err.Error() != "gpio: start: no host" {
		t.Errorf("Start(nil host) error %v", err)
	}
	host := eventHost{&eventLog{}}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Start(cancelled, host); err == nil || err.Error() != "gpio: start: context canceled" {
		t.Errorf("Start(cancelled) error %v", err)
	}
	if err := a.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	// reject, ready, fault, ok, ng, strobe, part-present.
	if n, _ := chip.state(); n != 7 {
		t.Errorf("after Start: %d lines requested; want 7", n)
	}
	if err := a.Start(context.Background(), host); err == nil || err.Error() != "gpio: start: already started" {
		t.Errorf("second Start error %v", err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, closed := chip.state(); n != 0 || !closed {
		t.Errorf("after Close: %d lines requested, chip closed %v; want 0, true", n, closed)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := a.Start(context.Background(), host); err == nil || err.Error() != "gpio: start: actuator closed" {
		t.Errorf("Start after Close error %v", err)
	}

	// Close without Start closes the chip and requests nothing.
	chip = newCountingChip()
	a, err = New(cfg, chip, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, closed := chip.state(); n != 0 || !closed || chip.total != 0 {
		t.Errorf("Close without Start: %d lines open, %d requested, chip closed %v; want 0, 0, true", n, chip.total, closed)
	}
}

// Halt before Start: Start requests the lines and shows the safe state.
func TestHaltBeforeStart(t *testing.T) {
	cfg := testConfig("energise_to_reject")
	sim := NewSim()
	a, err := New(cfg, sim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.SetReady(true)
	a.Halt("test")
	if err := a.Start(context.Background(), eventHost{&eventLog{}}); err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	if !sim.Value("reject") || !sim.Value("fault") || sim.Value("ready") {
		t.Errorf("reject=%v fault=%v ready=%v; want the safe state (on, on, off)", sim.Value("reject"), sim.Value("fault"), sim.Value("ready"))
	}
}

// A drained Close waits for the parts due before its deadline (less
// 100 ms) by condition: it returns the instant the last such pulse ends,
// not at the next tick of a poll. Parts due later meet the safe state.
func TestCloseWaitsForScheduledParts(t *testing.T) {
	for _, c := range []struct {
		name     string
		deadline time.Duration // of Close's ctx, from t0
		wantBack time.Duration // when Close returns, from t0
		fired    bool          // "early" got its own reject pulse
	}{
		// Due at 150 ms, pulse until 160 ms, all before 2 s − 100 ms.
		{"pulse ends before the deadline", 2 * time.Second, 160 * time.Millisecond, true},
		// Due at 150 ms < 255 − 100 ms; its pulse would end after: not waited for.
		{"pulse ends after the deadline", 255 * time.Millisecond, 150 * time.Millisecond, true},
		// Due at 150 ms ≥ 200 − 100 ms: the safe state at once.
		{"due after the deadline", 200 * time.Millisecond, time.Millisecond, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig("energise_to_reject")
				cfg.PartPresentLine = ""
				cfg.RejectDelay = config.Dur(150 * time.Millisecond)
				cfg.RejectPulse = config.Dur(10 * time.Millisecond)
				sim := NewSim()
				a := started(t, cfg, sim, eventHost{&eventLog{}}, Options{})
				t0 := time.Now()
				a.PartTriggered("early", t0)
				_ = a.Deliver(context.Background(), &inspection.Result{PartID: "early", TriggerTime: t0, Verdict: inspection.NG})
				a.PartTriggered("later", t0.Add(2*time.Second))
				_ = a.Deliver(context.Background(), &inspection.Result{PartID: "later", TriggerTime: t0.Add(2 * time.Second), Verdict: inspection.NG})
				time.Sleep(time.Millisecond)
				ctx, cancel := context.WithDeadline(context.Background(), t0.Add(c.deadline))
				defer cancel()
				if err := a.Close(ctx); err != nil {
					t.Fatal(err)
				}
				if got := time.Since(t0); got != c.wantBack {
					t.Errorf("Close returned %s after t0; want %s", got, c.wantBack)
				}
				var fired bool
				for _, x := range sim.Actuations() {
					if x.Line != "reject" {
						continue
					}
					switch {
					case x.PartID == "early" && x.Value && x.Reason == "reject":
						fired = true
						if !x.Time.Equal(t0.Add(150 * time.Millisecond)) {
							t.Errorf("early fired at %s; want 150ms", x.Time.Sub(t0))
						}
					case x.PartID == "later":
						t.Errorf("the part due after the deadline was actuated: %+v", x)
					}
				}
				if fired != c.fired {
					t.Errorf("early fired %v; want %v: %+v", fired, c.fired, sim.Actuations())
				}
				if !sim.Value("reject") || !sim.Value("fault") {
					t.Error("outputs not in the safe state after Close")
				}
			})
		})
	}
}

// The documented safety rule (doc.go, Polarity): with energise_to_pass, a
// reject decided while an earlier part's pass pulse is still active cuts
// that pulse short — the output drops at the reject's due time, not at
// the end of the pass pulse.
func TestRejectCutsPassPulseShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_pass")
		cfg.PartPresentLine = ""
		cfg.RejectDelay = config.Dur(800 * time.Millisecond)
		cfg.RejectPulse = config.Dur(100 * time.Millisecond)
		sim := NewSim()
		a := started(t, cfg, sim, eventHost{&eventLog{}}, Options{})
		t0 := time.Now()
		for _, p := range []struct {
			id      string
			at      time.Duration
			verdict inspection.Verdict
		}{{"ok-1", 0, inspection.OK}, {"ng-2", 40 * time.Millisecond, inspection.NG}} {
			time.Sleep(time.Until(t0.Add(p.at)))
			a.PartTriggered(p.id, time.Now())
			_ = a.Deliver(context.Background(), &inspection.Result{PartID: p.id, TriggerTime: time.Now(), Verdict: p.verdict})
		}
		time.Sleep(time.Until(t0.Add(850 * time.Millisecond)))
		if sim.Value("reject") {
			t.Error("at 850 ms the actuator is still energised: ng-2 (due 840 ms) passes inside ok-1's pass pulse")
		}
		time.Sleep(time.Second)
		var got []string
		for _, x := range sim.Actuations() {
			if x.Line == "reject" {
				got = append(got, fmt.Sprintf("%v %s %s @%s", x.Value, x.PartID, x.Reason, x.Time.Sub(t0)))
			}
		}
		want := []string{"true ok-1 pass @800ms", "false ng-2 reject @840ms"}
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("reject line changes:\n got %q\nwant %q", got, want)
		}
	})
}

// While a fault is latched the handshake asks for no time: a verdict
// queued after an earlier handshake must not make the scheduler spin on a
// deadline in the past (on the realtime thread, a core lost to the
// engine).
func TestHandshakeIdleWhileFaulted(t *testing.T) {
	cfg := testConfig("energise_to_pass")
	cfg.OKLine, cfg.NGLine, cfg.StrobeLine = "ok", "ng", "strobe"
	a, err := New(cfg, NewSim(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	a.hs.enqueue("p1", true)
	if next := a.hs.step(t0); !next.Equal(t0.Add(20 * time.Millisecond)) {
		t.Fatalf("strobe raised until %v; want +20ms", next.Sub(t0))
	}
	a.hs.step(t0.Add(20 * time.Millisecond)) // dropped; the next may follow at +40 ms
	a.out.latchFault("test")
	a.hs.enqueue("p2", false)
	now := t0.Add(time.Second)
	if next := a.hs.step(now); !next.IsZero() && !next.After(now) {
		t.Errorf("faulted handshake asks to run again at %v, %v before now: the scheduler would spin", next.Sub(t0), now.Sub(next))
	}
	a.out.clearFault()
	if next := a.hs.step(now); !next.Equal(now.Add(20 * time.Millisecond)) {
		t.Errorf("after ClearFault the queued verdict is not signalled: next %v", next)
	}
}

// The Actuator's series keep the names, help texts and types of
// inspectd's dashboards.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_reject")
		cfg.PartPresentLine = ""
		cfg.RejectDelay = config.Dur(100 * time.Millisecond)
		cfg.MaxPartsInFlight = 3
		a := started(t, cfg, NewSim(), eventHost{&eventLog{}}, Options{})
		t0 := time.Now()
		for _, id := range []string{"p1", "p2", "p3"} {
			a.PartTriggered(id, t0)
		}
		_ = a.Deliver(context.Background(), &inspection.Result{PartID: "p1", TriggerTime: t0, Verdict: inspection.OK})
		_ = a.Deliver(context.Background(), &inspection.Result{PartID: "p2", TriggerTime: t0, Verdict: inspection.NG})
		time.Sleep(150 * time.Millisecond)
		_ = a.Deliver(context.Background(), &inspection.Result{PartID: "p3", TriggerTime: t0, Verdict: inspection.NG}) // late
		for _, id := range []string{"q1", "q2", "q3", "q4"} {
			a.PartTriggered(id, time.Now()) // q4 overflows
		}
		const want = `
# HELP inspectd_gpio_faulted 1 while a fault is latched (outputs in the safe state).
# TYPE inspectd_gpio_faulted gauge
inspectd_gpio_faulted 1
# HELP inspectd_gpio_fifo_overflows_total Parts refused because the in-flight FIFO was full.
# TYPE inspectd_gpio_fifo_overflows_total counter
inspectd_gpio_fifo_overflows_total 1
# HELP inspectd_gpio_late_verdicts_total Verdicts that arrived after their part's actuation time.
# TYPE inspectd_gpio_late_verdicts_total counter
inspectd_gpio_late_verdicts_total 1
# HELP inspectd_gpio_lost_edges_total Input edges lost (kernel event buffer overrun).
# TYPE inspectd_gpio_lost_edges_total counter
inspectd_gpio_lost_edges_total 0
# HELP inspectd_gpio_no_verdict_total Parts without a verdict at their actuation time.
# TYPE inspectd_gpio_no_verdict_total counter
inspectd_gpio_no_verdict_total 1
# HELP inspectd_gpio_parts_in_flight Parts registered and not yet at the reject station.
# TYPE inspectd_gpio_parts_in_flight gauge
inspectd_gpio_parts_in_flight 3
# HELP inspectd_gpio_passed_total Parts let through.
# TYPE inspectd_gpio_passed_total counter
inspectd_gpio_passed_total 1
# HELP inspectd_gpio_rejected_total Parts rejected at their due time.
# TYPE inspectd_gpio_rejected_total counter
inspectd_gpio_rejected_total 2
`
		if err := testutil.CollectAndCompare(a, strings.NewReader(want)); err != nil {
			t.Error(err)
		}
		if n := testutil.CollectAndCount(a); n != 8 {
			t.Errorf("%d series; want 8", n)
		}
		if problems, err := testutil.CollectAndLint(a); err != nil || len(problems) != 0 {
			t.Errorf("lint: %v %+v", err, problems)
		}
	})
}

// Collect takes none of the locks held across output writes: a scrape
// during a slow write does not wait for it.
func TestCollectTakesNoLock(t *testing.T) {
	a, err := New(testConfig("energise_to_pass"), NewSim(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.sched.mu.Lock()
	a.out.mu.Lock()
	defer a.sched.mu.Unlock()
	defer a.out.mu.Unlock()
	done := make(chan int)
	go func() { done <- testutil.CollectAndCount(a) }()
	select {
	case n := <-done:
		if n != 8 {
			t.Errorf("%d series; want 8", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Collect blocked on a lock held across output writes")
	}
}

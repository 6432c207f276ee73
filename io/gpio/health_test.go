package gpio

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// asHealth returns a's health and fault-clearing interfaces as the daemon
// discovers them on its sinks.
func asHealth(t *testing.T, a *Actuator) (inspection.HealthReporter, inspection.FaultClearer) {
	t.Helper()
	var s inspection.Sink = a
	hr, ok := s.(inspection.HealthReporter)
	if !ok {
		t.Fatal("the Actuator is not an inspection.HealthReporter")
	}
	fc, ok := s.(inspection.FaultClearer)
	if !ok {
		t.Fatal("the Actuator is not an inspection.FaultClearer")
	}
	return hr, fc
}

// Issue 24 #5: with reject_delay "0s" (the old default) and
// energise_to_pass no part can get its pass pulse: every part is rejected
// physically while the results say OK. The actuator reports it as a
// problem (the daemon: /healthz 503, Result.Faults) for a minute after
// the last such part.
func TestNoVerdictInTimeIsAProblem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_pass")
		cfg.RejectDelay = config.Dur(0)
		r := newRig(t, cfg, 50*time.Millisecond, 50*time.Millisecond)
		r.ctl.verdict = func(string) inspection.Verdict { return inspection.OK }
		hr, _ := asHealth(t, r.a)
		if p := hr.Problems(); len(p) != 0 {
			t.Errorf("problems before any part: %q", p)
		}
		r.parts(5, 150*time.Millisecond)
		time.Sleep(time.Second) // every verdict is in
		for _, x := range r.sim.Actuations() {
			if x.Line == "reject" && x.Reason == "pass" {
				t.Errorf("a pass pulse with reject_delay 0s: %+v", x)
			}
		}
		if st := r.a.Stats(); st.NoVerdict != 5 || st.Passed != 0 {
			t.Errorf("stats %+v; want 5 parts without a verdict, none passed", st)
		}
		want := `5 parts in the last minute had no verdict at their actuation time (gpio.reject_delay = 0s after the trigger; inspection is slower than that): late_policy "reject" rejected them physically whatever their verdict said`
		if p := hr.Problems(); len(p) != 1 || p[0] != want {
			t.Errorf("problems %q\nwant [%q]", p, want)
		}
		time.Sleep(61 * time.Second)
		if p := hr.Problems(); len(p) != 0 {
			t.Errorf("problems a minute after the last late part: %q", p)
		}
		r.close(t)
	})
}

// A late_policy "pass" station says the late parts went through.
func TestNoVerdictInTimeLatePass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_reject")
		cfg.RejectDelay = config.Dur(100 * time.Millisecond)
		cfg.LatePolicy = "pass"
		r := newRig(t, cfg, 200*time.Millisecond, 200*time.Millisecond)
		r.parts(1, 150*time.Millisecond)
		time.Sleep(time.Second) // the verdict is in
		want := `1 part in the last minute had no verdict at their actuation time (gpio.reject_delay = 100ms after the trigger; inspection is slower than that): late_policy "pass" let them through, NG and ERROR parts included`
		if p := r.a.Problems(); len(p) != 1 || p[0] != want {
			t.Errorf("problems %q\nwant [%q]", p, want)
		}
		r.close(t)
	})
}

// A result for a part that was never registered and is already past the
// actuator gets no actuation: its fate follows the polarity, which the
// event and the problem say.
func TestUnscheduledIsAProblem(t *testing.T) {
	for _, c := range []struct {
		polarity, event, problem string
	}{
		{"energise_to_pass",
			`result OK for part "free-0" arrived after the part passed the actuator; the part was rejected: energise_to_pass gave it no pass pulse`,
			`1 result in the last minute arrived after their part had passed the actuator (gpio.reject_delay = 800ms after the trigger): energise_to_pass gave them no pass pulse: they were rejected physically whatever their verdict said`},
		{"energise_to_reject",
			`result OK for part "free-0" arrived after the part passed the actuator; the part was let through: energise_to_reject gave it no reject pulse`,
			`1 result in the last minute arrived after their part had passed the actuator (gpio.reject_delay = 800ms after the trigger): energise_to_reject gave them no reject pulse: they were let through, NG and ERROR parts included`},
	} {
		t.Run(c.polarity, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig(c.polarity)
				cfg.PartPresentLine = ""
				evs := &eventLog{}
				a := started(t, cfg, NewSim(), eventHost{evs}, Options{})
				_ = a.Deliver(context.Background(), &inspection.Result{PartID: "free-0", TriggerTime: time.Now().Add(-time.Second), Verdict: inspection.OK})
				if ev := evs.kind(EventUnscheduled); len(ev) != 1 || ev[0].Message != c.event {
					t.Errorf("events %+v\nwant %q", ev, c.event)
				}
				if p := a.Problems(); len(p) != 1 || p[0] != c.problem {
					t.Errorf("problems %q\nwant [%q]", p, c.problem)
				}
			})
		})
	}
}

// Issue 24 #6: a FIFO overflow latches a fault that rejects every part;
// Problems says so (the daemon puts it in /healthz, the status page and
// every Result's Faults) until the operator's ClearFault, which reports
// gpio_fault_cleared once.
func TestLatchedFaultIsAProblemUntilCleared(t *testing.T) {
	for _, c := range []struct{ polarity, how string }{
		{"energise_to_pass", "energise_to_pass: no pass pulse"},
		{"energise_to_reject", "energise_to_reject: the actuator is held energised"},
	} {
		t.Run(c.polarity, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig(c.polarity)
				cfg.MaxPartsInFlight = 4
				r := newRig(t, cfg, 200*time.Millisecond, 300*time.Millisecond)
				r.ctl.verdict = func(string) inspection.Verdict { return inspection.OK }
				hr, fc := asHealth(t, r.a)
				r.parts(5, 150*time.Millisecond) // part 5 overflows
				reason := `FIFO overflow: more than 4 parts in flight (gpio.max_parts_in_flight), part "gpio-5" was not tracked`
				want := "GPIO fault latched (" + reason + "): every part is rejected physically whatever its verdict says (" + c.how +
					") — fix the cause, then clear it (status page button → POST /api/clear-fault, MQTT clear_fault, or SIGHUP)"
				time.Sleep(2 * time.Second)
				if p := hr.Problems(); len(p) != 1 || p[0] != want {
					t.Errorf("problems while faulted %q\nwant [%q]", p, want)
				}
				fc.ClearFault()
				if p := hr.Problems(); len(p) != 0 {
					t.Errorf("problems after ClearFault: %q", p)
				}
				fc.ClearFault() // nothing latched: no second event
				ev := r.evs.kind(EventFaultCleared)
				if len(ev) != 1 || ev[0].Message != "GPIO fault cleared; scheduling resumed (the fault was: "+reason+")" || ev[0].Fields["fault"] != reason {
					t.Errorf("cleared events %+v", ev)
				}
				r.close(t)
			})
		})
	}
}

// Halted outputs (an output write error) reject every part until a
// restart: a problem too; ClearFault does not release them.
func TestHaltIsAProblem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testConfig("energise_to_pass"), 200*time.Millisecond, 200*time.Millisecond)
		r.sim.FailOutput("ready", errors.New("EIO"))
		r.a.SetReady(false)
		r.a.ClearFault()
		want := `GPIO outputs halted in the safe state (output error: set "ready": EIO): every part is rejected physically whatever its verdict says (energise_to_pass: no pass pulse) until inspectd restarts`
		if p := r.a.Problems(); len(p) != 1 || p[0] != want {
			t.Errorf("problems %q\nwant [%q]", p, want)
		}
		if len(r.evs.kind(EventFaultCleared)) != 0 {
			t.Error("ClearFault reported clearing a halt")
		}
		r.close(t)
	})
}

// Problems is called for every result and every status request: it must
// not wait for the scheduler, an output write or the handshake.
func TestProblemsTakesNoLock(t *testing.T) {
	cfg := testConfig("energise_to_pass")
	cfg.OKLine, cfg.NGLine, cfg.StrobeLine = "ok", "ng", "strobe"
	a, err := New(cfg, NewSim(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.out.latchFault("test")
	a.sched.mu.Lock()
	a.out.mu.Lock()
	a.hs.mu.Lock()
	defer a.sched.mu.Unlock()
	defer a.out.mu.Unlock()
	defer a.hs.mu.Unlock()
	done := make(chan []string)
	go func() { done <- a.Problems() }()
	select {
	case p := <-done:
		if len(p) != 1 || !strings.HasPrefix(p[0], "GPIO fault latched (test)") {
			t.Errorf("problems %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Problems blocked on a lock held across output writes")
	}
}

// recentCount forgets what is older than a minute, across bucket reuse.
func TestRecentCount(t *testing.T) {
	var c recentCount
	t0 := time.Unix(1_000_000, 0)
	c.add(t0)
	c.add(t0.Add(500 * time.Millisecond))
	c.add(t0.Add(30 * time.Second))
	for _, x := range []struct {
		at   time.Duration
		want uint64
	}{{0, 2}, {59 * time.Second, 3}, {60 * time.Second, 1}, {89 * time.Second, 1}, {90 * time.Second, 0}} {
		if got := c.count(t0.Add(x.at)); got != x.want {
			t.Errorf("count at +%v = %d, want %d", x.at, got, x.want)
		}
	}
	c.add(t0.Add(120 * time.Second)) // reuses the first bucket
	if got := c.count(t0.Add(120 * time.Second)); got != 1 {
		t.Errorf("count after reuse = %d, want 1", got)
	}
}

// Problems runs for every result: a healthy actuator answers without
// allocating.
func TestProblemsHealthyAllocatesNothing(t *testing.T) {
	a, err := New(testConfig("energise_to_pass"), NewSim(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = a.Problems() }); n != 0 {
		t.Errorf("%v allocations per healthy Problems call", n)
	}
}

package gpio

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// fakeHost plays the daemon: each trigger is observed at once and its
// verdict delivered after an inference time drawn by infer; events go to
// evs.
type fakeHost struct {
	a       *Actuator
	evs     *eventLog
	infer   func(partID string) time.Duration
	verdict func(partID string) inspection.Verdict
	wg      sync.WaitGroup

	mu       sync.Mutex
	triggers map[string]time.Time
}

func (f *fakeHost) Trigger(partID, source string) error {
	at := time.Now()
	f.mu.Lock()
	f.triggers[partID] = at
	f.mu.Unlock()
	f.a.PartTriggered(partID, at)
	d := f.infer(partID)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		time.Sleep(d)
		r := &inspection.Result{PartID: partID, TriggerTime: at, Verdict: f.verdict(partID), Trigger: source}
		_ = f.a.Deliver(context.Background(), r)
	}()
	return nil
}

func (f *fakeHost) ReportEvent(e inspection.Event) { f.evs.add(e) }

// eventHost is a Host that only collects events.
type eventHost struct{ *eventLog }

func (eventHost) Trigger(string, string) error     { return nil }
func (h eventHost) ReportEvent(e inspection.Event) { h.add(e) }

// started returns a started Actuator on chip, closed at the end of the
// test.
func started(t *testing.T, cfg config.GPIO, chip Chip, host Host, o Options) *Actuator {
	t.Helper()
	a, err := New(cfg, chip, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// eventLog collects events.
type eventLog struct {
	mu     sync.Mutex
	events []inspection.Event
}

func (l *eventLog) add(e inspection.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}
func (l *eventLog) kind(k string) []inspection.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []inspection.Event
	for _, e := range l.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func testConfig(polarity string) config.GPIO {
	c := config.Default().GPIO
	c.Enabled = true
	c.Chip = "sim"
	c.RejectLine = "reject"
	c.PartPresentLine = "pp"
	c.ReadyLine = "ready"
	c.FaultLine = "fault"
	c.RejectPolarity = polarity
	c.RejectDelay = config.Dur(800 * time.Millisecond)
	c.RejectPulse = config.Dur(100 * time.Millisecond)
	return c
}

// verdictOf gives every third part NG and every seventh ERROR.
func verdictOf(n int) inspection.Verdict {
	switch {
	case n%7 == 0:
		return inspection.Error
	case n%3 == 0:
		return inspection.NG
	}
	return inspection.OK
}

func partNum(id string) int {
	n := 0
	for _, c := range id[len("gpio-"):] {
		n = n*10 + int(c-'0')
	}
	return n
}

type rig struct {
	sim  *Sim
	a    *Actuator
	ctl  *fakeHost
	evs  *eventLog
	rng  *rand.Rand
	edge map[string]time.Time // part ID → part-present edge time
}

func newRig(t *testing.T, cfg config.GPIO, inferMin, inferMax time.Duration) *rig {
	t.Helper()
	r := &rig{sim: NewSim(), evs: &eventLog{}, rng: rand.New(rand.NewPCG(1, 2)), edge: map[string]time.Time{}}
	r.ctl = &fakeHost{triggers: map[string]time.Time{}, evs: r.evs,
		infer: func(string) time.Duration {
			return inferMin + time.Duration(r.rng.Int64N(int64(inferMax-inferMin)/int64(time.Millisecond)+1))*time.Millisecond
		},
		verdict: func(id string) inspection.Verdict { return verdictOf(partNum(id)) },
	}
	a, err := New(cfg, r.sim, Options{Station: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	r.ctl.a = a
	r.a = a
	if err := a.Start(context.Background(), r.ctl); err != nil {
		t.Fatal(err)
	}
	a.SetReady(true)
	return r
}

// parts emits n part-present edges every spacing.
func (r *rig) parts(n int, spacing time.Duration) {
	for i := 1; i <= n; i++ {
		r.edge["gpio-"+itoa(i)] = time.Now()
		r.sim.Emit("pp", true)
		time.Sleep(spacing)
	}
}

func itoa(n int) string { return string(appendInt(nil, n)) }
func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// onChanges returns the reject line's rising changes per part.
func onChanges(sim *Sim) map[string][]Actuation {
	m := map[string][]Actuation{}
	for _, a := range sim.Actuations() {
		if a.Line == "reject" && a.Value {
			m[a.PartID] = append(m[a.PartID], a)
		}
	}
	return m
}

func (r *rig) close(t *testing.T) {
	r.ctl.wg.Wait()
	if err := r.a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Parts every 150 ms, inference 200–600 ms, delay 800 ms: each part's
// actuator fires exactly at trigger + delay for the parts the polarity
// energises for, and never for the others.
func TestTimeModeSchedule(t *testing.T) {
	for _, pol := range []string{"energise_to_reject", "energise_to_pass"} {
		t.Run(pol, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 300
				r := newRig(t, testConfig(pol), 200*time.Millisecond, 600*time.Millisecond)
				r.parts(n, 150*time.Millisecond)
				time.Sleep(2 * time.Second)
				r.close(t)
				on := onChanges(r.sim)
				for i := 1; i <= n; i++ {
					id := "gpio-" + itoa(i)
					energise := verdictOf(i).Rejects() == (pol == "energise_to_reject")
					got := on[id]
					if !energise {
						if len(got) != 0 {
							t.Errorf("%s (%s): actuator fired at %v; want never", id, verdictOf(i), got[0].Time)
						}
						continue
					}
					want := r.edge[id].Add(800 * time.Millisecond)
					if len(got) != 1 || !got[0].Time.Equal(want) || !got[0].Intended.Equal(want) {
						t.Errorf("%s (%s): fired %v; want once at trigger+800ms %v", id, verdictOf(i), got, want)
					}
				}
				st := r.a.Stats()
				if st.Registered != n || st.Passed+st.Rejected != n || st.LateVerdicts != 0 || st.NoVerdict != 0 {
					t.Errorf("stats %+v", st)
				}
			})
		})
	}
}

// Encoder mode with a conveyor whose speed varies: the actuation happens
// at the very encoder pulse trigger count + reject_counts.
func TestEncoderModeVaryingSpeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_reject")
		cfg.RejectMode = "encoder"
		cfg.EncoderLine = "enc"
		cfg.RejectCounts = 700
		r := newRig(t, cfg, 200*time.Millisecond, 600*time.Millisecond)
		start := time.Now()
		var encTimes []time.Time // encTimes[c-1] is pulse c
		trigCount := map[string]int{}
		const parts = 100
		nextPart, part := start.Add(300*time.Microsecond), 1
		nextEnc := start.Add(time.Millisecond)
		end := start.Add(parts*150*time.Millisecond + 3*time.Second)
		for nextEnc.Before(end) {
			if part <= parts && nextPart.Before(nextEnc) {
				time.Sleep(time.Until(nextPart))
				id := "gpio-" + itoa(part)
				trigCount[id] = len(encTimes)
				r.edge[id] = time.Now()
				r.sim.Emit("pp", true)
				part++
				nextPart = nextPart.Add(150 * time.Millisecond)
				continue
			}
			time.Sleep(time.Until(nextEnc))
			r.sim.Emit("enc", true)
			encTimes = append(encTimes, time.Now())
			// Period swings between 1 ms and 2 ms over a 4 s cycle.
			phase := float64(time.Since(start)%(4*time.Second)) / float64(4*time.Second)
			period := time.Millisecond + time.Duration(float64(time.Millisecond)*tri(phase)) + 37*time.Microsecond
			nextEnc = nextEnc.Add(period)
		}
		r.close(t)
		on := onChanges(r.sim)
		checked := 0
		for i := 1; i <= parts; i++ {
			id := "gpio-" + itoa(i)
			got := on[id]
			if !verdictOf(i).Rejects() {
				if len(got) != 0 {
					t.Errorf("%s OK part rejected at %v", id, got[0].Time)
				}
				continue
			}
			want := encTimes[trigCount[id]+700-1]
			if len(got) != 1 || !got[0].Time.Equal(want) {
				t.Errorf("%s: fired %v; want once at encoder pulse %d (%v)", id, got, trigCount[id]+700, want)
			}
			checked++
		}
		if checked < 40 {
			t.Fatalf("only %d NG parts checked", checked)
		}
		if st := r.a.Stats(); st.EncoderCount != uint64(len(encTimes)) || st.LateVerdicts != 0 {
			t.Errorf("stats %+v, want %d encoder pulses and no late verdicts", st, len(encTimes))
		}
	})
}

// tri is a triangle wave 0→1→0 over phase 0..1.
func tri(p float64) float64 {
	if p < 0.5 {
		return 2 * p
	}
	return 2 - 2*p
}

// Verdicts later than the actuation time follow late_policy, are counted
// and reported.
func TestLateVerdicts(t *testing.T) {
	for _, policy := range []string{"reject", "pass"} {
		t.Run(policy, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig("energise_to_reject")
				cfg.RejectDelay = config.Dur(400 * time.Millisecond)
				cfg.LatePolicy = policy
				r := newRig(t, cfg, 200*time.Millisecond, 600*time.Millisecond)
				infer := map[string]time.Duration{}
				base := r.ctl.infer
				r.ctl.infer = func(id string) time.Duration {
					d := base(id)
					if d == 400*time.Millisecond {
						d++ // no ties with the actuation instant
					}
					infer[id] = d
					return d
				}
				const n = 200
				r.parts(n, 150*time.Millisecond)
				time.Sleep(2 * time.Second)
				r.close(t)
				on := onChanges(r.sim)
				late, lateRejectsPassed := 0, 0
				for i := 1; i <= n; i++ {
					id := "gpio-" + itoa(i)
					isLate := infer[id] > 400*time.Millisecond
					rejected := verdictOf(i).Rejects()
					if isLate {
						late++
						rejected = policy == "reject"
						if policy == "pass" && verdictOf(i).Rejects() {
							lateRejectsPassed++
						}
					}
					if got := len(on[id]); (got == 1) != rejected || got > 1 {
						t.Errorf("%s (late=%v, %s): %d actuations", id, isLate, verdictOf(i), got)
					}
					if rejected && len(on[id]) == 1 && !on[id][0].Time.Equal(r.edge[id].Add(400*time.Millisecond)) {
						t.Errorf("%s fired at %v, want trigger+400ms", id, on[id][0].Time)
					}
				}
				if late < 50 {
					t.Fatalf("only %d late verdicts; the test needs more", late)
				}
				st := r.a.Stats()
				if int(st.LateVerdicts) != late || int(st.NoVerdict) != late {
					t.Errorf("late verdicts %d, no-verdict decisions %d; want %d", st.LateVerdicts, st.NoVerdict, late)
				}
				evs := r.evs.kind(inspection.EventLateReject)
				crit := 0
				for _, e := range evs {
					if e.Severity == inspection.Critical {
						crit++
					}
				}
				if len(evs) != late || crit != lateRejectsPassed {
					t.Errorf("%d late events (%d critical); want %d (%d)", len(evs), crit, late, lateRejectsPassed)
				}
			})
		})
	}
}

// More parts in flight than max_parts_in_flight: fault lamp, event,
// fail-safe state until ClearFault.
func TestFIFOOverflow(t *testing.T) {
	for _, pol := range []string{"energise_to_reject", "energise_to_pass"} {
		t.Run(pol, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig(pol)
				cfg.MaxPartsInFlight = 4
				r := newRig(t, cfg, 200*time.Millisecond, 300*time.Millisecond)
				r.ctl.verdict = func(string) inspection.Verdict { return inspection.OK }
				// 800 ms delay at 150 ms spacing holds 6 parts: part 5 overflows.
				r.parts(5, 150*time.Millisecond)
				if evs := r.evs.kind(EventFIFOOverflow); len(evs) != 1 || evs[0].Fields["part_id"] != "gpio-5" {
					t.Fatalf("overflow events %+v", evs)
				}
				safe := pol == "energise_to_reject"
				if !r.sim.Value("fault") || r.sim.Value("ready") || r.sim.Value("reject") != safe {
					t.Fatalf("fault=%v ready=%v reject=%v; want fault on, ready off, reject %v",
						r.sim.Value("fault"), r.sim.Value("ready"), r.sim.Value("reject"), safe)
				}
				// While faulted every part is rejected: no pass pulses, the
				// reject output stays in its safe level.
				time.Sleep(2 * time.Second)
				for _, a := range r.sim.Actuations() {
					if a.Line == "reject" && a.Reason == "pass" {
						t.Errorf("pass pulse while faulted: %+v", a)
					}
				}
				if r.sim.Value("reject") != safe || !r.a.Stats().Faulted {
					t.Fatal("fault did not latch")
				}
				r.a.ClearFault()
				if r.sim.Value("fault") || !r.sim.Value("ready") || r.sim.Value("reject") {
					t.Fatal("ClearFault did not restore the outputs")
				}
				mark := r.sim.Total()
				r.parts(3, 150*time.Millisecond)
				time.Sleep(2 * time.Second)
				r.close(t)
				passes := 0
				for _, a := range r.sim.Actuations() {
					if a.Seq > mark && a.Line == "reject" && a.Value && a.Reason == "pass" {
						passes++
					}
				}
				if want := map[bool]int{true: 0, false: 3}[safe]; passes != want {
					t.Errorf("%d pass pulses after ClearFault; want %d", passes, want)
				}
			})
		})
	}
}

// Close with parts in flight: every output goes to its safe state and no
// part is actuated afterwards.
func TestShutdownWithPartsInFlight(t *testing.T) {
	for _, pol := range []string{"energise_to_reject", "energise_to_pass"} {
		t.Run(pol, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig(pol)
				cfg.OKLine, cfg.NGLine, cfg.StrobeLine = "ok", "ng", "strobe"
				r := newRig(t, cfg, 200*time.Millisecond, 300*time.Millisecond)
				r.parts(6, 150*time.Millisecond)
				if r.a.Stats().InFlight == 0 {
					t.Fatal("no parts in flight")
				}
				r.ctl.wg.Wait()
				closed := time.Now()
				if err := r.a.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
				want := map[string]bool{"reject": pol == "energise_to_reject", "ready": false, "fault": true, "ok": false, "ng": false, "strobe": false}
				for line, v := range want {
					if got := r.sim.Value(line); got != v {
						t.Errorf("%s = %v after Close; want %v", line, got, v)
					}
				}
				for _, a := range r.sim.Actuations() {
					if a.Time.After(closed) {
						t.Errorf("output change after Close: %+v", a)
					}
				}
				if evs := r.evs.kind(EventHalted); len(evs) != 1 || evs[0].Fields["in_flight"] == "0" {
					t.Errorf("halt events %+v", evs)
				}
			})
		})
	}
}

// A failing output write halts everything in the safe state.
func TestOutputErrorHalts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testConfig("energise_to_reject"), 200*time.Millisecond, 200*time.Millisecond)
		r.sim.FailOutput("ready", errors.New("EIO"))
		r.a.SetReady(false)
		if !r.a.Stats().Halted || !r.sim.Value("fault") || !r.sim.Value("reject") {
			t.Fatalf("not halted in safe state: %+v", r.a.Stats())
		}
		if evs := r.evs.kind(EventOutputError); len(evs) == 0 || evs[0].Message != `GPIO output write failed: set "ready": EIO` {
			t.Errorf("events %+v", evs)
		}
		r.close(t)
	})
}

// Lost edges show up as events; the encoder count adds them back.
func TestLostEdges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_reject")
		cfg.RejectMode, cfg.EncoderLine, cfg.RejectCounts = "encoder", "enc", 10
		r := newRig(t, cfg, 200*time.Millisecond, 200*time.Millisecond)
		r.sim.Emit("enc", true)
		r.sim.Lose("enc", 5)
		r.sim.Emit("enc", true)
		time.Sleep(10 * time.Millisecond)
		r.sim.Emit("pp", true)
		r.sim.Lose("pp", 2)
		time.Sleep(10 * time.Millisecond)
		r.sim.Emit("pp", true)
		time.Sleep(time.Second)
		st := r.a.Stats()
		if st.EncoderCount != 7 || st.LostEdges != 7 {
			t.Errorf("count %d lost %d; want 7 and 7", st.EncoderCount, st.LostEdges)
		}
		evs := r.evs.kind(EventLostEdges)
		if len(evs) != 2 || evs[0].Message != `5 edges lost on line "enc" (kernel event buffer overflow)` || evs[1].Fields["lost"] != "2" {
			t.Errorf("events %+v", evs)
		}
		r.close(t)
	})
}

// Results of parts never registered are scheduled from their trigger
// time; one already past the actuator is reported, not actuated.
func TestUnregisteredParts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_reject")
		cfg.PartPresentLine = ""
		sim, evs := NewSim(), &eventLog{}
		a := started(t, cfg, sim, eventHost{evs}, Options{})
		t0 := time.Now()
		time.Sleep(300 * time.Millisecond)
		_ = a.Deliver(context.Background(), &inspection.Result{PartID: "free-1", TriggerTime: t0, Verdict: inspection.NG})
		_ = a.Deliver(context.Background(), &inspection.Result{PartID: "free-0", TriggerTime: t0.Add(-time.Second), Verdict: inspection.NG})
		time.Sleep(time.Second)
		on := onChanges(sim)
		if len(on["free-1"]) != 1 || !on["free-1"][0].Time.Equal(t0.Add(800*time.Millisecond)) {
			t.Errorf("free-1 actuations %+v", on["free-1"])
		}
		if len(on["free-0"]) != 0 || len(evs.kind(EventUnscheduled)) != 1 {
			t.Errorf("free-0: %+v, events %+v", on["free-0"], evs.kind(EventUnscheduled))
		}
		_ = a.Close(context.Background())
	})
}

// The OK/NG lines are set with a strobe pulse per verdict, in order.
func TestHandshakeLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig("energise_to_pass")
		cfg.OKLine, cfg.NGLine, cfg.StrobeLine = "ok", "ng", "strobe"
		cfg.PartPresentLine = ""
		sim := NewSim()
		a := started(t, cfg, sim, eventHost{&eventLog{}}, Options{})
		for i, v := range []inspection.Verdict{inspection.OK, inspection.NG, inspection.Error} {
			_ = a.Deliver(context.Background(), &inspection.Result{PartID: "p" + itoa(i), TriggerTime: time.Now(), Verdict: v})
		}
		time.Sleep(time.Second)
		var seq []string
		for _, x := range sim.Actuations() {
			if x.Line != "reject" && x.Value {
				seq = append(seq, x.Line+":"+x.PartID+"@"+x.Time.Sub(sim.start).String())
			}
		}
		want := []string{"ok:p0@0s", "strobe:p0@0s", "ng:p1@40ms", "strobe:p1@40ms", "ng:p2@80ms", "strobe:p2@80ms"}
		if len(seq) != len(want) {
			t.Fatalf("handshake %v; want %v", seq, want)
		}
		for i := range want {
			if seq[i] != want[i] {
				t.Errorf("handshake %v; want %v", seq, want)
				break
			}
		}
		_ = a.Close(context.Background())
	})
}

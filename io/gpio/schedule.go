package gpio

import (
	"container/heap"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// schedule owns the parts between trigger and actuation: the in-flight
// set and its heap ordered by due time (time mode) or due encoder count,
// the record of recently actuated parts (for late verdicts) and the
// counters of their fates. mu guards the set, the heap and the record; it
// is held while a due part is actuated (then outputs.mu is taken), so a
// verdict is either in time for its part or late, never lost between the
// two. The counters are atomic so that Stats and Collect take no lock.
type schedule struct {
	set    settings
	ev     *hostRef
	signal func()
	in     *inputs
	out    *outputs

	mu        sync.Mutex
	parts     map[string]*part
	queue     partHeap
	done      map[string]doneInfo
	doneOrder []string
	seq       uint64

	inFlightN    atomic.Int64
	registered   atomic.Uint64
	passed       atomic.Uint64
	rejected     atomic.Uint64
	noVerdict    atomic.Uint64
	lateVerdicts atomic.Uint64
	overflows    atomic.Uint64

	// Parts over the last minute that the actuator could not decide by
	// their verdict, for Problems: no verdict at the actuation time
	// (late_policy decided), and results that arrived after their
	// unregistered part had passed the actuator (no actuation at all).
	recentNoVerdict   recentCount
	recentUnscheduled recentCount
}

type part struct {
	id       string
	seq      uint64
	trigger  time.Time
	due      time.Time // time mode
	dueCount uint64    // encoder mode
	verdict  inspection.Verdict
}

type doneInfo struct {
	due       time.Time
	rejected  bool
	untracked bool // refused by a full FIFO
}

func newSchedule(set settings, ev *hostRef, signal func(), in *inputs) *schedule {
	return &schedule{set: set, ev: ev, signal: signal, in: in, parts: map[string]*part{}, done: map[string]doneInfo{}}
}

// inFlight returns the number of parts in flight without locking.
func (s *schedule) inFlight() int { return int(s.inFlightN.Load()) }

// stats returns the schedule's counters.
func (s *schedule) stats() Stats {
	return Stats{
		InFlight:     s.inFlight(),
		Registered:   s.registered.Load(),
		Passed:       s.passed.Load(),
		Rejected:     s.rejected.Load(),
		NoVerdict:    s.noVerdict.Load(),
		LateVerdicts: s.lateVerdicts.Load(),
		Overflows:    s.overflows.Load(),
	}
}

func (s *schedule) newPart(id string, at time.Time, count uint64) *part {
	s.seq++
	return &part{id: id, seq: s.seq, trigger: at, due: at.Add(s.set.delay), dueCount: count + s.set.counts}
}

// register adds a part triggered at (encoder count count) unless it is
// known or the outputs are halted.
func (s *schedule) register(id string, at time.Time, count uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out.halted.Load() {
		return
	}
	if _, ok := s.parts[id]; ok {
		return
	}
	if _, ok := s.done[id]; ok {
		return
	}
	s.add(s.newPart(id, at, count))
}

// add queues p, or latches the overflow fault when the FIFO is full.
func (s *schedule) add(p *part) {
	if len(s.parts) >= s.set.maxInFlight {
		s.overflows.Add(1)
		s.ev.emit(inspection.Critical, EventFIFOOverflow,
			fmt.Sprintf("more than %d parts in flight; part %q is not tracked; every part is rejected until the fault is cleared", s.set.maxInFlight, p.id),
			map[string]string{"part_id": p.id, "max_parts_in_flight": strconv.Itoa(s.set.maxInFlight)})
		s.out.latchFault(fmt.Sprintf("FIFO overflow: more than %d parts in flight (gpio.max_parts_in_flight), part %q was not tracked", s.set.maxInFlight, p.id))
		s.remember(p.id, doneInfo{due: p.due, rejected: true, untracked: true})
		return
	}
	s.parts[p.id] = p
	s.inFlightN.Store(int64(len(s.parts)))
	heap.Push(&s.queue, queued{p, s.set.encoder})
	s.registered.Add(1)
	s.signal()
}

// deliver records r's verdict for its part; a part never registered is
// scheduled from r.TriggerTime.
func (s *schedule) deliver(r *inspection.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.parts[r.PartID]; ok && r.PartID != "" {
		if p.verdict == "" {
			p.verdict = r.Verdict
		}
		s.signal()
		return
	}
	if d, ok := s.done[r.PartID]; ok && r.PartID != "" {
		if d.untracked {
			return // refused by the full FIFO: rejected by the fault hold
		}
		s.lateVerdicts.Add(1)
		s.late(r, d)
		return
	}
	// Not registered: schedule from the result's trigger time.
	now := time.Now()
	trigger := r.TriggerTime
	if trigger.IsZero() {
		trigger = now
	}
	p := s.newPart(r.PartID, trigger, s.in.countAt(trigger))
	if (!s.set.encoder && !p.due.After(now)) || (s.set.encoder && p.dueCount <= s.in.count.Load()) {
		s.lateVerdicts.Add(1)
		s.recentUnscheduled.add(now)
		fate := "rejected: energise_to_pass gave it no pass pulse"
		if !s.set.toPass {
			fate = "let through: energise_to_reject gave it no reject pulse"
		}
		s.ev.emit(inspection.Warning, EventUnscheduled, fmt.Sprintf("result %s for part %q arrived after the part passed the actuator; the part was %s", r.Verdict, r.PartID, fate),
			map[string]string{"part_id": r.PartID, "verdict": string(r.Verdict)})
		return
	}
	p.verdict = r.Verdict
	s.add(p)
}

// late reports a verdict that arrived after its part's due time.
func (s *schedule) late(r *inspection.Result, d doneInfo) {
	action := "passed"
	if d.rejected {
		action = "rejected"
	}
	sev := inspection.Warning
	msg := fmt.Sprintf("verdict %s for part %q arrived %s after its actuation time; the part was %s (late_policy)",
		r.Verdict, r.PartID, time.Since(d.due).Round(time.Millisecond), action)
	if r.Verdict.Rejects() && !d.rejected {
		sev = inspection.Critical
		msg += "; a rejected part went through"
	}
	s.ev.emit(sev, inspection.EventLateReject, msg, map[string]string{
		"part_id": r.PartID, "verdict": string(r.Verdict), "action": action,
		"late_by_ms": strconv.FormatInt(time.Since(d.due).Milliseconds(), 10),
	})
}

func (s *schedule) remember(id string, d doneInfo) {
	keep := max(4*s.set.maxInFlight, 256)
	s.done[id] = d
	s.doneOrder = append(s.doneOrder, id)
	if len(s.doneOrder) > keep {
		delete(s.done, s.doneOrder[0])
		s.doneOrder = s.doneOrder[1:]
	}
}

// fireDue actuates every part due at now (time mode) or at the current
// encoder count, in due order, and returns the due time of the next part
// (time mode; zero when none or in encoder mode).
func (s *schedule) fireDue(now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	count := s.in.count.Load()
	for s.queue.Len() > 0 && !s.out.halted.Load() {
		p := s.queue.items[0].p
		var intended time.Time
		if s.set.encoder {
			if p.dueCount > count {
				break
			}
			intended = s.in.encTime(p.dueCount)
		} else {
			if p.due.After(now) {
				break
			}
			intended = p.due
		}
		heap.Pop(&s.queue)
		s.actuate(p, now, intended)
	}
	if s.set.encoder || s.queue.Len() == 0 {
		return time.Time{}
	}
	return s.queue.items[0].p.due
}

// actuate decides p's fate at its due time and has outputs drive the
// actuator: OK passes, NG and ERROR reject, no verdict follows
// late_policy, a latched fault rejects.
func (s *schedule) actuate(p *part, now, intended time.Time) {
	delete(s.parts, p.id)
	s.inFlightN.Store(int64(len(s.parts)))
	reject, noVerdict := true, false
	if p.verdict != "" {
		reject = p.verdict.Rejects()
	} else {
		noVerdict = true
		reject = !s.set.latePass
	}
	rejected, held := s.out.actuate(p.id, reject, now, intended)
	if noVerdict && !held {
		s.noVerdict.Add(1)
		s.recentNoVerdict.add(now)
	}
	s.remember(p.id, doneInfo{due: intended, rejected: rejected})
	if rejected {
		s.rejected.Add(1)
	} else {
		s.passed.Add(1)
	}
}

// pendingBefore reports whether a part is due before t (time mode).
func (s *schedule) pendingBefore(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.set.encoder && s.queue.Len() > 0 && s.queue.items[0].p.due.Before(t)
}

// queued orders parts by due time (time mode) or due count (encoder).
type queued struct {
	p       *part
	encoder bool
}

type partHeap struct{ items []queued }

func (h *partHeap) Len() int { return len(h.items) }
func (h *partHeap) Less(i, j int) bool {
	a, b := h.items[i].p, h.items[j].p
	if h.items[i].encoder {
		if a.dueCount != b.dueCount {
			return a.dueCount < b.dueCount
		}
	} else if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	return a.seq < b.seq
}
func (h *partHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *partHeap) Push(x any)    { h.items = append(h.items, x.(queued)) }
func (h *partHeap) Pop() any {
	n := len(h.items) - 1
	x := h.items[n]
	h.items = h.items[:n]
	return x
}

// drain is Close's request to be told when nothing is due before until.
type drain struct {
	until time.Time
	done  chan struct{}
	once  sync.Once
}

// finishScheduled lets the parts due before ctx's deadline (less
// closeMargin) actuate: it waits until the scheduler reports that none is
// left, or until that time. No deadline or encoder mode: no wait.
func (a *Actuator) finishScheduled(ctx context.Context) {
	deadline, ok := ctx.Deadline()
	if !ok || a.set.encoder {
		return
	}
	until := deadline.Add(-closeMargin)
	wctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	d := &drain{until: until, done: make(chan struct{})}
	a.drain.Store(d)
	defer a.drain.Store(nil)
	a.signal()
	select {
	case <-d.done:
	case <-wctx.Done():
	}
}

// checkDrain tells a waiting Close when nothing is due before its time:
// no part in flight due before then and no pulse ending before then.
// Only the scheduler goroutine calls it, after each step.
func (a *Actuator) checkDrain() {
	d := a.drain.Load()
	if d == nil {
		return
	}
	if !a.out.halted.Load() {
		if a.sched.pendingBefore(d.until) {
			return
		}
		if end := a.out.pulseEnd(); !end.IsZero() && end.Before(d.until) {
			return
		}
	}
	d.once.Do(func() { close(d.done) })
}

// run is the scheduler goroutine: it alone decides when to step, so the
// actuation timing has one owner.
func (a *Actuator) run() {
	defer close(a.schedDone)
	if a.opt.Realtime {
		if err := enterRealtime(); err != nil {
			a.log.Warn("reject scheduler at normal priority; actuations may land milliseconds late while the engine is busy", "err", err)
		} else {
			a.log.Info("reject scheduler at realtime priority", "policy", "SCHED_FIFO", "fine_window", FineWindow)
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := a.step(time.Now())
		a.checkDrain()
		if a.opt.Realtime && !next.IsZero() && time.Until(next) <= FineWindow {
			// Close to the deadline: sleep in the kernel on this thread,
			// then step again. Nothing can become due earlier within a
			// few milliseconds: parts are scheduled a delay after their
			// trigger.
			sleepUntil(next)
			continue
		}
		if next.IsZero() {
			timer.Stop()
		} else {
			d := time.Until(next)
			if a.opt.Realtime {
				d -= FineWindow
			}
			timer.Reset(d)
		}
		select {
		case <-a.wake:
		case <-timer.C:
		case <-a.stop:
			return
		}
	}
}

// step ends a finished pulse, fires everything due at now, steps the
// handshake and returns the next deadline (zero: none; encoder progress
// and new parts arrive through wake).
func (a *Actuator) step(now time.Time) time.Time {
	if a.out.halted.Load() {
		return time.Time{}
	}
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	a.out.endPulse(now)
	earliest(a.sched.fireDue(now))
	if a.hs != nil {
		earliest(a.hs.step(now))
	}
	earliest(a.out.pulseEnd())
	return next
}

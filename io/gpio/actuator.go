package gpio

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// Event kinds reported by this package besides inspection.EventLateReject.
const (
	EventLostEdges     = "gpio_lost_edges"     // the kernel or the hand-off dropped input edges
	EventFIFOOverflow  = "gpio_fifo_overflow"  // more parts in flight than max_parts_in_flight
	EventFaultCleared  = "gpio_fault_cleared"  // ClearFault released the latched fault
	EventHalted        = "gpio_halted"         // Halt, Close or an output error: outputs in safe state
	EventOutputError   = "gpio_output_error"   // an output write failed
	EventUnscheduled   = "gpio_unscheduled"    // a result for a part already past the actuator
	EventHandshakeDrop = "gpio_handshake_drop" // the OK/NG handshake queue was full
)

// Options are the collaborators of an Actuator.
type Options struct {
	// Logger receives the package's logs (component=gpio is added).
	Logger *slog.Logger
	// Events receives operator events; it must not block. Nil drops them.
	Events func(inspection.Event)
	// Control receives one Trigger per part-present edge (see also
	// SetControl).
	Control inspection.Control
	// Station fills Event.Station.
	Station string
	// PartIDPrefix starts the part IDs of part-present edges ("gpio-"
	// when empty); a counter from 1 follows.
	PartIDPrefix string
	// Realtime runs the scheduler on its own OS thread at SCHED_FIFO
	// priority and sleeps the last FineWindow before each actuation in the
	// kernel, for sub-millisecond timing while the engine keeps the cores
	// busy (inspectd run sets it). Off, the scheduler uses Go timers only,
	// which testing/synctest's fake clock can drive.
	Realtime bool
}

// FineWindow is how long before an actuation a Realtime scheduler stops
// waiting on Go timers and sleeps in the kernel instead.
const FineWindow = 4 * time.Millisecond

// Stats are the Actuator's counters.
type Stats struct {
	InFlight      int    `json:"in_flight"`      // parts registered, not yet at the actuator
	Registered    uint64 `json:"registered"`     // parts registered
	Passed        uint64 `json:"passed"`         // parts let through
	Rejected      uint64 `json:"rejected"`       // parts rejected at their due time
	NoVerdict     uint64 `json:"no_verdict"`     // parts without a verdict at their due time (late_policy applied)
	LateVerdicts  uint64 `json:"late_verdicts"`  // verdicts that arrived after their part's due time
	Overflows     uint64 `json:"overflows"`      // parts refused because the FIFO was full
	LostEdges     uint64 `json:"lost_edges"`     // input edges lost
	EncoderCount  uint64 `json:"encoder_count"`  // encoder pulses counted (lost ones included)
	HandshakeDrop uint64 `json:"handshake_drop"` // verdicts not handed to the OK/NG lines
	Faulted       bool   `json:"faulted"`        // a fault is latched (ClearFault)
	Halted        bool   `json:"halted"`         // Halt or Close was called or an output failed
}

// settings are the parsed gpio configuration.
type settings struct {
	toPass      bool // energise_to_pass
	encoder     bool // reject_mode = "encoder"
	delay       time.Duration
	counts      uint64
	pulse       time.Duration
	latePass    bool // late_policy = "pass"
	maxInFlight int
	strobePulse time.Duration
}

type part struct {
	id       string
	seq      uint64
	trigger  time.Time
	due      time.Time // time mode
	dueCount uint64    // encoder mode
	verdict  inspection.Verdict
	index    int
}

type doneInfo struct {
	due       time.Time
	rejected  bool
	untracked bool // refused by a full FIFO
}

type handshake struct {
	partID string
	ok     bool
}

const encRing = 4096 // encoder edge times kept for intended times and countAt

// Actuator schedules the reject actuator and drives the lamps and the
// handshake lines. It implements inspection.Sink ("gpio") and
// inspection.TriggerObserver. Create it with New.
type Actuator struct {
	set    settings
	chip   Chip
	log    *slog.Logger
	events func(inspection.Event)
	opt    Options
	start  time.Time

	reject, ready, fault, okOut, ngOut, strobe Output
	inputs                                     []Input

	control atomic.Pointer[inspection.Control]
	partN   atomic.Uint64
	count   atomic.Uint64 // encoder pulses; written only by the encoder handler
	encNs   [encRing]atomic.Int64
	lastSeq sync.Map // line → *atomic.Uint32, last LineSeq seen
	lost    atomic.Uint64
	trigCh  chan trig

	mu          sync.Mutex
	parts       map[string]*part
	queue       partHeap
	done        map[string]doneInfo
	doneOrder   []string
	rejectOn    bool
	pulseUntil  time.Time
	pulsePart   string
	hsQueue     []handshake
	hsActive    bool
	hsUntil     time.Time
	hsNext      time.Time
	readyWanted bool
	faulted     bool
	halted      bool
	stats       Stats
	seq         uint64

	wake     chan struct{}
	stop     chan struct{}
	finished chan struct{}
	closeMu  sync.Once
}

type trig struct {
	id    string
	at    time.Time
	count uint64
}

// New requests the configured lines of chip, puts the outputs at rest
// (ready and fault lamps off, actuator de-energised) and starts the
// scheduler. On error every line already requested is released.
func New(cfg config.GPIO, chip Chip, o Options) (*Actuator, error) {
	bias, err := ParseBias(cfg.Bias)
	if err != nil {
		return nil, err
	}
	drive, err := ParseDrive(cfg.Drive)
	if err != nil {
		return nil, err
	}
	if cfg.RejectLine == "" {
		return nil, errors.New("gpio.reject_line: must not be empty")
	}
	if cfg.RejectMode == "encoder" && (cfg.EncoderLine == "" || cfg.RejectCounts < 1) {
		return nil, errors.New(`gpio.reject_mode "encoder" needs gpio.encoder_line and gpio.reject_counts ≥ 1`)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Actuator{
		set: settings{
			toPass:      cfg.RejectPolarity != "energise_to_reject",
			encoder:     cfg.RejectMode == "encoder",
			delay:       cfg.RejectDelay.D,
			counts:      uint64(max(cfg.RejectCounts, 0)),
			pulse:       cfg.RejectPulse.D,
			latePass:    cfg.LatePolicy == "pass",
			maxInFlight: max(cfg.MaxPartsInFlight, 1),
			strobePulse: cfg.StrobePulse.D,
		},
		chip:     chip,
		log:      log.With("component", "gpio"),
		events:   o.Events,
		opt:      o,
		start:    time.Now(),
		parts:    map[string]*part{},
		done:     map[string]doneInfo{},
		trigCh:   make(chan trig, max(cfg.EventBuffer, 16)),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	if a.set.pulse <= 0 {
		a.set.pulse = 100 * time.Millisecond
	}
	if a.set.strobePulse <= 0 {
		a.set.strobePulse = 20 * time.Millisecond
	}
	if a.opt.PartIDPrefix == "" {
		a.opt.PartIDPrefix = "gpio-"
	}
	if o.Control != nil {
		a.SetControl(o.Control)
	}
	oo := OutputOptions{ActiveLow: cfg.ActiveLow, Drive: drive}
	for _, out := range []struct {
		line string
		dst  *Output
	}{
		{cfg.RejectLine, &a.reject}, {cfg.ReadyLine, &a.ready}, {cfg.FaultLine, &a.fault},
		{cfg.OKLine, &a.okOut}, {cfg.NGLine, &a.ngOut}, {cfg.StrobeLine, &a.strobe},
	} {
		if out.line == "" {
			continue
		}
		l, err := chip.Output(out.line, oo)
		if err != nil {
			a.release()
			return nil, fmt.Errorf("gpio: %w", err)
		}
		*out.dst = l
	}
	io := InputOptions{ActiveLow: cfg.ActiveLow, Bias: bias, EventBuffer: cfg.EventBuffer}
	if cfg.EncoderLine != "" {
		in, err := chip.Input(cfg.EncoderLine, InputOptions{ActiveLow: io.ActiveLow, Bias: io.Bias, EventBuffer: io.EventBuffer, Edges: EdgeRising}, a.onEncoder)
		if err != nil {
			a.release()
			return nil, fmt.Errorf("gpio: %w", err)
		}
		a.inputs = append(a.inputs, in)
	}
	if cfg.PartPresentLine != "" {
		edges := EdgeRising
		if cfg.PartPresentEdge == "falling" {
			edges = EdgeFalling
		}
		in, err := chip.Input(cfg.PartPresentLine, InputOptions{ActiveLow: io.ActiveLow, Bias: io.Bias, EventBuffer: io.EventBuffer, Edges: edges, Debounce: cfg.Debounce.D}, a.onPartPresent)
		if err != nil {
			a.release()
			return nil, fmt.Errorf("gpio: %w", err)
		}
		a.inputs = append(a.inputs, in)
	}
	go a.run()
	go a.triggers()
	return a, nil
}

// release closes every requested line.
func (a *Actuator) release() {
	for _, in := range a.inputs {
		_ = in.Close()
	}
	for _, o := range []Output{a.reject, a.ready, a.fault, a.okOut, a.ngOut, a.strobe} {
		if o != nil {
			_ = o.Close()
		}
	}
}

// SetControl sets where part-present triggers go. Edges that arrive
// while no Control is set still register their part (which then gets no
// verdict and follows late_policy).
func (a *Actuator) SetControl(c inspection.Control) { a.control.Store(&c) }

// Name returns "gpio".
func (a *Actuator) Name() string { return "gpio" }

// PartTriggered registers a part at its trigger time (TriggerObserver).
// A part already registered by the part-present input keeps that
// registration. It never blocks for long (one short lock).
func (a *Actuator) PartTriggered(partID string, at time.Time) {
	if partID == "" {
		return
	}
	a.register(partID, at, a.countAt(at), "")
}

// Deliver records the verdict of r's part (Sink). Parts that were never
// registered are scheduled from r.TriggerTime. It never blocks for long.
func (a *Actuator) Deliver(_ context.Context, r *inspection.Result) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.halted {
		return nil
	}
	a.enqueueHandshake(r)
	if p, ok := a.parts[r.PartID]; ok && r.PartID != "" {
		if p.verdict == "" {
			p.verdict = r.Verdict
		}
		a.signal()
		return nil
	}
	if d, ok := a.done[r.PartID]; ok && r.PartID != "" {
		if d.untracked {
			return nil // refused by the full FIFO: rejected by the fault hold
		}
		a.stats.LateVerdicts++
		a.late(r, d)
		return nil
	}
	// Not registered: schedule from the result's trigger time.
	now := time.Now()
	trigger := r.TriggerTime
	if trigger.IsZero() {
		trigger = now
	}
	p := a.newPart(r.PartID, trigger, a.countAt(trigger))
	if (!a.set.encoder && !p.due.After(now)) || (a.set.encoder && p.dueCount <= a.count.Load()) {
		a.stats.LateVerdicts++
		a.emit(inspection.Warning, EventUnscheduled, fmt.Sprintf("result for part %q arrived after the part passed the actuator; no actuation", r.PartID),
			map[string]string{"part_id": r.PartID, "verdict": string(r.Verdict)})
		return nil
	}
	p.verdict = r.Verdict
	a.add(p)
	return nil
}

// late reports a verdict that arrived after its part's due time.
func (a *Actuator) late(r *inspection.Result, d doneInfo) {
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
	a.emit(sev, inspection.EventLateReject, msg, map[string]string{
		"part_id": r.PartID, "verdict": string(r.Verdict), "action": action,
		"late_by_ms": strconv.FormatInt(time.Since(d.due).Milliseconds(), 10),
	})
}

func (a *Actuator) newPart(id string, at time.Time, count uint64) *part {
	a.seq++
	return &part{id: id, seq: a.seq, trigger: at, due: at.Add(a.set.delay), dueCount: count + a.set.counts}
}

// register adds a part unless it is known; origin "" is PartTriggered.
func (a *Actuator) register(id string, at time.Time, count uint64, _ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.halted {
		return
	}
	if _, ok := a.parts[id]; ok {
		return
	}
	if _, ok := a.done[id]; ok {
		return
	}
	a.add(a.newPart(id, at, count))
}

// add queues p, or latches the overflow fault when the FIFO is full.
func (a *Actuator) add(p *part) {
	if len(a.parts) >= a.set.maxInFlight {
		a.stats.Overflows++
		a.emit(inspection.Critical, EventFIFOOverflow,
			fmt.Sprintf("more than %d parts in flight; part %q is not tracked; every part is rejected until the fault is cleared", a.set.maxInFlight, p.id),
			map[string]string{"part_id": p.id, "max_parts_in_flight": strconv.Itoa(a.set.maxInFlight)})
		a.latchFault()
		a.remember(p.id, doneInfo{due: p.due, rejected: true, untracked: true})
		return
	}
	a.parts[p.id] = p
	heap.Push(&a.queue, queued{p, a.set.encoder})
	a.stats.Registered++
	a.signal()
}

func (a *Actuator) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// SetReady turns the ready lamp on (inspecting) or off (paused,
// stopping). It stays off while a fault is latched or after Halt.
func (a *Actuator) SetReady(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.readyWanted = on
	if a.halted {
		return
	}
	a.write(a.ready, on && !a.faulted, Tag{Reason: "ready"})
}

// ClearFault releases a latched FIFO overflow: the actuator returns to
// rest and scheduling resumes for the parts still tracked. Parts refused
// during the fault are not tracked: with energise_to_reject they would
// pass, so clear the fault once they have left the conveyor.
func (a *Actuator) ClearFault() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.faulted || a.halted {
		return
	}
	a.faulted = false
	a.stats.Faulted = false
	a.setReject(false, Tag{Reason: "fault_cleared"})
	a.write(a.fault, false, Tag{Reason: "fault"})
	a.write(a.ready, a.readyWanted, Tag{Reason: "ready"})
	a.emit(inspection.Info, EventFaultCleared, "GPIO fault cleared; scheduling resumed", nil)
	a.signal()
}

// Halt puts every output in its safe state and stops actuating, for
// good: parts in flight are rejected. Use it on fatal errors. Safe to call
// more than once.
func (a *Actuator) Halt(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.haltLocked(reason)
}

func (a *Actuator) haltLocked(reason string) {
	if a.halted {
		return
	}
	a.halted = true
	a.stats.Halted = true
	a.safeState()
	inFlight := len(a.parts)
	a.emit(inspection.Critical, EventHalted, fmt.Sprintf("GPIO outputs halted in the safe state (%s); %d parts in flight are rejected", reason, inFlight),
		map[string]string{"reason": reason, "in_flight": strconv.Itoa(inFlight)})
	a.log.Warn("outputs halted in safe state", "reason", reason, "in_flight", inFlight)
	a.signal()
}

// latchFault enters the fail-safe state until ClearFault.
func (a *Actuator) latchFault() {
	if a.faulted {
		return
	}
	a.faulted = true
	a.stats.Faulted = true
	a.safeState()
}

// safeState: actuator rejecting, ready off, fault on, handshake lines off.
func (a *Actuator) safeState() {
	tag := Tag{Reason: "safe"}
	a.pulseUntil = time.Time{}
	a.setReject(!a.set.toPass, tag)
	a.write(a.ready, false, tag)
	a.write(a.fault, true, tag)
	a.write(a.okOut, false, tag)
	a.write(a.ngOut, false, tag)
	a.write(a.strobe, false, tag)
	a.hsActive = false
	a.hsQueue = a.hsQueue[:0]
}

// Close halts the outputs in their safe state, stops the scheduler and
// the inputs within ctx and releases the lines (the kernel then reverts
// them to their defaults, as on process exit). When ctx has a deadline,
// the parts already scheduled to actuate before it are let through first
// (a drained shutdown still rejects or passes its last parts at their
// stations); later ones are rejected by the safe state.
func (a *Actuator) Close(ctx context.Context) error {
	a.finishScheduled(ctx)
	a.Halt("shutdown")
	var err error
	a.closeMu.Do(func() {
		close(a.stop)
		select {
		case <-a.finished:
		case <-ctx.Done():
			err = fmt.Errorf("gpio: close: %w", ctx.Err())
		}
		a.release()
	})
	return err
}

// finishScheduled waits, until shortly before ctx's deadline, while a part
// or a pulse is due before that deadline.
func (a *Actuator) finishScheduled(ctx context.Context) {
	deadline, ok := ctx.Deadline()
	if !ok || a.set.encoder {
		return
	}
	deadline = deadline.Add(-100 * time.Millisecond) // leave time to halt and release
	for {
		a.mu.Lock()
		pending := !a.halted && ((a.queue.Len() > 0 && a.queue.items[0].p.due.Before(deadline)) ||
			(!a.pulseUntil.IsZero() && a.pulseUntil.Before(deadline)))
		a.mu.Unlock()
		if !pending || !time.Now().Before(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Stats returns a snapshot of the counters.
func (a *Actuator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.InFlight = len(a.parts)
	s.LostEdges = a.lost.Load()
	s.EncoderCount = a.count.Load()
	return s
}

// write sets an optional output; a failure halts the outputs.
func (a *Actuator) write(o Output, v bool, t Tag) {
	if o == nil {
		return
	}
	var err error
	if to, ok := o.(TaggedOutput); ok {
		err = to.SetTagged(v, t)
	} else {
		err = o.Set(v)
	}
	if err != nil {
		a.outputFailed(err)
	}
}

func (a *Actuator) outputFailed(err error) {
	a.emit(inspection.Critical, EventOutputError, "GPIO output write failed: "+err.Error(), nil)
	a.log.Error("output write failed", "err", err)
	if !a.halted {
		a.haltLocked("output error: " + err.Error())
	}
}

func (a *Actuator) setReject(v bool, t Tag) {
	if a.rejectOn == v && t.Reason != "safe" {
		return
	}
	a.rejectOn = v
	a.write(a.reject, v, t)
}

func (a *Actuator) emit(sev inspection.Severity, kind, msg string, fields map[string]string) {
	if a.events == nil {
		return
	}
	a.events(inspection.Event{Time: time.Now(), Station: a.opt.Station, Severity: sev, Kind: kind, Message: msg, Fields: fields})
}

// run is the scheduler goroutine.
func (a *Actuator) run() {
	defer close(a.finished)
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
		a.mu.Lock()
		next := a.step(time.Now())
		a.mu.Unlock()
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

// step fires everything due at now and returns the next deadline (zero:
// none; encoder progress arrives through wake).
func (a *Actuator) step(now time.Time) time.Time {
	if a.halted {
		return time.Time{}
	}
	if !a.pulseUntil.IsZero() && !now.Before(a.pulseUntil) {
		if !a.faulted {
			a.setReject(false, Tag{PartID: a.pulsePart, Intended: a.pulseUntil, Reason: "release"})
		}
		a.pulseUntil = time.Time{}
	}
	count := a.count.Load()
	for a.queue.Len() > 0 && !a.halted {
		p := a.queue.items[0].p
		var intended time.Time
		if a.set.encoder {
			if p.dueCount > count {
				break
			}
			intended = a.encTime(p.dueCount)
		} else {
			if p.due.After(now) {
				break
			}
			intended = p.due
		}
		heap.Pop(&a.queue)
		a.actuate(p, now, intended)
	}
	a.stepHandshake(now)
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earliest(a.pulseUntil)
	if !a.set.encoder && a.queue.Len() > 0 {
		earliest(a.queue.items[0].p.due)
	}
	if a.hsActive {
		earliest(a.hsUntil)
	} else if len(a.hsQueue) > 0 {
		earliest(a.hsNext)
	}
	return next
}

// actuate decides p's fate at its due time and drives the actuator.
func (a *Actuator) actuate(p *part, now, intended time.Time) {
	delete(a.parts, p.id)
	reject := true
	switch {
	case a.faulted:
	case p.verdict != "":
		reject = p.verdict.Rejects()
	default:
		a.stats.NoVerdict++
		reject = !a.set.latePass
	}
	a.remember(p.id, doneInfo{due: intended, rejected: reject})
	if reject {
		a.stats.Rejected++
	} else {
		a.stats.Passed++
	}
	if a.faulted {
		return // held in the safe state
	}
	energise := reject != a.set.toPass
	if !energise {
		if a.rejectOn && a.set.toPass {
			// A reject inside an earlier pass pulse: the reject wins.
			a.setReject(false, Tag{PartID: p.id, Intended: intended, Reason: "reject"})
			a.pulseUntil = time.Time{}
		}
		return
	}
	reason := "reject"
	if !reject {
		reason = "pass"
	}
	a.rejectOn = false // force the write so the part is recorded
	a.setReject(true, Tag{PartID: p.id, Intended: intended, Reason: reason})
	until := intended
	if now.After(until) {
		until = now
	}
	until = until.Add(a.set.pulse)
	if until.After(a.pulseUntil) {
		a.pulseUntil = until
		a.pulsePart = p.id
	}
}

func (a *Actuator) remember(id string, d doneInfo) {
	keep := max(4*a.set.maxInFlight, 256)
	a.done[id] = d
	a.doneOrder = append(a.doneOrder, id)
	if len(a.doneOrder) > keep {
		delete(a.done, a.doneOrder[0])
		a.doneOrder = a.doneOrder[1:]
	}
}

// enqueueHandshake queues r's verdict for the OK/NG + strobe lines.
func (a *Actuator) enqueueHandshake(r *inspection.Result) {
	if a.strobe == nil {
		return
	}
	if len(a.hsQueue) >= 256 {
		a.stats.HandshakeDrop++
		a.emit(inspection.Warning, EventHandshakeDrop, fmt.Sprintf("OK/NG handshake queue full; verdict of part %q not signalled", r.PartID),
			map[string]string{"part_id": r.PartID})
		return
	}
	a.hsQueue = append(a.hsQueue, handshake{partID: r.PartID, ok: !r.Verdict.Rejects()})
	a.signal()
}

// stepHandshake: set OK or NG, raise the strobe for strobe_pulse, drop
// all, wait strobe_pulse, next.
func (a *Actuator) stepHandshake(now time.Time) {
	if a.faulted {
		return
	}
	if a.hsActive && !now.Before(a.hsUntil) {
		a.write(a.strobe, false, Tag{Reason: "strobe"})
		a.write(a.okOut, false, Tag{Reason: "ok"})
		a.write(a.ngOut, false, Tag{Reason: "ng"})
		a.hsActive = false
		a.hsNext = now.Add(a.set.strobePulse)
	}
	if a.hsActive || len(a.hsQueue) == 0 || now.Before(a.hsNext) {
		return
	}
	h := a.hsQueue[0]
	a.hsQueue = a.hsQueue[1:]
	if h.ok {
		a.write(a.okOut, true, Tag{PartID: h.partID, Reason: "ok"})
	} else {
		a.write(a.ngOut, true, Tag{PartID: h.partID, Reason: "ng"})
	}
	a.write(a.strobe, true, Tag{PartID: h.partID, Reason: "strobe"})
	a.hsActive = true
	a.hsUntil = now.Add(a.set.strobePulse)
}

// onEncoder counts encoder pulses. It runs on the chip's event goroutine,
// takes no lock and never blocks.
func (a *Actuator) onEncoder(e Edge) {
	delta := uint64(1)
	if gap := a.checkSeq(e); gap > 0 {
		delta += uint64(gap)
	}
	n := a.count.Load() + delta
	ns := int64(e.Time.Sub(a.start))
	for c := n - delta + 1; c <= n; c++ {
		a.encNs[c%encRing].Store(ns)
	}
	a.count.Store(n)
	a.signal()
}

// encTime returns the time of encoder pulse c (time.Now when unknown).
func (a *Actuator) encTime(c uint64) time.Time {
	if c == 0 || a.count.Load()-c >= encRing {
		return time.Now()
	}
	return a.start.Add(time.Duration(a.encNs[c%encRing].Load()))
}

// countAt estimates the encoder count at t from the recent pulse times.
func (a *Actuator) countAt(t time.Time) uint64 {
	n := a.count.Load()
	if !a.set.encoder {
		return n
	}
	ns := int64(t.Sub(a.start))
	for c := n; c > 0 && n-c < encRing-1; c-- {
		if a.encNs[c%encRing].Load() <= ns {
			return c
		}
	}
	if n >= encRing-1 {
		return n - (encRing - 1)
	}
	return 0
}

// onPartPresent hands a part-present edge to the trigger goroutine. It
// never blocks: a full hand-off counts as a lost edge.
func (a *Actuator) onPartPresent(e Edge) {
	a.checkSeq(e)
	t := trig{id: a.opt.PartIDPrefix + strconv.FormatUint(a.partN.Add(1), 10), at: e.Time, count: a.count.Load()}
	select {
	case a.trigCh <- t:
	default:
		a.lost.Add(1)
		a.emit(inspection.Critical, EventLostEdges, fmt.Sprintf("part-present hand-off full; part %q not triggered", t.id),
			map[string]string{"line": e.Line, "lost": "1"})
	}
}

// checkSeq reports lost edges from a gap in the line's sequence numbers
// and returns the gap.
func (a *Actuator) checkSeq(e Edge) uint32 {
	if e.LineSeq == 0 {
		return 0
	}
	v, _ := a.lastSeq.LoadOrStore(e.Line, new(atomic.Uint32))
	last := v.(*atomic.Uint32).Swap(e.LineSeq)
	if last == 0 || e.LineSeq <= last+1 {
		return 0
	}
	gap := e.LineSeq - last - 1
	a.lost.Add(uint64(gap))
	a.emit(inspection.Warning, EventLostEdges, fmt.Sprintf("%d edges lost on line %q (kernel event buffer overflow)", gap, e.Line),
		map[string]string{"line": e.Line, "lost": strconv.FormatUint(uint64(gap), 10)})
	return gap
}

// triggers registers part-present parts and asks the daemon for each
// inspection, off the edge handler's goroutine.
func (a *Actuator) triggers() {
	for {
		select {
		case <-a.stop:
			return
		case t := <-a.trigCh:
			a.register(t.id, t.at, t.count, "gpio")
			c := a.control.Load()
			if c == nil || *c == nil {
				a.log.Warn("part-present edge without a trigger control; the part gets no verdict", "part_id", t.id)
				continue
			}
			if err := (*c).Trigger(t.id, inspection.TriggerGPIO); err != nil {
				a.log.Warn("trigger refused; the part gets no verdict and follows late_policy", "part_id", t.id, "err", err)
			}
		}
	}
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

package gpio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// EventProductCode: the product code lines could not be read at a
	// part-present edge (reported once until a read succeeds); the part
	// keeps the active product.
	EventProductCode = "gpio_product_code"
)

// Host is what the Actuator calls on the daemon (*daemon.Daemon implements
// it). It is handed to Start.
type Host interface {
	// Trigger asks for the inspection of one part-present part (source
	// inspection.TriggerGPIO). It is called from the Actuator's trigger
	// goroutine, never from an edge handler.
	Trigger(partID, source string) error
	// ReportEvent receives the Actuator's operator events. It must not
	// block: it is called with the Actuator's locks held, from edge
	// handlers and from the realtime scheduler thread.
	ReportEvent(e inspection.Event)
}

// A Host that also implements inspection.ProductSelector gets the
// product code of Options.ProductLines through SelectProductCode (source
// "gpio") on the trigger goroutine, right before the part's Trigger.

// Options are the settings of an Actuator that are not configuration.
type Options struct {
	// Logger receives the package's logs (component=gpio is added); nil
	// discards them.
	Logger *slog.Logger
	// Station fills Event.Station.
	Station string
	// PartIDPrefix starts the part IDs of part-present edges; a counter
	// from 1 follows. The zero value means "gpio-".
	PartIDPrefix string
	// Realtime runs the scheduler on its own OS thread at SCHED_FIFO
	// priority and sleeps the last FineWindow before each actuation in the
	// kernel, for sub-millisecond timing while the engine keeps the cores
	// busy (inspectd run sets it). Off, the scheduler uses Go timers only,
	// which testing/synctest's fake clock can drive.
	Realtime bool
	// ProductLines are the product code input lines of changeover source
	// "gpio" (changeover.gpio_lines), least significant bit first, at
	// most 16. They are read at every part-present edge; the code (active
	// = 1) is selected before the part's trigger unless it is the code
	// selected last (a refused code is tried again at the next part; code
	// 0: no product selected, ignored).
	ProductLines []string
}

// maxProductLines bounds Options.ProductLines (codes up to 65535).
const maxProductLines = 16

// FineWindow is how long before an actuation a Realtime scheduler stops
// waiting on Go timers and sleeps in the kernel instead.
const FineWindow = 4 * time.Millisecond

// closeMargin is how long before Close's deadline the drain stops waiting
// for scheduled parts, to leave time to halt and release the lines.
const closeMargin = 100 * time.Millisecond

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

// settings are the gpio configuration as the Actuator uses it.
type settings struct {
	toPass        bool // energise_to_pass
	encoder       bool // reject_mode = "encoder"
	delay         time.Duration
	counts        uint64
	pulse         time.Duration
	latePass      bool // late_policy = "pass"
	maxInFlight   int
	strobePulse   time.Duration
	handshake     bool // strobe_line set
	bias          Bias
	drive         Drive
	partPresentOn EdgeKind
}

// parseSettings maps a gpio section of a validated config.Config. It
// neither re-defaults nor re-checks ranges (config.GPIO's validate refuses
// the values the Actuator cannot use: a pulse under 1 ms, an event buffer
// under 16, no part in flight, negative counts, encoder mode without an
// encoder line or counts); an enum value it cannot map is an error.
func parseSettings(cfg config.GPIO) (settings, error) {
	s := settings{
		delay:       cfg.RejectDelay.D,
		pulse:       cfg.RejectPulse.D,
		maxInFlight: cfg.MaxPartsInFlight,
		strobePulse: cfg.StrobePulse.D,
		handshake:   cfg.StrobeLine != "",
	}
	var err error
	if s.bias, err = ParseBias(cfg.Bias); err != nil {
		return s, err
	}
	if s.drive, err = ParseDrive(cfg.Drive); err != nil {
		return s, err
	}
	switch cfg.RejectPolarity {
	case "energise_to_pass":
		s.toPass = true
	case "energise_to_reject":
	default:
		return s, fmt.Errorf("gpio.reject_polarity %q: want energise_to_pass or energise_to_reject", cfg.RejectPolarity)
	}
	switch cfg.RejectMode {
	case "time":
	case "encoder":
		s.encoder = true
	default:
		return s, fmt.Errorf("gpio.reject_mode %q: want time or encoder", cfg.RejectMode)
	}
	switch cfg.LatePolicy {
	case "reject":
	case "pass":
		s.latePass = true
	default:
		return s, fmt.Errorf("gpio.late_policy %q: want reject or pass", cfg.LatePolicy)
	}
	switch cfg.PartPresentEdge {
	case "rising":
		s.partPresentOn = EdgeRising
	case "falling":
		s.partPresentOn = EdgeFalling
	default:
		return s, fmt.Errorf("gpio.part_present_edge %q: want rising or falling", cfg.PartPresentEdge)
	}
	s.counts = uint64(cfg.RejectCounts)
	return s, nil
}

// Actuator schedules the reject actuator and drives the lamps and the
// handshake lines. It implements inspection.Sink ("gpio"),
// inspection.TriggerObserver, inspection.ReadyIndicator and
// prometheus.Collector. Create it with New, run it with Start, stop it
// with Close.
//
// Its state is split by owner, one file each:
//   - schedule.go: the parts in flight, their heap and fates, and the
//     scheduler goroutine that owns the timing (schedule.mu);
//   - safety.go: every output line and what it shows — the reject level
//     and pulse, the lamps, the fault latch and the halt (outputs.mu);
//   - handshake.go: the OK/NG + strobe queue and its timing
//     (handshake.mu), driving its lines through outputs;
//   - inputs.go: the edge handlers' lock-free counters and the trigger
//     goroutine.
//
// Locks are taken in the order schedule.mu or handshake.mu, then
// outputs.mu; nothing is locked while holding outputs.mu.
type Actuator struct {
	cfg  config.GPIO
	set  settings
	chip Chip
	log  *slog.Logger
	opt  Options
	ev   *hostRef

	out   *outputs
	sched *schedule
	hs    *handshake // nil without a strobe line
	in    *inputs

	wake  chan struct{}         // a component changed the schedule
	drain atomic.Pointer[drain] // set by Close while it waits for scheduled parts

	life      sync.Mutex // serialises Start and Close
	started   bool
	closed    bool
	stop      chan struct{} // closed by Close: the goroutines return
	schedDone chan struct{} // closed when the scheduler goroutine returned
	trigDone  chan struct{} // closed when the trigger goroutine returned
}

// Interfaces the daemon discovers on its sinks.
var (
	_ inspection.Sink            = (*Actuator)(nil)
	_ inspection.TriggerObserver = (*Actuator)(nil)
	_ inspection.ReadyIndicator  = (*Actuator)(nil)
)

// New returns an Actuator for cfg, a section of a validated
// config.Config, on chip. It requests no line and starts no goroutine:
// Start does. On success the Actuator owns chip and its Close closes it;
// on error the caller still owns chip.
func New(cfg config.GPIO, chip Chip, o Options) (*Actuator, error) {
	if chip == nil {
		return nil, errors.New("gpio: no chip")
	}
	set, err := parseSettings(cfg)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.PartIDPrefix == "" {
		o.PartIDPrefix = "gpio-"
	}
	if len(o.ProductLines) > maxProductLines {
		return nil, fmt.Errorf("gpio: %d product code lines; at most %d (codes up to 65535)", len(o.ProductLines), maxProductLines)
	}
	if len(o.ProductLines) > 0 && cfg.PartPresentLine == "" {
		return nil, errors.New("gpio: product code lines are read at the part-present edge, but gpio.part_present_line is not set")
	}
	a := &Actuator{
		cfg:  cfg,
		set:  set,
		chip: chip,
		log:  log.With("component", "gpio"),
		opt:  o,
		ev:   &hostRef{station: o.Station},
		wake: make(chan struct{}, 1),
	}
	a.in = newInputs(set, o.PartIDPrefix, cfg.EventBuffer, a.ev, a.signal)
	a.sched = newSchedule(set, a.ev, a.signal, a.in)
	a.out = newOutputs(set, a.ev, a.log, a.signal, a.sched.inFlight)
	a.sched.out = a.out
	if set.handshake {
		a.hs = newHandshake(set.strobePulse, a.out, a.ev, a.signal)
	}
	return a, nil
}

// signal wakes the scheduler goroutine; it never blocks.
func (a *Actuator) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Start requests the configured lines of the chip with every output at
// rest (ready and fault lamps off, actuator de-energised; the safe state
// instead if Halt was called), then starts the scheduler and the trigger
// goroutine. Part-present edges go to host.Trigger and events to
// host.ReportEvent. ctx bounds Start only: the goroutines run until
// Close. On error every line already requested is released and Start
// may be called again.
func (a *Actuator) Start(ctx context.Context, host Host) error {
	if host == nil {
		return errors.New("gpio: start: no host")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gpio: start: %w", err)
	}
	a.life.Lock()
	defer a.life.Unlock()
	switch {
	case a.closed:
		return errors.New("gpio: start: actuator closed")
	case a.started:
		return errors.New("gpio: start: already started")
	}
	a.ev.host.Store(&host)
	lines, err := a.request()
	if err != nil {
		a.ev.host.Store(nil)
		return err
	}
	a.out.attach(lines)
	a.started = true
	a.stop = make(chan struct{})
	a.schedDone = make(chan struct{})
	a.trigDone = make(chan struct{})
	go a.run()
	go a.triggers()
	return nil
}

// request requests every configured line; on error it releases the ones
// it already requested.
func (a *Actuator) request() (l lines, err error) {
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	oo := OutputOptions{ActiveLow: a.cfg.ActiveLow, Drive: a.set.drive}
	for _, out := range []struct {
		key, line string
		dst       *Output
	}{
		{"reject_line", a.cfg.RejectLine, &l.reject}, {"ready_line", a.cfg.ReadyLine, &l.ready},
		{"fault_line", a.cfg.FaultLine, &l.fault}, {"ok_line", a.cfg.OKLine, &l.ok},
		{"ng_line", a.cfg.NGLine, &l.ng}, {"strobe_line", a.cfg.StrobeLine, &l.strobe},
	} {
		if out.line == "" && out.key != "reject_line" {
			continue
		}
		o, err := a.chip.Output(out.line, oo)
		if err != nil {
			return l, fmt.Errorf("gpio.%s: %w", out.key, err)
		}
		*out.dst = o
	}
	io := InputOptions{ActiveLow: a.cfg.ActiveLow, Bias: a.set.bias, EventBuffer: a.cfg.EventBuffer}
	if a.cfg.EncoderLine != "" {
		eo := io
		eo.Edges = EdgeRising
		in, err := a.chip.Input(a.cfg.EncoderLine, eo, a.in.onEncoder)
		if err != nil {
			return l, fmt.Errorf("gpio.encoder_line: %w", err)
		}
		l.inputs = append(l.inputs, in)
	}
	if len(a.opt.ProductLines) > 0 {
		codes, err := a.chip.Levels(a.opt.ProductLines, InputOptions{ActiveLow: a.cfg.ActiveLow, Bias: a.set.bias})
		if err != nil {
			return l, fmt.Errorf("changeover.gpio_lines: %w", err)
		}
		a.in.codes.Store(&codeLines{r: codes})
		l.inputs = append(l.inputs, codes)
	}
	if a.cfg.PartPresentLine != "" {
		po := io
		po.Edges, po.Debounce = a.set.partPresentOn, a.cfg.Debounce.D
		in, err := a.chip.Input(a.cfg.PartPresentLine, po, a.in.onPartPresent)
		if err != nil {
			return l, fmt.Errorf("gpio.part_present_line: %w", err)
		}
		l.inputs = append(l.inputs, in)
	}
	return l, nil
}

// Close finishes the parts scheduled within ctx, puts every output in its
// safe state, stops the goroutines and waits for them within ctx, then
// releases the lines (the kernel reverts them to their defaults, as on
// process exit) and closes the chip.
//
// When ctx has a deadline (time mode), the parts due to actuate before
// it, less a 100 ms margin, are actuated first at their times — a drained
// shutdown still rejects or passes its last parts — and Close waits for
// the scheduler to report that nothing is due before then; later parts
// are rejected by the safe state. Without a deadline, and in encoder mode
// (no conveyor movement is promised), the safe state comes at once.
//
// Close is safe without Start and more than once; only the first call
// does anything.
func (a *Actuator) Close(ctx context.Context) error {
	a.life.Lock()
	defer a.life.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	var err error
	if a.started {
		a.finishScheduled(ctx)
	}
	a.out.halt("shutdown")
	if a.started {
		close(a.stop)
		for _, done := range []chan struct{}{a.schedDone, a.trigDone} {
			if werr := waitDone(ctx, done); werr != nil && err == nil {
				err = fmt.Errorf("gpio: close: %w", werr)
			}
		}
		a.out.detach().close()
	}
	if cerr := a.chip.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("gpio: close chip: %w", cerr)
	}
	return err
}

// waitDone waits for done, or for ctx unless done is already closed.
func waitDone(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Name returns "gpio".
func (a *Actuator) Name() string { return "gpio" }

// PartTriggered registers a part at its trigger time (TriggerObserver).
// A part already registered by the part-present input keeps that
// registration. It never blocks for long (one short lock).
func (a *Actuator) PartTriggered(partID string, at time.Time) {
	if partID == "" {
		return
	}
	a.sched.register(partID, at, a.in.countAt(at))
}

// Deliver records the verdict of r's part (Sink) and queues it for the
// OK/NG handshake. Parts that were never registered are scheduled from
// r.TriggerTime. It never blocks for long.
func (a *Actuator) Deliver(_ context.Context, r *inspection.Result) error {
	if a.out.halted.Load() {
		return nil
	}
	if a.hs != nil {
		a.hs.enqueue(r.PartID, !r.Verdict.Rejects())
	}
	a.sched.deliver(r)
	return nil
}

// Stats returns a snapshot of the counters. It takes no lock.
func (a *Actuator) Stats() Stats {
	s := a.sched.stats()
	s.LostEdges = a.in.lost.Load()
	s.EncoderCount = a.in.count.Load()
	if a.hs != nil {
		s.HandshakeDrop = a.hs.drops.Load()
	}
	s.Faulted = a.out.faulted.Load()
	s.Halted = a.out.halted.Load()
	return s
}

// hostRef sends operator events to the host set by Start; before Start
// they are dropped.
type hostRef struct {
	station string
	host    atomic.Pointer[Host]
}

func (e *hostRef) emit(sev inspection.Severity, kind, msg string, fields map[string]string) {
	h := e.host.Load()
	if h == nil {
		return
	}
	(*h).ReportEvent(inspection.Event{Time: time.Now(), Station: e.station, Severity: sev, Kind: kind, Message: msg, Fields: fields})
}

// trigger hands a part to the host, reporting whether one was set.
func (e *hostRef) trigger(partID string) (bool, error) {
	h := e.host.Load()
	if h == nil {
		return false, nil
	}
	return true, (*h).Trigger(partID, inspection.TriggerGPIO)
}

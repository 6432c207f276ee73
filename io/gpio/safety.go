package gpio

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// lines are the requested lines of a started Actuator; a nil Output is
// not configured (or not requested yet).
type lines struct {
	reject, ready, fault, ok, ng, strobe Output
	inputs                               []Input
}

// close releases every line.
func (l lines) close() {
	for _, in := range l.inputs {
		_ = in.Close()
	}
	for _, o := range []Output{l.reject, l.ready, l.fault, l.ok, l.ng, l.strobe} {
		if o != nil {
			_ = o.Close()
		}
	}
}

// outputs owns every output line and what it shows: the reject
// actuator's level and active pulse, the ready and fault lamps, the fault
// latch and the halt. Its mutex serialises every line write (the
// handshake drives its lines through it too), so once the safe state is
// entered no scheduled change can overwrite it. Nothing is locked while
// mu is held; events are reported under it (Host.ReportEvent must not
// block).
type outputs struct {
	toPass   bool
	pulse    time.Duration
	ev       *hostRef
	log      *slog.Logger
	signal   func()
	inFlight func() int // parts in flight, for the halt message (lock-free)

	// faulted and halted are written under mu and read anywhere, as are
	// their causes (for Problems).
	faulted     atomic.Bool
	halted      atomic.Bool
	faultReason atomic.Pointer[string]
	haltReason  atomic.Pointer[string]
	// gen counts the safe states entered (written under mu): the
	// handshake drops the verdicts it queued before the last one.
	gen atomic.Uint64

	mu          sync.Mutex
	l           lines
	rejectOn    bool      // the reject actuator is energised
	pulseUntil  time.Time // end of the active pulse; zero when none
	pulsePart   string    // the part of the active pulse
	readyWanted bool      // the last SetReady
}

func newOutputs(set settings, ev *hostRef, log *slog.Logger, signal func(), inFlight func() int) *outputs {
	return &outputs{toPass: set.toPass, pulse: set.pulse, ev: ev, log: log, signal: signal, inFlight: inFlight}
}

// attach takes over the lines Start requested at rest and shows the
// current state on them: the safe state after Halt, else the ready lamp
// as last set.
func (o *outputs) attach(l lines) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.l = l
	o.rejectOn = false
	if o.halted.Load() || o.faulted.Load() {
		o.safeState()
		return
	}
	if o.readyWanted {
		o.write(o.l.ready, true, Tag{Reason: "ready"})
	}
}

// detach hands the lines back for release; later writes are no-ops.
func (o *outputs) detach() lines {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.l
	o.l = lines{}
	return l
}

// SetReady turns the ready lamp on (inspecting) or off (paused,
// stopping) (inspection.ReadyIndicator). It stays off while a fault is
// latched or after Halt.
func (a *Actuator) SetReady(on bool) { a.out.setReady(on) }

// ClearFault releases a latched FIFO overflow (inspection.FaultClearer;
// the daemon's ClearFaults calls it for POST /api/clear-fault, the MQTT
// clear_fault command and SIGHUP): the actuator returns to rest,
// scheduling resumes for the parts still tracked and a gpio_fault_cleared
// event is reported. Parts refused during the fault are not tracked: with
// energise_to_reject they would pass, so clear the fault once they have
// left the conveyor. Without a latched fault, and after Halt, it does
// nothing.
func (a *Actuator) ClearFault() { a.out.clearFault() }

// Halt puts every output in its safe state and stops actuating, for
// good: parts in flight are rejected. Use it on fatal errors. Safe to call
// more than once, and before Start (Start then requests the lines in the
// safe state).
func (a *Actuator) Halt(reason string) { a.out.halt(reason) }

func (o *outputs) setReady(on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.readyWanted = on
	if o.halted.Load() {
		return
	}
	o.write(o.l.ready, on && !o.faulted.Load(), Tag{Reason: "ready"})
}

func (o *outputs) clearFault() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.faulted.Load() || o.halted.Load() {
		return
	}
	o.faulted.Store(false)
	reason := o.faultReason.Swap(nil)
	o.setReject(false, Tag{Reason: "fault_cleared"})
	o.write(o.l.fault, false, Tag{Reason: "fault"})
	o.write(o.l.ready, o.readyWanted, Tag{Reason: "ready"})
	msg, fields := "GPIO fault cleared; scheduling resumed", map[string]string(nil)
	if reason != nil {
		msg += " (the fault was: " + *reason + ")"
		fields = map[string]string{"fault": *reason}
	}
	o.ev.emit(inspection.Info, EventFaultCleared, msg, fields)
	o.log.Info("latched fault cleared by the operator", "fault", fields["fault"])
	o.signal()
}

func (o *outputs) halt(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.haltLocked(reason)
}

func (o *outputs) haltLocked(reason string) {
	if o.halted.Load() {
		return
	}
	o.haltReason.Store(&reason)
	o.halted.Store(true)
	o.safeState()
	inFlight := o.inFlight()
	o.ev.emit(inspection.Critical, EventHalted, fmt.Sprintf("GPIO outputs halted in the safe state (%s); %d parts in flight are rejected", reason, inFlight),
		map[string]string{"reason": reason, "in_flight": strconv.Itoa(inFlight)})
	o.log.Warn("outputs halted in safe state", "reason", reason, "in_flight", inFlight)
	o.signal()
}

// latchFault enters the safe state until ClearFault; reason says why,
// for Problems and the cleared event.
func (o *outputs) latchFault(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.faulted.Load() {
		return
	}
	o.faultReason.Store(&reason)
	o.faulted.Store(true)
	o.safeState()
}

// safeState: actuator rejecting, ready off, fault on, handshake lines off
// and the handshake's queued verdicts dropped (gen). Called with mu held.
func (o *outputs) safeState() {
	tag := Tag{Reason: "safe"}
	o.gen.Add(1)
	o.pulseUntil = time.Time{}
	o.setReject(!o.toPass, tag)
	o.write(o.l.ready, false, tag)
	o.write(o.l.fault, true, tag)
	o.write(o.l.ok, false, tag)
	o.write(o.l.ng, false, tag)
	o.write(o.l.strobe, false, tag)
}

// actuate drives the reject actuator for part id at its due time.
// verdictRejects is the part's fate by its verdict (or late_policy);
// while a fault is latched or the outputs are halted the part is rejected
// by the safe state instead (held). It reports the part's fate.
func (o *outputs) actuate(id string, verdictRejects bool, now, intended time.Time) (rejected, held bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.faulted.Load() || o.halted.Load() {
		return true, true
	}
	energise := verdictRejects != o.toPass
	if !energise {
		if o.rejectOn && o.toPass {
			// A reject inside an earlier pass pulse: the reject wins.
			o.setReject(false, Tag{PartID: id, Intended: intended, Reason: "reject"})
			o.pulseUntil = time.Time{}
		}
		return verdictRejects, false
	}
	reason := "reject"
	if !verdictRejects {
		reason = "pass"
	}
	o.rejectOn = false // force the write so the part is recorded
	o.setReject(true, Tag{PartID: id, Intended: intended, Reason: reason})
	until := intended
	if now.After(until) {
		until = now
	}
	until = until.Add(o.pulse)
	if until.After(o.pulseUntil) {
		o.pulseUntil = until
		o.pulsePart = id
	}
	return verdictRejects, false
}

// endPulse de-energises the actuator once the active pulse is over, and
// returns the end of the pulse still active (zero when none).
func (o *outputs) endPulse(now time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.pulseUntil.IsZero() && !now.Before(o.pulseUntil) {
		if !o.faulted.Load() {
			o.setReject(false, Tag{PartID: o.pulsePart, Intended: o.pulseUntil, Reason: "release"})
		}
		o.pulseUntil = time.Time{}
	}
	return o.pulseUntil
}

// pulseEnd returns the end of the active pulse (zero when none).
func (o *outputs) pulseEnd() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pulseUntil
}

// raiseHandshake sets the OK or the NG line for partID, then raises the
// strobe, unless the outputs entered a safe state since gen, a fault is
// latched or they are halted. It reports whether it drove the lines.
func (o *outputs) raiseHandshake(gen uint64, partID string, ok bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.handshakeAllowed(gen) {
		return false
	}
	if ok {
		o.write(o.l.ok, true, Tag{PartID: partID, Reason: "ok"})
	} else {
		o.write(o.l.ng, true, Tag{PartID: partID, Reason: "ng"})
	}
	o.write(o.l.strobe, true, Tag{PartID: partID, Reason: "strobe"})
	return true
}

// dropHandshake drops the strobe, then the OK and NG lines, under the
// same condition as raiseHandshake.
func (o *outputs) dropHandshake(gen uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.handshakeAllowed(gen) {
		return false
	}
	o.write(o.l.strobe, false, Tag{Reason: "strobe"})
	o.write(o.l.ok, false, Tag{Reason: "ok"})
	o.write(o.l.ng, false, Tag{Reason: "ng"})
	return true
}

func (o *outputs) handshakeAllowed(gen uint64) bool {
	return o.gen.Load() == gen && !o.faulted.Load() && !o.halted.Load()
}

// setReject drives the actuator (the safe state always writes).
func (o *outputs) setReject(v bool, t Tag) {
	if o.rejectOn == v && t.Reason != "safe" {
		return
	}
	o.rejectOn = v
	o.write(o.l.reject, v, t)
}

// write sets an optional output; a failure halts the outputs. Called
// with mu held.
func (o *outputs) write(out Output, v bool, t Tag) {
	if out == nil {
		return
	}
	var err error
	if to, ok := out.(TaggedOutput); ok {
		err = to.SetTagged(v, t)
	} else {
		err = out.Set(v)
	}
	if err != nil {
		o.ev.emit(inspection.Critical, EventOutputError, "GPIO output write failed: "+err.Error(), nil)
		o.log.Error("output write failed", "err", err)
		o.haltLocked("output error: " + err.Error())
	}
}

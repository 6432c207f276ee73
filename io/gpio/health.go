package gpio

import (
	"fmt"
	"sync"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// recentWindow is how far back Problems counts the parts the actuator
// could not decide by their verdict.
const recentWindow = time.Minute

// recentCount counts occurrences over the last recentWindow in one-second
// buckets. Its mutex guards only the buckets and is never held across I/O
// or while taking another lock, so Problems may take it.
type recentCount struct {
	mu      sync.Mutex
	buckets [int(recentWindow / time.Second)]struct {
		sec int64 // Unix second the bucket counts; a stale one is reused
		n   uint64
	}
}

// add counts one occurrence at now.
func (c *recentCount) add(now time.Time) {
	sec := now.Unix()
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &c.buckets[uint64(sec)%uint64(len(c.buckets))]
	if b.sec != sec {
		b.sec, b.n = sec, 0
	}
	b.n++
}

// count returns the occurrences within recentWindow before now.
func (c *recentCount) count(now time.Time) uint64 {
	sec := now.Unix()
	c.mu.Lock()
	defer c.mu.Unlock()
	var n uint64
	for _, b := range c.buckets {
		if b.sec > sec-int64(len(c.buckets)) && b.sec <= sec {
			n += b.n
		}
	}
	return n
}

// Interfaces the daemon discovers on its sinks for health and for the
// operator's clear-fault command.
var (
	_ inspection.HealthReporter = (*Actuator)(nil)
	_ inspection.FaultClearer   = (*Actuator)(nil)
)

// Problems reports what stops the actuator from acting on the verdicts
// (inspection.HealthReporter), one sentence each; nil when it acts on
// every verdict:
//   - a latched fault (FIFO overflow): every part is rejected physically
//     until an operator clears it (ClearFault);
//   - halted outputs (Halt, an output write error, Close): every part is
//     rejected physically until inspectd restarts;
//   - parts in the last minute that had no verdict at their actuation
//     time (late_policy decided them), and results in the last minute
//     that arrived after their part had passed the actuator (the polarity
//     decided them). These clear themselves a minute after the last one.
//
// The daemon puts them in its Status (/healthz 503, status page) and in
// every Result's Faults. Problems reads atomics and the small counters'
// lock only: it never waits for an output write or the scheduler.
func (a *Actuator) Problems() []string {
	var p []string
	const rejects = "every part is rejected physically whatever its verdict says (%s)"
	how := "energise_to_pass: no pass pulse"
	if !a.set.toPass {
		how = "energise_to_reject: the actuator is held energised"
	}
	if a.out.halted.Load() {
		reason := "halted"
		if r := a.out.haltReason.Load(); r != nil {
			reason = *r
		}
		p = append(p, fmt.Sprintf("GPIO outputs halted in the safe state (%s): "+rejects+" until inspectd restarts", reason, how))
	} else if a.out.faulted.Load() {
		reason := "fault"
		if r := a.out.faultReason.Load(); r != nil {
			reason = *r
		}
		p = append(p, fmt.Sprintf("GPIO fault latched (%s): "+rejects+" — fix the cause, then clear it (status page button → POST /api/clear-fault, MQTT clear_fault, or SIGHUP)", reason, how))
	}
	now := time.Now()
	if n := a.sched.recentNoVerdict.count(now); n > 0 {
		fate := `late_policy "reject" rejected them physically whatever their verdict said`
		if a.set.latePass {
			fate = `late_policy "pass" let them through, NG and ERROR parts included`
		}
		p = append(p, fmt.Sprintf("%s in the last minute had no verdict at their actuation time (%s after the trigger; inspection is slower than that): %s", count(n, "part"), a.reachDesc(), fate))
	}
	if n := a.sched.recentUnscheduled.count(now); n > 0 {
		fate := "energise_to_pass gave them no pass pulse: they were rejected physically whatever their verdict said"
		if !a.set.toPass {
			fate = "energise_to_reject gave them no reject pulse: they were let through, NG and ERROR parts included"
		}
		p = append(p, fmt.Sprintf("%s in the last minute arrived after their part had passed the actuator (%s after the trigger): %s", count(n, "result"), a.reachDesc(), fate))
	}
	return p
}

// reachDesc names the configured distance from trigger to actuator.
func (a *Actuator) reachDesc() string {
	if a.set.encoder {
		return fmt.Sprintf("gpio.reject_counts = %d encoder pulses", a.set.counts)
	}
	return fmt.Sprintf("gpio.reject_delay = %s", a.set.delay)
}

// count returns "1 part", "2 parts".
func count(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

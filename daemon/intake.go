package daemon

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// trigger is one accepted request for a part.
type trigger struct {
	partID string
	source string
	at     time.Time
	// sel is the product selection active when the trigger was accepted:
	// the part is inspected with that product's model and settings.
	sel *selection
}

// entry is one accepted trigger in the intake queue. An entry with an
// overload detail was accepted while capacity triggers were already waiting
// for a frame: it keeps its place in the order and becomes an ERROR
// "overload" result there, without a frame.
type entry struct {
	trig     trigger
	overload string
}

// errIntakeFull refuses a trigger when even the overload entries have
// reached their bound: nothing was accepted, so no verdict is owed.
var errIntakeFull = errors.New("trigger queue full: too many parts waiting for a verdict")

// intake is the ordered queue of accepted triggers between Trigger and the
// capture stage, the one place where a trigger becomes a part that is owed
// exactly one result. Acceptance, numbering, the trigger observers and the
// close happen under one lock, so every trigger accepted before close is
// handed out by next — in acceptance order — and none after.
type intake struct {
	mu       sync.Mutex
	cond     sync.Cond
	queue    []entry
	waiting  int // entries in queue that need a frame
	capacity int // waiting entries before a trigger becomes an overload entry
	limit    int // entries in all before a trigger is refused
	closed   error
	seq      uint64
}

func newIntake(capacity, limit int) *intake {
	in := &intake{capacity: capacity, limit: limit}
	in.cond.L = &in.mu
	return in
}

// accept queues t, numbering it with prefix when it has no part ID, and
// calls observe (the trigger observers) under the lock, so that they see
// the parts in queue order before any result of theirs exists. It reports
// whether t was queued as an overload entry, or why it was refused.
func (in *intake) accept(t trigger, prefix string, observe func(trigger)) (trigger, bool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.closed != nil:
		return t, false, in.closed
	case len(in.queue) >= in.limit:
		return t, false, errIntakeFull
	}
	in.seq++
	if t.partID == "" {
		t.partID = fmt.Sprintf("%s-%06d", prefix, in.seq)
	}
	e := entry{trig: t}
	if in.waiting >= in.capacity {
		e.overload = fmt.Sprintf("%d triggers were already waiting for a frame", in.waiting)
	} else {
		in.waiting++
	}
	observe(t)
	in.queue = append(in.queue, e)
	in.cond.Signal()
	return t, e.overload != "", nil
}

// next returns the oldest entry, waiting for one (also while the intake is
// not yet open); false once the intake is closed for good and empty.
func (in *intake) next() (entry, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(in.queue) == 0 && (in.closed == nil || in.closed == errNotRunning) {
		in.cond.Wait()
	}
	if len(in.queue) == 0 {
		return entry{}, false
	}
	e := in.queue[0]
	in.queue[0] = entry{}
	in.queue = in.queue[1:]
	if e.overload == "" {
		in.waiting--
	}
	return e, true
}

// open starts accepting triggers, unless the intake was closed for good
// meanwhile (a daemon stopping before it ran).
func (in *intake) open() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed == errNotRunning {
		in.closed = nil
	}
}

// close refuses every later trigger with why; the entries already queued
// are still handed out. Only the first close counts.
func (in *intake) close(why error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed == nil || in.closed == errNotRunning {
		in.closed = why
	}
	in.cond.Broadcast()
}

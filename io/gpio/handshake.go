package gpio

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// handshakeQueue bounds the verdicts waiting for the OK/NG lines.
const handshakeQueue = 256

// handshake owns the hand-off of each verdict to a PLC on the OK/NG and
// strobe lines: the queue of verdicts not yet signalled and the strobe
// timing, under mu. Deliver queues; only the scheduler goroutine steps
// it. Per verdict: set OK or NG, raise the strobe for strobe_pulse, drop
// all, wait strobe_pulse, next.
//
// It drives its lines through outputs, which refuses once a safe state
// was entered since the handshake last looked (outputs.gen): the safe
// state drops the lines and, on the handshake's next look, the verdicts
// queued before it.
type handshake struct {
	pulse  time.Duration
	out    *outputs
	ev     *hostRef
	signal func()
	drops  atomic.Uint64

	mu     sync.Mutex
	gen    uint64 // outputs.gen when last looked
	queue  []verdictSignal
	active bool      // the strobe is raised
	until  time.Time // when the raised strobe drops
	next   time.Time // when the next verdict may be raised
}

type verdictSignal struct {
	partID string
	ok     bool
}

func newHandshake(pulse time.Duration, out *outputs, ev *hostRef, signal func()) *handshake {
	return &handshake{pulse: pulse, out: out, ev: ev, signal: signal}
}

// enqueue queues a verdict; a full queue drops it with an event.
func (h *handshake) enqueue(partID string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sync()
	if len(h.queue) >= handshakeQueue {
		h.drops.Add(1)
		h.ev.emit(inspection.Warning, EventHandshakeDrop, fmt.Sprintf("OK/NG handshake queue full; verdict of part %q not signalled", partID),
			map[string]string{"part_id": partID})
		return
	}
	h.queue = append(h.queue, verdictSignal{partID: partID, ok: ok})
	h.signal()
}

// sync forgets what a safe state entered since the last look dropped.
func (h *handshake) sync() {
	if g := h.out.gen.Load(); g != h.gen {
		h.gen = g
		h.active = false
		h.queue = h.queue[:0]
	}
}

// step drops a strobe that is due to drop and raises the next verdict
// when its time has come. It returns when it must run next (zero: not
// before a wake-up). While a fault is latched or the outputs are halted
// it does nothing and asks for no time: ClearFault wakes the scheduler.
func (h *handshake) step(now time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sync()
	if h.out.faulted.Load() || h.out.halted.Load() {
		return time.Time{}
	}
	if h.active && !now.Before(h.until) {
		h.out.dropHandshake(h.gen)
		h.active = false
		h.next = now.Add(h.pulse)
	}
	if !h.active && len(h.queue) > 0 && !now.Before(h.next) {
		v := h.queue[0]
		h.queue = h.queue[1:]
		h.out.raiseHandshake(h.gen, v.partID, v.ok)
		h.active = true
		h.until = now.Add(h.pulse)
	}
	switch {
	case h.active:
		return h.until
	case len(h.queue) > 0:
		return h.next
	}
	return time.Time{}
}

package gpio

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// encRing is how many encoder edge times are kept, for the intended time
// of an encoder-mode actuation and for countAt.
const encRing = 4096

// inputs owns what the edge handlers record. The handlers run on the
// chip's event goroutine, take no lock and never block: the encoder
// handler alone writes count and the edge-time ring, the part-present
// handler hands each part to the trigger goroutine through trigCh, and
// both count lost edges.
type inputs struct {
	encoder bool
	prefix  string
	start   time.Time // origin of encNs
	ev      *hostRef
	signal  func()

	trigCh  chan trig
	partN   atomic.Uint64
	count   atomic.Uint64 // encoder pulses, lost ones included
	encNs   [encRing]atomic.Int64
	lastSeq sync.Map // line → *atomic.Uint32, last LineSeq seen
	lost    atomic.Uint64

	// codes are the product code lines (Options.ProductLines), nil
	// without; codeFailing is set while their reads fail (reported once).
	codes       atomic.Pointer[codeLines]
	codeFailing atomic.Bool
}

// codeLines are the requested product code lines.
type codeLines struct{ r LevelReader }

// trig is a part-present edge handed to the trigger goroutine.
type trig struct {
	id    string
	at    time.Time
	count uint64
	// code is the product code read at the edge; -1 when there are no
	// code lines or they could not be read.
	code int
}

// newInputs sizes the part-present hand-off like the kernel's edge-event
// buffer (gpio.event_buffer).
func newInputs(set settings, prefix string, buffer int, ev *hostRef, signal func()) *inputs {
	return &inputs{encoder: set.encoder, prefix: prefix, start: time.Now(), ev: ev, signal: signal, trigCh: make(chan trig, buffer)}
}

// onEncoder counts encoder pulses, adding lost ones back.
func (in *inputs) onEncoder(e Edge) {
	delta := uint64(1)
	if gap := in.checkSeq(e); gap > 0 {
		delta += uint64(gap)
	}
	n := in.count.Load() + delta
	ns := int64(e.Time.Sub(in.start))
	for c := n - delta + 1; c <= n; c++ {
		in.encNs[c%encRing].Store(ns)
	}
	in.count.Store(n)
	in.signal()
}

// encTime returns the time of encoder pulse c (time.Now when unknown).
func (in *inputs) encTime(c uint64) time.Time {
	if c == 0 || in.count.Load()-c >= encRing {
		return time.Now()
	}
	return in.start.Add(time.Duration(in.encNs[c%encRing].Load()))
}

// countAt estimates the encoder count at t from the recent pulse times.
func (in *inputs) countAt(t time.Time) uint64 {
	n := in.count.Load()
	if !in.encoder {
		return n
	}
	ns := int64(t.Sub(in.start))
	for c := n; c > 0 && n-c < encRing-1; c-- {
		if in.encNs[c%encRing].Load() <= ns {
			return c
		}
	}
	if n >= encRing-1 {
		return n - (encRing - 1)
	}
	return 0
}

// onPartPresent hands a part-present edge to the trigger goroutine. A
// full hand-off counts as a lost edge.
func (in *inputs) onPartPresent(e Edge) {
	in.checkSeq(e)
	t := trig{id: in.prefix + strconv.FormatUint(in.partN.Add(1), 10), at: e.Time, count: in.count.Load(), code: in.readCode(e.Line)}
	select {
	case in.trigCh <- t:
	default:
		in.lost.Add(1)
		in.ev.emit(inspection.Critical, EventLostEdges, fmt.Sprintf("part-present hand-off full; part %q not triggered", t.id),
			map[string]string{"line": e.Line, "lost": "1"})
	}
}

// readCode reads the product code lines at a part-present edge: bit i is
// line i's level (least significant first). It returns -1 without code
// lines or when the read fails; a failure is reported once until a read
// succeeds.
func (in *inputs) readCode(line string) int {
	cl := in.codes.Load()
	if cl == nil {
		return -1
	}
	levels, err := cl.r.Read()
	if err != nil {
		if !in.codeFailing.Swap(true) {
			in.ev.emit(inspection.Warning, EventProductCode, fmt.Sprintf("product code lines cannot be read at the part-present edge (%v): parts keep the active product until they can", err),
				map[string]string{"line": line, "error": err.Error()})
		}
		return -1
	}
	in.codeFailing.Store(false)
	code := 0
	for i, v := range levels {
		if v {
			code |= 1 << i
		}
	}
	return code
}

// checkSeq reports lost edges from a gap in the line's sequence numbers
// and returns the gap.
func (in *inputs) checkSeq(e Edge) uint32 {
	if e.LineSeq == 0 {
		return 0
	}
	v, _ := in.lastSeq.LoadOrStore(e.Line, new(atomic.Uint32))
	last := v.(*atomic.Uint32).Swap(e.LineSeq)
	if last == 0 || e.LineSeq <= last+1 {
		return 0
	}
	gap := e.LineSeq - last - 1
	in.lost.Add(uint64(gap))
	in.ev.emit(inspection.Warning, EventLostEdges, fmt.Sprintf("%d edges lost on line %q (kernel event buffer overflow)", gap, e.Line),
		map[string]string{"line": e.Line, "lost": strconv.FormatUint(uint64(gap), 10)})
	return gap
}

// triggers is the trigger goroutine: it registers each part-present part
// and asks the host for its inspection, off the edge handler's goroutine.
func (a *Actuator) triggers() {
	defer close(a.trigDone)
	lastCode := -1 // the code last selected successfully
	for {
		select {
		case <-a.stop:
			return
		case t := <-a.in.trigCh:
			a.sched.register(t.id, t.at, t.count)
			if t.code >= 0 && t.code != lastCode {
				// A code selected successfully is not selected again for
				// every part; a refused one is retried at the next part.
				lastCode = -1
				if a.selectCode(t) {
					lastCode = t.code
				}
			}
			ok, err := a.ev.trigger(t.id)
			switch {
			case !ok:
				a.log.Warn("part-present edge without a host; the part gets no verdict", "part_id", t.id)
			case err != nil:
				a.log.Warn("trigger refused; the part gets no verdict and follows late_policy", "part_id", t.id, "err", err)
			}
		}
	}
}

// selectCode hands the product code read at t's edge to the host's
// SelectProductCode (source "gpio"), before t's trigger, and reports
// whether it was selected. Code 0 selects no product; a refused selection
// is logged (the daemon reports it).
func (a *Actuator) selectCode(t trig) bool {
	if t.code == 0 {
		a.log.Debug("product code lines read 0: no product selected", "part_id", t.id)
		return true
	}
	h := a.ev.host.Load()
	if h == nil {
		return false
	}
	sel, ok := (*h).(inspection.ProductSelector)
	if !ok {
		a.log.Warn("product code lines are read but the daemon has no product changeover; ignored", "part_id", t.id, "code", t.code)
		return true
	}
	if err := sel.SelectProductCode(t.code, inspection.ProductSourceGPIO); err != nil {
		a.log.Warn("product selection by the code lines refused; retried at the next part", "part_id", t.id, "code", t.code, "err", err)
		return false
	}
	a.log.Info("product selected by the code lines", "part_id", t.id, "code", t.code)
	return true
}

package daemon

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// sinkQueue gives one sink its own bounded queue and goroutine, so a slow
// or dead sink never stalls inspection: when the queue is full the result
// is dropped for that sink, counted and logged.
type sinkQueue struct {
	sink   inspection.Sink
	queue  chan *inspection.Result
	log    *slog.Logger
	onDrop func(sink string)

	delivered, dropped, errors atomic.Uint64
	lastError                  atomic.Value // string
	lastDropLog                atomic.Int64 // unix nanos of the last drop log line
	done                       chan struct{}
}

func newSinkQueue(s inspection.Sink, capacity int, log *slog.Logger, onDrop func(string)) *sinkQueue {
	return &sinkQueue{sink: s, queue: make(chan *inspection.Result, capacity), log: log.With("sink", s.Name()), onDrop: onDrop, done: make(chan struct{})}
}

// offer enqueues r without blocking; false means it was dropped.
func (q *sinkQueue) offer(r *inspection.Result) bool {
	select {
	case q.queue <- r:
		return true
	default:
		q.dropped.Add(1)
		if q.onDrop != nil {
			q.onDrop(q.sink.Name())
		}
		// One log line per second at most: a dead sink must not flood.
		now := time.Now().UnixNano()
		if last := q.lastDropLog.Load(); now-last > int64(time.Second) && q.lastDropLog.CompareAndSwap(last, now) {
			q.log.Warn("sink queue full; result dropped for this sink", "result_id", r.ID, "dropped_total", q.dropped.Load(), "capacity", cap(q.queue))
		}
		return false
	}
}

// run delivers queued results until the queue is closed and empty.
func (q *sinkQueue) run(ctx context.Context) {
	defer close(q.done)
	for r := range q.queue {
		if err := q.sink.Deliver(ctx, r); err != nil {
			q.errors.Add(1)
			q.lastError.Store(err.Error())
			q.log.Warn("sink failed to deliver a result", "result_id", r.ID, "err", err)
			continue
		}
		q.delivered.Add(1)
	}
}

func (q *sinkQueue) status() inspection.SinkStatus {
	s := inspection.SinkStatus{Name: q.sink.Name(), Queued: len(q.queue), Capacity: cap(q.queue),
		Delivered: q.delivered.Load(), Dropped: q.dropped.Load(), Errors: q.errors.Load()}
	if e, ok := q.lastError.Load().(string); ok {
		s.LastError = e
	}
	return s
}

// sinkSet is every sink of the daemon, each with its queue, and the
// optional interfaces each sink implements.
type sinkSet struct {
	queues []*sinkQueue
	images []inspection.ImageSink
	events []inspection.EventSink
	trigs  []inspection.TriggerObserver
	lamps  []inspection.ReadyIndicator
	health []inspection.HealthReporter
	faults []inspection.FaultClearer
	wg     sync.WaitGroup
}

func newSinkSet(sinks []inspection.Sink, capacity int, log *slog.Logger, onDrop func(string)) *sinkSet {
	s := &sinkSet{}
	for _, sink := range sinks {
		s.queues = append(s.queues, newSinkQueue(sink, capacity, log, onDrop))
		if is, ok := sink.(inspection.ImageSink); ok {
			s.images = append(s.images, is)
		}
		if es, ok := sink.(inspection.EventSink); ok {
			s.events = append(s.events, es)
		}
		if to, ok := sink.(inspection.TriggerObserver); ok {
			s.trigs = append(s.trigs, to)
		}
		if ri, ok := sink.(inspection.ReadyIndicator); ok {
			s.lamps = append(s.lamps, ri)
		}
		if hr, ok := sink.(inspection.HealthReporter); ok {
			s.health = append(s.health, hr)
		}
		if fc, ok := sink.(inspection.FaultClearer); ok {
			s.faults = append(s.faults, fc)
		}
	}
	return s
}

func (s *sinkSet) start(ctx context.Context) {
	for _, q := range s.queues {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			q.run(ctx)
		}()
	}
}

// wantsImage reports whether any sink needs the pixels of r.
func (s *sinkSet) wantsImage(r *inspection.Result) bool {
	for _, is := range s.images {
		if is.WantsImage(r) {
			return true
		}
	}
	return false
}

func (s *sinkSet) publish(r *inspection.Result) {
	for _, q := range s.queues {
		q.offer(r)
	}
}

func (s *sinkSet) event(e inspection.Event) {
	for _, es := range s.events {
		es.Event(e)
	}
}

func (s *sinkSet) triggered(partID string, at time.Time) {
	for _, t := range s.trigs {
		t.PartTriggered(partID, at)
	}
}

// problems collects every sink's own problems (nil when none).
func (s *sinkSet) problems() []string {
	var out []string
	for _, h := range s.health {
		out = append(out, h.Problems()...)
	}
	return out
}

// clearFaults clears every sink's latched fault and reports how many
// sinks can latch one.
func (s *sinkSet) clearFaults() int {
	for _, f := range s.faults {
		f.ClearFault()
	}
	return len(s.faults)
}

func (s *sinkSet) setReady(ready bool) {
	for _, l := range s.lamps {
		l.SetReady(ready)
	}
}

// drain closes the queues and waits until every queued result was
// delivered or ctx ends. It returns the number of results still queued
// when ctx ended. The sinks themselves stay open: their owner closes them.
func (s *sinkSet) drain(ctx context.Context, log *slog.Logger) int {
	for _, q := range s.queues {
		close(q.queue)
	}
	if waitGroupWithin(ctx, &s.wg) {
		return 0
	}
	left := 0
	for _, q := range s.queues {
		if n := len(q.queue); n > 0 {
			left += n
			log.Error("shutdown: sink did not finish in time", "sink", q.sink.Name(), "undelivered", n)
		}
	}
	return left
}

func (s *sinkSet) statuses() []inspection.SinkStatus {
	out := make([]inspection.SinkStatus, 0, len(s.queues))
	for _, q := range s.queues {
		out = append(out, q.status())
	}
	return out
}

package daemon

import (
	"sync"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// modelState is the station configuration, the product registry and the
// active product selection. The inspect loop installs models (between two
// parts); the loaders and Control read and change the selection; everyone
// else reads a consistent snapshot. Products keep their identity for the
// daemon's life (a reload updates them in place), so a part bound to a
// product at its trigger always finds it.
type modelState struct {
	mu       sync.Mutex
	cfg      *config.Config
	products []*product
	active   *selection
}

// config returns the station configuration in force.
func (s *modelState) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// snapshot returns the active product's model (nil while it loads or is
// unavailable), its configuration (the station's with the product's
// bundle, decision and ROI) and thresholds.
func (s *modelState) snapshot() (*Model, *config.Config, thresholds) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil || s.active.p == nil {
		return nil, s.cfg, thresholds{}
	}
	p := s.active.p
	return p.model, p.cfg, p.thr
}

// selected returns the active selection.
func (s *modelState) selected() *selection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// lookup returns the product named name, or nil.
func (s *modelState) lookup(name string) *product {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.products {
		if p.name == name {
			return p
		}
	}
	return nil
}

// setRuntime overrides the active product's image and/or pixel threshold
// (nil keeps one) and returns the thresholds now in force for it.
func (s *modelState) setRuntime(img, pixel *float64) (string, thresholds) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil || s.active.p == nil {
		return "", thresholds{}
	}
	p := s.active.p
	rt := thresholds{}
	if p.runtime != nil {
		rt = *p.runtime
	}
	if img != nil {
		rt.image = *img
	}
	if pixel != nil {
		rt.pixel = *pixel
	}
	p.runtime = &rt
	p.resolve()
	return p.name, p.thr
}

// takeAll removes every loaded model and returns them, for closing.
func (s *modelState) takeAll() []*Model {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Model
	for _, p := range s.products {
		if p.model != nil {
			out = append(out, p.model)
			p.model = nil
		}
	}
	return out
}

// stats are the counters and recent history behind Status: parts by
// verdict, latencies, verdict times, the last event, the camera's state and
// the last engine error.
type stats struct {
	mu        sync.Mutex
	counts    inspection.Counts
	byProduct map[string]*inspection.Counts
	latencies ring
	rates     ring // verdict times, unix seconds
	lastEvent *inspection.Event
	camera    inspection.CameraStatus
	lastErr   string // last engine error
	lastErrAt time.Time
}

func newStats(now time.Time) *stats {
	return &stats{latencies: newRing(1024), rates: newRing(4096), byProduct: map[string]*inspection.Counts{},
		camera: inspection.CameraStatus{State: inspection.CameraStarting, Since: now}}
}

// count records r and returns the number of results so far.
func (s *stats) count(r *inspection.Result) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	pc := s.byProduct[r.Model.Product]
	if pc == nil {
		pc = &inspection.Counts{}
		s.byProduct[r.Model.Product] = pc
	}
	for _, c := range []*inspection.Counts{&s.counts, pc} {
		c.Total++
		switch r.Verdict {
		case inspection.OK:
			c.OK++
		case inspection.NG:
			c.NG++
		default:
			c.Error++
		}
	}
	s.latencies.add(r.Latency.TotalMs)
	s.rates.add(float64(r.VerdictTime.UnixNano()) / 1e9)
	return s.counts.Total
}

// productCounts returns the counts of the product named name.
func (s *stats) productCounts(name string) inspection.Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.byProduct[name]; c != nil {
		return *c
	}
	return inspection.Counts{}
}

// total returns the number of results so far.
func (s *stats) total() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts.Total
}

// event records e as the last event.
func (s *stats) event(e inspection.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastEvent = &e
}

// cameraChanged records the camera's state and returns the previous one.
func (s *stats) cameraChanged(st inspection.CameraStatus) inspection.CameraState {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.camera.State
	s.camera = st
	return prev
}

// engineError records the engine's last failure.
func (s *stats) engineError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
}

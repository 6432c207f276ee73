package daemon

import (
	"sync"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// modelState is the configuration, model and thresholds in force. The
// inspect loop installs models (between two parts); Control sets runtime
// thresholds; everyone else reads a consistent snapshot.
type modelState struct {
	mu      sync.Mutex
	cfg     *config.Config
	model   *Model
	thr     thresholds
	runtime *thresholds // thresholds set at runtime, nil if none
}

// config returns the configuration in force.
func (s *modelState) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// snapshot returns the model, configuration and thresholds in force.
func (s *modelState) snapshot() (*Model, *config.Config, thresholds) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.model, s.cfg, s.thr
}

// install makes m (loaded for cfg) the model in force and returns the one
// it replaces and the thresholds now in force.
func (s *modelState) install(m *Model, cfg *config.Config) (*Model, thresholds) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.model
	s.model, s.cfg = m, cfg
	s.thr = resolveThresholds(m, cfg.Decision, s.runtime)
	return old, s.thr
}

// setRuntime overrides the image and/or pixel threshold (nil keeps one)
// and returns the thresholds now in force.
func (s *modelState) setRuntime(img, pixel *float64) thresholds {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := thresholds{}
	if s.runtime != nil {
		rt = *s.runtime
	}
	if img != nil {
		rt.image = *img
	}
	if pixel != nil {
		rt.pixel = *pixel
	}
	s.runtime = &rt
	if s.model != nil {
		s.thr = resolveThresholds(s.model, s.cfg.Decision, s.runtime)
	}
	return s.thr
}

// take removes the model in force and returns it, for closing.
func (s *modelState) take() *Model {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.model
	s.model = nil
	return m
}

// stats are the counters and recent history behind Status: parts by
// verdict, latencies, verdict times, the last event, the camera's state and
// the last engine error.
type stats struct {
	mu        sync.Mutex
	counts    inspection.Counts
	latencies ring
	rates     ring // verdict times, unix seconds
	lastEvent *inspection.Event
	camera    inspection.CameraStatus
	lastErr   string // last engine error
	lastErrAt time.Time
}

func newStats(now time.Time) *stats {
	return &stats{latencies: newRing(1024), rates: newRing(4096),
		camera: inspection.CameraStatus{State: inspection.CameraStarting, Since: now}}
}

// count records r and returns the number of results so far.
func (s *stats) count(r *inspection.Result) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Total++
	switch r.Verdict {
	case inspection.OK:
		s.counts.OK++
	case inspection.NG:
		s.counts.NG++
	default:
		s.counts.Error++
	}
	s.latencies.add(r.Latency.TotalMs)
	s.rates.add(float64(r.VerdictTime.UnixNano()) / 1e9)
	return s.counts.Total
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

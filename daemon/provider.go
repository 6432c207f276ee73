package daemon

import (
	"fmt"
	"time"
)

// fallbackReporter is implemented by engines that can run on the CPU
// when the configured execution provider is unavailable and
// model.allow_fallback allows it (infer.Engine): their Provider is then
// "cpu (fallback)", shown as is on the status page, in /api/status and in
// inspectd_model_info's provider label.
type fallbackReporter interface{ FallbackReason() error }

// warnFallback logs, at WARN, that m's engine runs on the CPU instead of
// the configured provider, with the reason; nothing when it does not.
func (d *Daemon) warnFallback(m *Model, requested string) {
	f, ok := m.Engine.(fallbackReporter)
	if !ok {
		return
	}
	if err := f.FallbackReason(); err != nil {
		d.log.Warn("MODEL RUNS ON THE CPU: model.provider is unavailable and model.allow_fallback = true; inspection is slower than configured",
			"requested", requested, "provider", m.Engine.Provider(), "bundle", m.Bundle.Dir, "reason", err)
	}
}

// While the model loads, Load asks systemd for more start-up time every
// loadExtendEvery, for at most loadExtendMax: the first start with
// model.provider = "tensorrt" builds the engine (minutes on a small
// Jetson, beyond the unit's TimeoutStartSec), later starts load it from
// the cache under state_dir. A load that hangs is still stopped by
// systemd once loadExtendMax has passed.
const (
	loadExtendEvery = 10 * time.Second
	loadExtendMax   = 30 * time.Minute
)

// extendStartup sends EXTEND_TIMEOUT_USEC (twice every, so one late
// message does not fail the start) with a STATUS line every interval
// until stop is called or max has passed. Nothing is sent for a load
// shorter than every.
func (d *Daemon) extendStartup(every, max time.Duration) (stop func()) {
	if d.notify == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(every)
		defer tick.Stop()
		deadline := time.Now().Add(max)
		start := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if now.After(deadline) {
					return
				}
				d.notifyState(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d\nSTATUS=loading the model for %s (a first TensorRT engine build takes minutes)",
					(2 * every).Microseconds(), now.Sub(start).Round(time.Second)))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

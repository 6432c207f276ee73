package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// errLoadRunning refuses a reload while an earlier one's model load (which
// may have been given up on) is still running: two engines at once could
// exhaust an edge box's memory.
var errLoadRunning = errors.New("the previous reload is still loading its model; try again when it has finished")

// Reload re-reads the configuration and the bundle, verifies both fully,
// builds and warms up the new engine off the hot path, and hands it to the
// inspect loop, which swaps it in between two parts. On any failure the
// running model and configuration stay, and the error says why.
//
// When ctx ends (or the daemon stops) before the model is loaded, Reload
// returns at once; the load stops at its next step and closes whatever it
// built — a model finished too late is never left open.
func (d *Daemon) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	err := d.reload(ctx)
	if err != nil {
		d.metrics.reloads.WithLabelValues("failed").Inc()
		d.log.Error("reload failed; keeping the running model and configuration", "err", err)
		d.emitEvent(inspection.Critical, inspection.EventReloadFailed, "reload failed, still running the previous model: "+err.Error(), nil)
		return err
	}
	d.metrics.reloads.WithLabelValues("ok").Inc()
	return nil
}

func (d *Daemon) reload(ctx context.Context) error {
	if d.life.Err() != nil {
		return errStopping
	}
	if d.loading.Load() {
		return errLoadRunning
	}
	cur := d.state.config()
	next := cur
	if d.deps.ReloadConfig != nil {
		c, err := d.deps.ReloadConfig()
		if err != nil {
			return err
		}
		next = c
	}
	if fixed := restartOnlyChanges(cur, next); len(fixed) > 0 {
		d.log.Warn("reload: these sections changed and take effect only after a restart", "sections", fixed)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWithLife := context.AfterFunc(d.life, cancel)
	defer stopWithLife()

	// The load runs in its own goroutine so that Reload answers by its
	// deadline; the unbuffered hand-over gives the model to exactly one
	// owner: this Reload, or — once ctx ended — the load itself, which
	// closes it.
	type loaded struct {
		m   *Model
		err error
	}
	handOver := make(chan loaded)
	d.loading.Store(true)
	d.loaders.Add(1)
	go func() {
		defer d.loaders.Done()
		defer d.loading.Store(false)
		m, err := LoadModel(ctx, next, d.deps.NewEngine)
		select {
		case handOver <- loaded{m, err}:
		case <-ctx.Done():
			if m != nil {
				if cerr := m.Close(); cerr != nil {
					d.log.Warn("closing a model loaded after its reload gave up", "err", cerr)
				}
				d.log.Warn("reload: a model finished loading after its reload gave up; closed it", "bundle", next.Model.Bundle)
			}
		}
	}()
	var l loaded
	select {
	case l = <-handOver:
	case <-ctx.Done():
		if d.life.Err() != nil {
			return errStopping
		}
		return fmt.Errorf("reload: %w", ctx.Err())
	}
	if l.err != nil {
		return l.err
	}
	// Keep the parts of the new configuration that apply at runtime.
	merged := *cur
	merged.Model, merged.Decision = next.Model, next.Decision
	if old := d.pending.Swap(&pendingModel{model: l.m, cfg: &merged}); old != nil {
		old.model.Close()
	}
	select {
	case d.swapped <- struct{}{}:
	default:
	}
	return nil
}

// restartOnlyChanges lists the sections of next that differ from cur but
// are applied only at start-up.
func restartOnlyChanges(cur, next *config.Config) []string {
	var out []string
	if cur.Station != next.Station {
		out = append(out, "station")
	}
	if cur.Camera != next.Camera {
		out = append(out, "camera")
	}
	if cur.Trigger != next.Trigger {
		out = append(out, "trigger")
	}
	if cur.HTTP != next.HTTP {
		out = append(out, "http")
	}
	if cur.Archive != next.Archive {
		out = append(out, "archive")
	}
	if fmt.Sprint(cur.GPIO) != fmt.Sprint(next.GPIO) {
		out = append(out, "gpio")
	}
	if fmt.Sprint(cur.MQTT) != fmt.Sprint(next.MQTT) {
		out = append(out, "mqtt")
	}
	if fmt.Sprint(cur.PLC) != fmt.Sprint(next.PLC) {
		out = append(out, "plc")
	}
	return out
}

// swapModel installs a pending model; called by the inspect loop between
// parts.
func (d *Daemon) swapModel() {
	p := d.pending.Swap(nil)
	if p == nil {
		return
	}
	old, thr := d.state.install(p.model, p.cfg)
	if old != nil {
		d.metrics.modelInfo.DeleteLabelValues(old.Bundle.Manifest.Product, old.Bundle.Hash, old.Engine.Provider())
		old.Close()
		debug.FreeOSMemory() // the old engine's memory, once per reload
	}
	m := p.model
	d.metrics.modelInfo.WithLabelValues(m.Bundle.Manifest.Product, m.Bundle.Hash, m.Engine.Provider()).Set(1)
	d.log.Info("reload done", "bundle", m.Bundle.Dir, "hash", short(m.Bundle.Hash), "provider", m.Engine.Provider(),
		"build", m.Build.Round(time.Millisecond), "warm_up", m.WarmUp.Round(time.Millisecond), "threshold", thr.image, "pixel_threshold", thr.pixel)
	d.warnFallback(m, p.cfg.Model.Provider)
	d.emitEvent(inspection.Info, inspection.EventReloadDone, fmt.Sprintf("now inspecting with %s (%s)", m.Bundle.Manifest.Product, short(m.Bundle.Hash)),
		map[string]string{"bundle_hash": m.Bundle.Hash})
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
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

	if err := sameProducts(cur, next); err != nil {
		return err
	}

	// The load runs in its own goroutine so that Reload answers by its
	// deadline; the unbuffered hand-over gives the models to exactly one
	// owner: this Reload, or — once ctx ended — the load itself, which
	// closes them.
	type loaded struct {
		swap *pendingSwap
		err  error
	}
	// Keep the parts of the new configuration that apply at runtime.
	merged := *cur
	merged.Model, merged.Decision, merged.Products = next.Model, next.Decision, next.Products
	handOver := make(chan loaded)
	d.loading.Store(true)
	d.loaders.Add(1)
	go func() {
		defer d.loaders.Done()
		defer d.loading.Store(false)
		swap, err := d.loadForReload(ctx, &merged)
		select {
		case handOver <- loaded{swap, err}:
		case <-ctx.Done():
			if swap != nil {
				swap.close(d)
				d.log.Warn("reload: models finished loading after their reload gave up; closed them", "bundle", next.Model.Bundle)
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
	d.queueSwap(l.swap)
	return nil
}

// sameProducts refuses a reload that changes the products' names or
// order: parts already bound to a product must find it after the reload.
func sameProducts(cur, next *config.Config) error {
	a, b := cur.ProductList(), next.ProductList()
	names := func(ps []config.Product) string {
		n := make([]string, len(ps))
		for i, p := range ps {
			n[i] = p.Name
		}
		return strings.Join(n, ", ")
	}
	if (len(cur.Products) == 0) != (len(next.Products) == 0) || names(a) != names(b) {
		return fmt.Errorf("reload: the [[product]] list changed (%q → %q); products are added, removed or renamed only at a restart", names(a), names(b))
	}
	return nil
}

// loadForReload loads, verifies and warms the new bundle of every product
// that is loaded now and verifies (bundle.Load) the bundle of every other
// one, with the merged configuration; on any failure it closes what it
// built and nothing changes.
func (d *Daemon) loadForReload(ctx context.Context, merged *config.Config) (*pendingSwap, error) {
	d.state.mu.Lock()
	products := append([]*product(nil), d.state.products...)
	loadedNow := make([]bool, len(products))
	for i, p := range products {
		loadedNow[i] = p.model != nil
	}
	d.state.mu.Unlock()
	list := merged.ProductList()
	swap := &pendingSwap{station: merged, products: map[*product]productUpdate{}}
	for i, p := range products {
		pcfg := productConfig(merged, list[i])
		if !loadedNow[i] {
			b, err := bundle.Load(pcfg.Model.Bundle)
			if err != nil {
				swap.close(d)
				return nil, d.productErr(merged, p, fmt.Errorf("model.bundle: %w", err))
			}
			swap.products[p] = productUpdate{cfg: pcfg, hash: b.Hash, dir: b.Dir}
			continue
		}
		m, mem, err := d.loadMeasured(ctx, pcfg)
		if err != nil {
			swap.close(d)
			return nil, d.productErr(merged, p, err)
		}
		swap.products[p] = productUpdate{model: m, cfg: pcfg, memMB: mem, hash: m.Bundle.Hash, dir: m.Bundle.Dir}
	}
	return swap, nil
}

// productErr names p's bundle key in err when the station has [[product]]s.
func (d *Daemon) productErr(cfg *config.Config, p *product, err error) error {
	if len(cfg.Products) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", productKey(cfg, p), err)
}

// productUpdate is a product's new configuration and, when it is loaded,
// its new model.
type productUpdate struct {
	model     *Model
	cfg       *config.Config
	memMB     float64
	hash, dir string
}

// pendingSwap is a set of product updates (a reload, SetProductBundle)
// waiting for the inspect loop; station is the new station configuration
// (nil: unchanged); done (if any) closes once it is installed.
type pendingSwap struct {
	station  *config.Config
	products map[*product]productUpdate
	done     chan struct{}
}

// close closes the models of a swap that is not installed.
func (s *pendingSwap) close(d *Daemon) {
	for _, u := range s.products {
		if u.model != nil {
			if err := u.model.Close(); err != nil {
				d.log.Warn("closing a model that was not installed", "err", err)
			}
		}
	}
	if s.done != nil {
		close(s.done)
	}
}

// queueSwap hands s to the inspect loop.
func (d *Daemon) queueSwap(s *pendingSwap) {
	d.pendingMu.Lock()
	d.pending = append(d.pending, s)
	d.hasPending.Store(true)
	d.pendingMu.Unlock()
	select {
	case d.swapped <- struct{}{}:
	default:
	}
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
	if fmt.Sprint(cur.HTTP) != fmt.Sprint(next.HTTP) { // HTTP holds a slice (open_paths)
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

// swapModel installs the pending swaps, in order; called by the inspect
// loop between parts.
func (d *Daemon) swapModel() {
	d.pendingMu.Lock()
	swaps := d.pending
	d.pending = nil
	d.hasPending.Store(false)
	d.pendingMu.Unlock()
	for _, s := range swaps {
		d.install(s)
	}
}

// install applies one swap and closes the models it replaces.
func (d *Daemon) install(s *pendingSwap) {
	type replaced struct {
		name string
		m    *Model
	}
	var old []replaced
	type done struct {
		p   *product
		m   *Model
		thr thresholds
	}
	var installed []done
	d.state.mu.Lock()
	if s.station != nil {
		d.state.cfg = s.station
	}
	for p, u := range s.products {
		p.cfg, p.hash, p.dir = u.cfg, u.hash, u.dir
		if u.model != nil {
			if p.model != nil {
				old = append(old, replaced{p.name, p.model})
			}
			p.model, p.memMB = u.model, u.memMB
		}
		p.resolve()
		if u.model != nil {
			installed = append(installed, done{p, u.model, p.thr})
		}
	}
	station := d.state.cfg
	d.state.mu.Unlock()
	for _, o := range old {
		d.metrics.modelInfo.DeleteLabelValues(o.name, o.m.Bundle.Hash, o.m.Engine.Provider())
		if err := o.m.Close(); err != nil {
			d.log.Warn("closing the replaced engine", "product", o.name, "err", err)
		}
	}
	if len(old) > 0 {
		debug.FreeOSMemory() // the old engines' memory, once per reload
	}
	for _, in := range installed {
		m := in.m
		d.metrics.modelInfo.WithLabelValues(in.p.name, m.Bundle.Hash, m.Engine.Provider()).Set(1)
		d.log.Info("reload done", "product", in.p.name, "bundle", m.Bundle.Dir, "hash", short(m.Bundle.Hash), "provider", m.Engine.Provider(),
			"build", m.Build.Round(time.Millisecond), "warm_up", m.WarmUp.Round(time.Millisecond), "threshold", in.thr.image, "pixel_threshold", in.thr.pixel)
		d.warnFallback(m, station.Model.Provider)
		d.emitEvent(inspection.Info, inspection.EventReloadDone, fmt.Sprintf("now inspecting %s with %s (%s)", in.p.name, m.Bundle.Manifest.Product, short(m.Bundle.Hash)),
			map[string]string{"bundle_hash": m.Bundle.Hash, "product": in.p.name})
	}
	if s.done != nil {
		close(s.done)
	}
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// ReasonProductUnavailable is the ERROR reason of a part whose product
// cannot be inspected: changeover.on_failure = "reject" holds an unknown
// or failed product, or the part's product failed to load.
const ReasonProductUnavailable = inspection.ReasonProductUnavailable

// product is one product of the station (a [[product]], or the one
// product of model.bundle) with its model when loaded. Its fields are
// guarded by modelState.mu; refs is atomic.
type product struct {
	name  string
	code  int
	index int            // position in [[product]], from 0
	cfg   *config.Config // the station's, with this product's bundle, decision and ROI
	// model is loaded, verified and warm; nil when not loaded.
	model *Model
	// hash and dir are those of the bundle verified last (at start-up, at
	// a load, or by SetProductBundle).
	hash, dir string
	memMB     float64
	// resident: loaded within changeover.memory_budget_mb at start-up (or
	// the active product), kept loaded; the others are closed once not
	// active and no queued part needs them.
	resident bool
	load     *productLoad // on-demand load in flight
	runtime  *thresholds  // SetThresholds while this product was active
	thr      thresholds
	refs     atomic.Int64 // accepted parts bound to this product not yet inspected
}

// resolve recomputes the thresholds in force (model loaded).
func (p *product) resolve() {
	if p.model != nil {
		p.thr = resolveThresholds(p.model, p.cfg.Decision, p.runtime)
	}
}

// productLoad is an on-demand load of a product's bundle; done closes
// when model or err is set.
type productLoad struct {
	done    chan struct{}
	started time.Time
	err     error
}

// selection is what a trigger binds its part to: a product, or — with
// changeover.on_failure = "reject" — a product that cannot be inspected
// (p nil, unavailable says why).
type selection struct {
	p           *product
	name        string
	unavailable string
	prev        *selection // the selection before this one (keep returns to it)
	source      string
}

// bind returns the active selection for a part being accepted and counts
// the part on its product, so that the product's engine stays loaded
// until the part is inspected (unbind).
func (d *Daemon) bind() *selection {
	sel := d.state.selected()
	if sel != nil && sel.p != nil {
		sel.p.refs.Add(1)
	}
	return sel
}

// unbind undoes bind once the part has its result (or was refused).
func (s *selection) unbind() {
	if s != nil && s.p != nil {
		s.p.refs.Add(-1)
	}
}

// productConfig is the station configuration as product p sees it.
func productConfig(station *config.Config, p config.Product) *config.Config {
	c := *station
	c.Model.Bundle = p.Bundle
	c.Decision = p.EffectiveDecision(station.Decision)
	c.Camera.ROI = p.EffectiveROI(station.Camera.ROI)
	return &c
}

// productKey names a product's bundle key in messages.
func productKey(cfg *config.Config, p *product) string {
	if len(cfg.Products) == 0 {
		return "model.bundle"
	}
	return fmt.Sprintf("product %q (product[%d].bundle)", p.name, p.index+1)
}

// loadProducts builds the registry at start-up: every product's bundle is
// verified (a station never starts on a bundle it could not verify); the
// initial product and then, in [[product]] order, those whose measured
// memory fits changeover.memory_budget_mb stay loaded and warm.
func (d *Daemon) loadProducts(ctx context.Context, cfg *config.Config) error {
	list := cfg.ProductList()
	initial := 0
	if cfg.Changeover.Initial != "" {
		for i, p := range list {
			if p.Name == cfg.Changeover.Initial {
				initial = i
			}
		}
	}
	products := make([]*product, len(list))
	for i, p := range list {
		products[i] = &product{name: p.Name, code: p.Code, index: i, cfg: productConfig(cfg, p)}
	}
	order := append([]*product{products[initial]}, products[:initial]...)
	order = append(order, products[initial+1:]...)
	budget := float64(cfg.Changeover.MemoryBudgetMB)
	used, fits := 0.0, true
	closeAll := func() {
		for _, p := range products {
			p.model.Close()
		}
	}
	for _, p := range order {
		m, mem, err := d.loadMeasured(ctx, p.cfg)
		if err != nil {
			closeAll()
			if len(cfg.Products) == 0 {
				return err
			}
			return fmt.Errorf("%s: %w", productKey(cfg, p), err)
		}
		if p.name == "" {
			p.name = m.Bundle.Manifest.Product
		}
		p.hash, p.dir, p.memMB = m.Bundle.Hash, m.Bundle.Dir, mem
		if p != products[initial] && (!fits || used+mem > budget) {
			// Verified, but outside the budget: loaded on demand.
			fits = false
			if cerr := m.Close(); cerr != nil {
				d.log.Warn("closing a verified bundle", "product", p.name, "err", cerr)
			}
			d.log.Info("product verified; loaded on demand (outside changeover.memory_budget_mb)", "product", p.name,
				"bundle", p.dir, "hash", short(p.hash), "memory_mb", round1(mem), "budget_mb", cfg.Changeover.MemoryBudgetMB)
			continue
		}
		used += mem
		p.model, p.resident = m, true
		p.resolve()
		d.metrics.modelInfo.WithLabelValues(p.name, m.Bundle.Hash, m.Engine.Provider()).Set(1)
		d.log.Info("model loaded", "product", p.name, "bundle", m.Bundle.Dir, "manifest_product", m.Bundle.Manifest.Product,
			"hash", short(m.Bundle.Hash), "provider", m.Engine.Provider(), "memory_mb", round1(mem),
			"build", m.Build.Round(time.Millisecond), "warm_up", m.WarmUp.Round(time.Millisecond),
			"threshold", p.thr.image, "pixel_threshold", p.thr.pixel, "threshold_source", p.thr.source)
		d.warnFallback(m, cfg.Model.Provider)
	}
	d.state.mu.Lock()
	d.state.products = products
	d.state.active = &selection{p: products[initial], name: products[initial].name, source: "start"}
	d.state.mu.Unlock()
	d.metrics.productSeries(products)
	d.metrics.setActiveProduct(products, products[initial].name)
	return nil
}

// loadMeasured loads the bundle of cfg (LoadModel) and measures the
// memory it took: the resident set's growth around the load, or — when
// that is not measurable (no /proc, or the garbage collector returned
// more than the load took) — the bundle's file sizes.
func (d *Daemon) loadMeasured(ctx context.Context, cfg *config.Config) (*Model, float64, error) {
	before := residentBytes()
	m, err := LoadModel(ctx, cfg, d.deps.NewEngine)
	if err != nil {
		return nil, 0, err
	}
	after := residentBytes()
	mem := float64(after-before) / (1 << 20)
	if before == 0 || after <= before {
		mem = float64(dirBytes(m.Bundle.Dir)) / (1 << 20)
	}
	return m, mem, nil
}

// residentBytes is the process's resident set size from /proc/self/statm,
// 0 when unknown.
func residentBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// dirBytes sums the sizes of the regular files below dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if info, ierr := e.Info(); ierr == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

var _ inspection.ProductSelector = (*Daemon)(nil)

// SelectProduct makes the product named name active for the parts
// triggered from now on; see inspection.ProductSelector. A product whose
// bundle is loaded is active at once (a pointer swap); another starts
// loading now and its parts wait in the inspect loop until it is ready.
// A selection from another source than changeover.source is refused with
// ErrProductSource and changes nothing; an unknown product is refused with
// ErrUnknownProduct and — with on_failure = "reject" — leaves the station
// rejecting every part until a good selection.
func (d *Daemon) SelectProduct(name, source string) error {
	return d.selectProduct(name, 0, source)
}

// SelectProductCode selects the product whose [[product]] code is code.
func (d *Daemon) SelectProductCode(code int, source string) error {
	return d.selectProduct("", code, source)
}

func (d *Daemon) selectProduct(name string, code int, source string) error {
	cfg := d.state.config()
	what := fmt.Sprintf("product %q", name)
	if name == "" {
		what = fmt.Sprintf("product code %d", code)
	}
	if want := cfg.Changeover.Source; source != want {
		err := fmt.Errorf("%s from %s: %w (changeover.source is %q)", what, source, inspection.ErrProductSource, want)
		d.refused(name, source, err, false)
		return err
	}
	d.state.mu.Lock()
	var p *product
	for _, q := range d.state.products {
		if (name != "" && q.name == name) || (name == "" && code != 0 && q.code == code) {
			p = q
		}
	}
	if p == nil {
		d.state.mu.Unlock()
		err := fmt.Errorf("%s from %s: %w; configured: %s", what, source, inspection.ErrUnknownProduct, strings.Join(d.ProductNames(), ", "))
		label := name
		if label == "" {
			label = strconv.Itoa(code)
		}
		d.refused(label, source, err, true)
		return err
	}
	cur := d.state.active
	if cur != nil && cur.p == p {
		d.state.mu.Unlock()
		return nil // already active: nothing changes, no event
	}
	sel := &selection{p: p, name: p.name, prev: cur, source: source}
	if cur != nil && cur.p == nil {
		sel.prev = cur.prev // never go back to an unavailable product
	}
	d.state.active = sel
	loaded := p.model != nil
	var load *productLoad
	if !loaded {
		load = d.startLoadLocked(p)
	}
	products := d.state.products
	d.state.mu.Unlock()

	d.metrics.setActiveProduct(products, p.name)
	fields := map[string]string{"product": p.name, "source": source, "bundle_hash": p.hash}
	if cur != nil {
		fields["previous"] = cur.name
	}
	if loaded {
		d.metrics.switches.WithLabelValues(source, "switched").Inc()
		d.log.Info("product switched", "product", p.name, "source", source, "previous", fields["previous"])
		d.emitEvent(inspection.Info, inspection.EventProductSwitched, fmt.Sprintf("product %s active (from %s; bundle loaded)", p.name, source), fields)
		return nil
	}
	d.metrics.switches.WithLabelValues(source, "loading").Inc()
	d.log.Info("product switched; loading its bundle on demand", "product", p.name, "source", source, "bundle", p.cfg.Model.Bundle)
	d.emitEvent(inspection.Info, inspection.EventProductSwitched, fmt.Sprintf("product %s active (from %s); its bundle is loading on demand, parts wait for it", p.name, source), fields)
	go d.reportLoad(p, load, source)
	return nil
}

// refused reports a refused selection; unknown applies on_failure.
func (d *Daemon) refused(name, source string, err error, unknown bool) {
	cfg := d.state.config()
	d.metrics.switches.WithLabelValues(source, "refused").Inc()
	fields := map[string]string{"product": name, "source": source, "reason": err.Error()}
	msg := "product selection refused: " + err.Error()
	if unknown && cfg.Changeover.OnFailure == config.OnFailureReject {
		d.state.mu.Lock()
		cur := d.state.active
		sel := &selection{name: name, unavailable: err.Error(), source: source, prev: cur}
		if cur != nil && cur.p == nil {
			sel.prev = cur.prev
		}
		d.state.active = sel
		products := d.state.products
		d.state.mu.Unlock()
		d.metrics.setActiveProduct(products, "")
		msg += "; changeover.on_failure is \"reject\": every part is rejected (product_unavailable) until a good selection"
	} else {
		msg += "; the station stays on its current product"
	}
	d.log.Warn("product selection refused", "product", name, "source", source, "err", err)
	d.emitEvent(inspection.Warning, inspection.EventProductRefused, msg, fields)
}

// startLoadLocked starts loading p's bundle unless a load is running, and
// returns the load. Called with modelState.mu held.
func (d *Daemon) startLoadLocked(p *product) *productLoad {
	if p.load != nil {
		return p.load
	}
	l := &productLoad{done: make(chan struct{}), started: time.Now()}
	p.load = l
	cfg := p.cfg
	d.loaders.Add(1)
	go func() {
		defer d.loaders.Done()
		m, mem, err := d.loadMeasured(d.life, cfg)
		d.state.mu.Lock()
		p.load = nil
		if err == nil && d.life.Err() == nil && p.cfg == cfg {
			p.model, p.memMB, p.hash, p.dir = m, mem, m.Bundle.Hash, m.Bundle.Dir
			p.resolve()
			m = nil
		} else if err == nil {
			err = errors.New("the product changed while its bundle loaded")
		}
		l.err = err
		d.state.mu.Unlock()
		if m != nil {
			m.Close()
		}
		close(l.done)
	}()
	return l
}

// reportLoad waits for an on-demand load started by a selection and
// reports its outcome; on failure it applies changeover.on_failure.
func (d *Daemon) reportLoad(p *product, l *productLoad, source string) {
	<-l.done
	wait := time.Since(l.started)
	d.metrics.switchWait.Observe(wait.Seconds())
	if l.err == nil {
		d.log.Info("product bundle loaded on demand", "product", p.name, "took", wait.Round(time.Millisecond))
		d.emitEvent(inspection.Info, inspection.EventProductSwitched,
			fmt.Sprintf("product %s ready: its bundle loaded on demand in %s (the line waited for it)", p.name, wait.Round(time.Millisecond)),
			map[string]string{"product": p.name, "source": source, "bundle_hash": p.hash, "wait_ms": strconv.FormatFloat(ms(wait), 'f', 1, 64)})
		return
	}
	if d.life.Err() != nil {
		return
	}
	cfg := d.state.config()
	d.metrics.switches.WithLabelValues(source, "failed").Inc()
	reason := l.err.Error()
	d.state.mu.Lock()
	policy := cfg.Changeover.OnFailure
	cur := d.state.active
	back := ""
	if cur != nil && cur.p == p {
		if policy == config.OnFailureReject || cur.prev == nil {
			d.state.active = &selection{name: p.name, unavailable: reason, source: source, prev: cur.prev}
		} else {
			d.state.active = cur.prev
			back = cur.prev.name
		}
	}
	active := d.state.active
	products := d.state.products
	d.state.mu.Unlock()
	activeName := ""
	if active != nil && active.p != nil {
		activeName = active.name
	}
	d.metrics.setActiveProduct(products, activeName)
	msg := fmt.Sprintf("product %s failed to load its bundle: %s; parts triggered for it are rejected (product_unavailable)", p.name, reason)
	if back != "" {
		msg += "; changeover.on_failure is \"keep\": back to product " + back
	} else if cur != nil && cur.p == p {
		msg += "; every part is rejected until a good selection"
	}
	d.log.Error("product failed", "product", p.name, "source", source, "err", l.err)
	d.emitEvent(inspection.Critical, inspection.EventProductFailed, msg,
		map[string]string{"product": p.name, "source": source, "reason": reason})
}

// modelFor returns the model to inspect a part of sel with, waiting for
// an on-demand load (the wait is returned), or the reason the part cannot
// be inspected. Only the inspect loop calls it.
func (d *Daemon) modelFor(abandon context.Context, sel *selection) (*Model, *config.Config, thresholds, time.Duration, string) {
	if sel == nil || sel.p == nil {
		reason := "no product selected"
		if sel != nil {
			reason = fmt.Sprintf("product %s is unavailable: %s", sel.name, sel.unavailable)
		}
		return nil, d.state.config(), thresholds{}, 0, reason
	}
	p := sel.p
	d.state.mu.Lock()
	if p.model != nil {
		defer d.state.mu.Unlock()
		return p.model, p.cfg, p.thr, 0, ""
	}
	l := d.startLoadLocked(p)
	d.state.mu.Unlock()
	start := time.Now()
	select {
	case <-l.done:
	case <-abandon.Done():
		return nil, p.cfg, thresholds{}, time.Since(start), fmt.Sprintf("the daemon stopped while product %s loaded", p.name)
	}
	wait := time.Since(start)
	d.metrics.partWait.Observe(wait.Seconds())
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	if p.model == nil {
		why := "its bundle failed to load"
		if l.err != nil {
			why = l.err.Error()
		}
		return nil, p.cfg, thresholds{}, wait, fmt.Sprintf("product %s: %s", p.name, why)
	}
	return p.model, p.cfg, p.thr, wait, ""
}

// evict closes the models of products loaded on demand that are no
// longer active and that no queued part needs. Only the inspect loop
// calls it (it owns the engines).
func (d *Daemon) evict() {
	var closing []*product
	var models []*Model
	d.state.mu.Lock()
	for _, p := range d.state.products {
		if p.model == nil || p.resident || (d.state.active != nil && d.state.active.p == p) || p.refs.Load() > 0 {
			continue
		}
		closing = append(closing, p)
		models = append(models, p.model)
		p.model = nil
	}
	d.state.mu.Unlock()
	for i, m := range models {
		d.metrics.modelInfo.DeleteLabelValues(closing[i].name, m.Bundle.Hash, m.Engine.Provider())
		if err := m.Close(); err != nil {
			d.log.Warn("closing an unloaded product's engine", "product", closing[i].name, "err", err)
		}
		d.log.Info("product bundle unloaded (outside changeover.memory_budget_mb, no longer active)", "product", closing[i].name)
	}
}

// ProductNames returns the station's products in configuration order.
func (d *Daemon) ProductNames() []string {
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	out := make([]string, len(d.state.products))
	for i, p := range d.state.products {
		out[i] = p.name
	}
	return out
}

// ProductBundle returns the bundle directory and hash product runs (or
// would run when selected); ok is false for an unknown product.
func (d *Daemon) ProductBundle(product string) (dir, hash string, ok bool) {
	p := d.state.lookup(product)
	if p == nil {
		return "", "", false
	}
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	return p.dir, p.hash, true
}

// VerifyBundle fully checks the bundle in dir the way a switch to it
// would: bundle.Load with every checksum, the engine built with the
// daemon's engine factory and model settings, a warm-up frame of the
// camera's ROI; then it closes the engine. It returns the manifest's
// product and the bundle hash.
func (d *Daemon) VerifyBundle(ctx context.Context, dir string) (product, hash string, err error) {
	cfg := *d.state.config()
	cfg.Model.Bundle = dir
	m, err := LoadModel(ctx, &cfg, d.deps.NewEngine)
	if err != nil {
		return "", "", err
	}
	product, hash = m.Bundle.Manifest.Product, m.Bundle.Hash
	if cerr := m.Close(); cerr != nil {
		d.log.Warn("closing a verified bundle's engine", "bundle", dir, "err", cerr)
	}
	return product, hash, nil
}

// SetProductBundle makes the bundle in dir product's model: it is loaded,
// verified and warmed off the hot path (like Reload), then the inspect
// loop swaps it in between two parts and closes the old engine; every
// other product is kept. On failure nothing changes. It returns once the
// swap is done (or ctx ends: the swap still happens).
func (d *Daemon) SetProductBundle(ctx context.Context, name, dir string) (inspection.ProductStatus, error) {
	p := d.state.lookup(name)
	if p == nil {
		return inspection.ProductStatus{}, fmt.Errorf("product %q: %w; configured: %s", name, inspection.ErrUnknownProduct, strings.Join(d.ProductNames(), ", "))
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.life.Err() != nil {
		return inspection.ProductStatus{}, errStopping
	}
	d.state.mu.Lock()
	pcfg := *p.cfg
	d.state.mu.Unlock()
	pcfg.Model.Bundle = dir
	m, mem, err := d.loadMeasured(ctx, &pcfg)
	if err != nil {
		return inspection.ProductStatus{}, fmt.Errorf("product %s: %w", name, err)
	}
	done := make(chan struct{})
	d.queueSwap(&pendingSwap{products: map[*product]productUpdate{p: {model: m, cfg: &pcfg, memMB: mem, hash: m.Bundle.Hash, dir: m.Bundle.Dir}}, done: done})
	select {
	case <-done:
	case <-ctx.Done():
	}
	return d.productStatus(p), nil
}

// productStatus describes p.
func (d *Daemon) productStatus(p *product) inspection.ProductStatus {
	d.state.mu.Lock()
	active := d.state.active != nil && d.state.active.p == p
	st := inspection.ProductStatus{Name: p.name, Code: p.code, BundleHash: p.hash, BundleDir: p.dir,
		Active: active, Loaded: p.model != nil, MemoryMB: round1(p.memMB)}
	d.state.mu.Unlock()
	st.Counts = d.stats.productCounts(p.name)
	return st
}

// productsStatus is Status.Products.
func (d *Daemon) productsStatus() inspection.ProductsStatus {
	d.state.mu.Lock()
	cfg, products, active := d.state.cfg, d.state.products, d.state.active
	d.state.mu.Unlock()
	s := inspection.ProductsStatus{Source: cfg.Changeover.Source, OnFailure: cfg.Changeover.OnFailure, Products: []inspection.ProductStatus{}}
	if active != nil {
		s.Active = active.name
		if active.p == nil {
			s.Unavailable = active.unavailable
		}
	}
	for _, p := range products {
		s.Products = append(s.Products, d.productStatus(p))
	}
	return s
}

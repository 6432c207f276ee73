package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/preprocess"
)

// stampingFactory builds fake engines whose alignment is the stamp of
// their bundle (Tx = stamp), so that every result shows which product's
// model produced it; slow bundles take that long to build.
type stampingFactory struct {
	mu     sync.Mutex
	stamps map[string]float64 // bundle dir → stamp
	slow   map[string]time.Duration
	// delay is each part's inspection time.
	delay time.Duration
}

func (f *stampingFactory) build(b *bundle.Bundle, m config.Model) (inspection.Engine, error) {
	f.mu.Lock()
	stamp, delay := f.stamps[b.Dir], f.slow[b.Dir]
	f.mu.Unlock()
	time.Sleep(delay)
	return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, transform: preprocess.Transform{Tx: stamp}, delay: f.delay}, nil
}

// changeover is a harness over a station with [[product]]s gear, shaft and
// cam (stamps 0.1, 0.2, 0.3), selected over HTTP.
type changeover struct {
	*harness
	dirs    map[string]string
	stamps  map[string]float64
	factory *stampingFactory
}

func startChangeover(t *testing.T, budgetMB int, onFailure string, slow map[string]time.Duration) *changeover {
	return startChangeoverDelay(t, budgetMB, onFailure, slow, 0)
}

// startChangeoverDelay is startChangeover with engines that take delay per
// part.
func startChangeoverDelay(t *testing.T, budgetMB int, onFailure string, slow map[string]time.Duration, delay time.Duration) *changeover {
	t.Helper()
	c := &changeover{dirs: map[string]string{}, stamps: map[string]float64{}, factory: &stampingFactory{stamps: map[string]float64{}, slow: map[string]time.Duration{}, delay: delay}}
	root := t.TempDir()
	var products []config.Product
	for i, name := range []string{"gear", "shaft", "cam"} {
		dir := writeBundle(t, filepath.Join(root, name), uint64(i+1))
		c.dirs[name], c.stamps[name] = dir, 0.1*float64(i+1)
		c.factory.stamps[dir], c.factory.slow[dir] = c.stamps[name], slow[name]
		products = append(products, config.Product{Name: name, Code: i + 1, Bundle: dir})
	}
	c.harness = startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.Config.Products = products
		d.Config.Model.Bundle = ""
		d.Config.Changeover.Source = config.ChangeoverHTTP
		d.Config.Changeover.MemoryBudgetMB = budgetMB
		d.Config.Changeover.OnFailure = onFailure
		d.NewEngine = c.factory.build
	})
	return c
}

// events returns the collected events of kind.
func (c *collector) eventsOf(kind string) []inspection.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []inspection.Event
	for _, e := range c.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits until an event of kind arrived (one for which ok holds,
// when ok is given).
func (c *collector) waitEvent(t *testing.T, kind string, timeout time.Duration, ok ...func(inspection.Event) bool) inspection.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, e := range c.eventsOf(kind) {
			if len(ok) == 0 || ok[0](e) {
				return e
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no %s event within %s; events %v", kind, timeout, c.eventKinds())
	return inspection.Event{}
}

// TestChangeoverAt20PartsPerSecond: parts arrive at 20/s on average with
// random spacing and the product is switched every 7 parts; every result
// carries the product active when its part was triggered, was produced by
// that product's model (its stamp), and no part is an ERROR. Each part
// takes 35 ms to inspect, so that with the random spacing parts are still
// queued or in flight when the product changes. A switch to a preloaded
// bundle costs less than one part time (50 ms).
func TestChangeoverAt20PartsPerSecond(t *testing.T) {
	c := startChangeoverDelay(t, 1024, config.OnFailureKeep, nil, 35*time.Millisecond)
	for _, p := range c.d.Status().Products.Products {
		if !p.Loaded || p.MemoryMB <= 0 {
			t.Fatalf("product %s not preloaded within the budget: %+v", p.Name, p)
		}
	}
	rng := rand.New(rand.NewPCG(26, 7))
	order := []string{"gear", "shaft", "cam"}
	const n = 140
	want := make([]string, n)
	var switchMax time.Duration
	switches := 0
	active := "gear"
	for i := range n {
		// 20 parts/s on average: 10 to 90 ms apart.
		gap := time.Duration(10+rng.IntN(81)) * time.Millisecond
		if i > 0 && i%7 == 0 {
			// The switch comes right after the previous trigger, while
			// that part still waits for its frame or for the engine.
			early := time.Duration(rng.IntN(3)) * time.Millisecond
			time.Sleep(early)
			gap -= early
			next := order[(i/7)%len(order)]
			start := time.Now()
			if err := c.d.SelectProduct(next, inspection.ProductSourceHTTP); err != nil {
				t.Fatalf("part %d: select %s: %v", i, next, err)
			}
			switchMax = max(switchMax, time.Since(start))
			if next != active {
				switches++
			}
			active = next
			time.Sleep(gap) // the rest of the gap before this part
		}
		want[i] = active
		c.trigger(fmt.Sprintf("P%03d", i))
		if (i+1)%7 == 0 {
			continue // the next iteration switches first
		}
		time.Sleep(gap)
	}
	res := c.sink.waitResults(t, n, 20*time.Second)
	for i, r := range res {
		if r.PartID != fmt.Sprintf("P%03d", i) {
			t.Fatalf("result %d is part %s (order)", i, r.PartID)
		}
		if r.Verdict == inspection.Error {
			t.Errorf("part %s: ERROR %s: %s", r.PartID, r.Reason, r.Detail)
		}
		if r.Model.Product != want[i] {
			t.Errorf("part %s: product %q, but %q was active at its trigger", r.PartID, r.Model.Product, want[i])
		}
		if r.Alignment.Tx != c.stamps[want[i]] {
			t.Errorf("part %s: inspected by the model stamped %v, want %s's (%v)", r.PartID, r.Alignment.Tx, want[i], c.stamps[want[i]])
		}
		if r.Latency.ModelWaitMs != 0 {
			t.Errorf("part %s waited %v ms for a preloaded bundle", r.PartID, r.Latency.ModelWaitMs)
		}
	}
	if got := len(c.sink.eventsOf(inspection.EventProductSwitched)); got != switches {
		t.Errorf("%d product_switched events for %d switches", got, switches)
	}
	inFlight := 0
	for i, r := range res {
		if i > 0 && want[i] != want[i-1] && res[i-1].VerdictTime.After(r.TriggerTime) {
			inFlight++ // the previous product's last part was not done at the switch
		}
	}
	if inFlight == 0 {
		t.Errorf("no switch happened with a part of the previous product still in flight; the test proves nothing")
	}
	if switchMax >= 50*time.Millisecond {
		t.Errorf("slowest switch to a preloaded bundle took %s, more than a part time (50 ms)", switchMax)
	}
	t.Logf("%d parts, %d switches (%d with the previous product's part in flight), slowest switch %s", n, switches, inFlight, switchMax)
	st := c.d.Status().Products
	var total uint64
	for _, p := range st.Products {
		total += p.Counts.Total
		if p.Counts.Total == 0 || p.Counts.Error != 0 {
			t.Errorf("product %s counts %+v", p.Name, p.Counts)
		}
	}
	if total != n || st.Active != active {
		t.Errorf("status: %d parts counted over the products (want %d), active %q (want %q)", total, n, st.Active, active)
	}
}

// TestProductRefused: an unknown product is refused with ErrUnknownProduct
// and a product_refused event naming product, source and reason; with
// on_failure "keep" the station stays on its product (no ERROR); a
// selection from another source is refused with ErrProductSource.
func TestProductRefused(t *testing.T) {
	c := startChangeover(t, 1024, config.OnFailureKeep, nil)
	err := c.d.SelectProduct("nope", inspection.ProductSourceHTTP)
	if !errors.Is(err, inspection.ErrUnknownProduct) {
		t.Fatalf("unknown product: %v, want ErrUnknownProduct", err)
	}
	err = c.d.SelectProduct("shaft", inspection.ProductSourceMQTT)
	if !errors.Is(err, inspection.ErrProductSource) || !strings.Contains(err.Error(), `changeover.source is "http"`) {
		t.Fatalf("wrong source: %v, want ErrProductSource naming changeover.source", err)
	}
	if err := c.d.SelectProductCode(9, inspection.ProductSourceHTTP); !errors.Is(err, inspection.ErrUnknownProduct) {
		t.Fatalf("unknown code: %v", err)
	}
	for i := range 5 {
		c.trigger(fmt.Sprintf("K%d", i))
	}
	for _, r := range c.sink.waitResults(t, 5, 5*time.Second) {
		if r.Verdict == inspection.Error || r.Model.Product != "gear" {
			t.Errorf("part %s: %s %s product %s; want gear, no ERROR", r.PartID, r.Verdict, r.Reason, r.Model.Product)
		}
	}
	ev := c.sink.eventsOf(inspection.EventProductRefused)
	if len(ev) != 3 {
		t.Fatalf("%d product_refused events, want 3", len(ev))
	}
	if f := ev[0].Fields; f["product"] != "nope" || f["source"] != "http" || !strings.Contains(f["reason"], "unknown product") {
		t.Errorf("refused event fields %v", f)
	}
	if f := ev[1].Fields; f["product"] != "shaft" || f["source"] != "mqtt" || !strings.Contains(f["reason"], "not the configured product source") {
		t.Errorf("wrong-source event fields %v", f)
	}
	if st := c.d.Status(); st.Products.Active != "gear" || st.Products.Unavailable != "" || !st.Healthy {
		t.Errorf("status after refusals: %+v healthy %v %v", st.Products, st.Healthy, st.Problems)
	}
}

// TestProductRefusedReject: with on_failure "reject" an unknown product
// makes every part an ERROR product_unavailable until a good selection.
func TestProductRefusedReject(t *testing.T) {
	c := startChangeover(t, 1024, config.OnFailureReject, nil)
	if err := c.d.SelectProduct("nope", inspection.ProductSourceHTTP); !errors.Is(err, inspection.ErrUnknownProduct) {
		t.Fatalf("unknown product: %v", err)
	}
	for i := range 3 {
		c.trigger(fmt.Sprintf("R%d", i))
	}
	c.sink.waitResults(t, 3, 5*time.Second)
	if st := c.d.Status(); st.Products.Unavailable == "" || st.Healthy {
		t.Errorf("status while unavailable: %+v healthy %v", st.Products, st.Healthy)
	}
	if err := c.d.SelectProduct("cam", inspection.ProductSourceHTTP); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.trigger(fmt.Sprintf("G%d", i))
	}
	res := c.sink.waitResults(t, 6, 5*time.Second)
	for i, r := range res {
		if i < 3 {
			if r.Verdict != inspection.Error || r.Reason != inspection.ReasonProductUnavailable || r.Model.Product != "nope" || !strings.Contains(r.Detail, "unknown product") {
				t.Errorf("part %s: %s %s %q product %s; want ERROR product_unavailable for nope", r.PartID, r.Verdict, r.Reason, r.Detail, r.Model.Product)
			}
			continue
		}
		if r.Verdict == inspection.Error || r.Model.Product != "cam" || r.Alignment.Tx != c.stamps["cam"] {
			t.Errorf("part %s after a good selection: %s %s product %s", r.PartID, r.Verdict, r.Reason, r.Model.Product)
		}
	}
}

// TestProductOnDemandWait: a product outside the memory budget loads when
// selected; its parts wait for it and report the wait (result, event);
// once another product is active it is unloaded again.
func TestProductOnDemandWait(t *testing.T) {
	const build = 150 * time.Millisecond
	c := startChangeover(t, 0, config.OnFailureKeep, map[string]time.Duration{"shaft": build})
	if st := c.d.Status().Products; !st.Products[0].Loaded || st.Products[1].Loaded || st.Products[2].Loaded {
		t.Fatalf("budget 0: only the initial product is loaded; got %+v", st.Products)
	}
	if err := c.d.SelectProduct("shaft", inspection.ProductSourceHTTP); err != nil {
		t.Fatal(err)
	}
	c.trigger("W0")
	c.trigger("W1")
	res := c.sink.waitResults(t, 2, 10*time.Second)
	if r := res[0]; r.Verdict == inspection.Error || r.Model.Product != "shaft" || r.Alignment.Tx != c.stamps["shaft"] {
		t.Fatalf("first shaft part: %s %s %q product %s stamp %v", r.Verdict, r.Reason, r.Detail, r.Model.Product, r.Alignment.Tx)
	}
	if w := res[0].Latency.ModelWaitMs; w < float64(build.Milliseconds())/2 {
		t.Errorf("first part waited %v ms for a bundle that takes %s to build; want it reported", w, build)
	}
	if w := res[1].Latency.ModelWaitMs; w != 0 {
		t.Errorf("second part waited %v ms; the bundle was loaded", w)
	}
	ready := c.sink.waitEvent(t, inspection.EventProductSwitched, 5*time.Second, func(e inspection.Event) bool { return e.Fields["wait_ms"] != "" })
	if !strings.Contains(ready.Message, "loaded on demand in") || ready.Fields["wait_ms"] == "" {
		t.Errorf("last product_switched event %q %v does not report the wait", ready.Message, ready.Fields)
	}
	if err := c.d.SelectProduct("gear", inspection.ProductSourceHTTP); err != nil {
		t.Fatal(err)
	}
	c.trigger("W2")
	c.sink.waitResults(t, 3, 5*time.Second)
	deadline := time.Now().Add(2 * time.Second)
	for c.d.Status().Products.Products[1].Loaded {
		if time.Now().After(deadline) {
			t.Fatal("shaft (outside the budget) still loaded after gear became active")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProductCorruptBundleOnDemand: a bundle corrupted on disk after
// start-up fails its on-demand load: product_failed names the product and
// the reason; with "keep" the station goes back to the previous product,
// whose model is untouched; with "reject" every part is rejected until a
// good selection.
func TestProductCorruptBundleOnDemand(t *testing.T) {
	for _, policy := range []string{config.OnFailureKeep, config.OnFailureReject} {
		t.Run(policy, func(t *testing.T) {
			c := startChangeover(t, 0, policy, nil)
			gearHash := c.d.Status().Model.BundleHash
			f := filepath.Join(c.dirs["shaft"], "localize.onnx")
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := c.d.SelectProduct("shaft", inspection.ProductSourceHTTP); err != nil {
				t.Fatal(err)
			}
			ev := c.sink.waitEvent(t, inspection.EventProductFailed, 10*time.Second)
			if ev.Fields["product"] != "shaft" || ev.Fields["source"] != "http" || !strings.Contains(ev.Fields["reason"], "localize.onnx") {
				t.Errorf("product_failed fields %v", ev.Fields)
			}
			c.trigger("C0")
			r := c.sink.waitResults(t, 1, 5*time.Second)[0]
			st := c.d.Status()
			switch policy {
			case config.OnFailureKeep:
				if r.Verdict == inspection.Error || r.Model.Product != "gear" || r.Model.BundleHash != gearHash || r.Alignment.Tx != c.stamps["gear"] {
					t.Errorf("after a failed switch with keep: %s %s %q product %s", r.Verdict, r.Reason, r.Detail, r.Model.Product)
				}
				if st.Products.Active != "gear" || !st.Products.Products[0].Loaded || st.Model.BundleHash != gearHash {
					t.Errorf("status after keep: %+v", st.Products)
				}
			case config.OnFailureReject:
				if r.Verdict != inspection.Error || r.Reason != inspection.ReasonProductUnavailable || r.Model.Product != "shaft" {
					t.Errorf("after a failed switch with reject: %s %s product %s", r.Verdict, r.Reason, r.Model.Product)
				}
				if !st.Products.Products[0].Loaded || st.Products.Unavailable == "" {
					t.Errorf("status after reject: %+v", st.Products)
				}
				if err := c.d.SelectProduct("gear", inspection.ProductSourceHTTP); err != nil {
					t.Fatal(err)
				}
				c.trigger("C1")
				if r := c.sink.waitResults(t, 2, 5*time.Second)[1]; r.Verdict == inspection.Error || r.Model.BundleHash != gearHash {
					t.Errorf("after a good selection: %s %s", r.Verdict, r.Reason)
				}
			}
		})
	}
}

// TestSetThresholdsActiveProductOnly: runtime thresholds apply to the
// product active when they are set; the others keep theirs.
func TestSetThresholdsActiveProductOnly(t *testing.T) {
	c := startChangeover(t, 1024, config.OnFailureKeep, nil)
	v := 0.9
	if err := c.d.SetThresholds(&v, nil); err != nil {
		t.Fatal(err)
	}
	c.trigger("T0")
	if err := c.d.SelectProduct("shaft", inspection.ProductSourceHTTP); err != nil {
		t.Fatal(err)
	}
	c.trigger("T1")
	res := c.sink.waitResults(t, 2, 5*time.Second)
	if res[0].Threshold != 0.9 || res[1].Threshold != 0.5 {
		t.Errorf("thresholds gear %v (want 0.9, set at runtime), shaft %v (want 0.5, its own)", res[0].Threshold, res[1].Threshold)
	}
}

// TestSetProductBundle swaps one product's bundle between two parts and
// keeps the others; a bad bundle changes nothing.
func TestSetProductBundle(t *testing.T) {
	c := startChangeover(t, 1024, config.OnFailureKeep, nil)
	next := writeBundle(t, filepath.Join(t.TempDir(), "gear2"), 9)
	c.factory.mu.Lock()
	c.factory.stamps[next] = 0.9
	c.factory.mu.Unlock()
	if _, err := c.d.SetProductBundle(context.Background(), "gear", filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("SetProductBundle with a missing bundle succeeded")
	}
	st, err := c.d.SetProductBundle(context.Background(), "gear", next)
	if err != nil {
		t.Fatal(err)
	}
	if dir, hash, ok := c.d.ProductBundle("gear"); !ok || dir != next || hash != st.BundleHash || !st.Loaded {
		t.Errorf("ProductBundle(gear) = %s %s %v; status %+v", dir, hash, ok, st)
	}
	c.trigger("S0")
	if r := c.sink.waitResults(t, 1, 5*time.Second)[0]; r.Alignment.Tx != 0.9 || r.Model.BundleHash != st.BundleHash {
		t.Errorf("part after SetProductBundle: stamp %v hash %s", r.Alignment.Tx, short(r.Model.BundleHash))
	}
	if got := c.d.ProductNames(); strings.Join(got, ",") != "gear,shaft,cam" {
		t.Errorf("ProductNames %v", got)
	}
	if p, h, err := c.d.VerifyBundle(context.Background(), c.dirs["cam"]); err != nil || p == "" || h == "" {
		t.Errorf("VerifyBundle: %q %q %v", p, h, err)
	}
}

// BenchmarkProductSwitch measures a switch between two preloaded
// products (SelectProduct: selection, event, metrics): switch-us is the
// cost per switch, to compare with a part time (50 ms at 20 parts/s).
func BenchmarkProductSwitch(b *testing.B) {
	cfg := testConfig(b, "", config.TriggerSoftware)
	root := b.TempDir()
	for i, name := range []string{"gear", "shaft"} {
		cfg.Products = append(cfg.Products, config.Product{Name: name, Bundle: writeBundle(b, filepath.Join(root, name), uint64(i+1))})
	}
	cfg.Changeover.Source = config.ChangeoverHTTP
	d, err := New(Deps{Config: cfg, Camera: newFakeCamera(scene(64, 64, 0, 0, 0, 0), time.Millisecond), NewEngine: engineFactory(nil)})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	names := []string{"gear", "shaft"}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := d.SelectProduct(names[(i+1)%2], inspection.ProductSourceHTTP); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "switch-us")
}

// TestReloadWithProducts: a reload (SIGHUP) reloads the bundle of every
// loaded product with the new configuration and keeps the active product;
// a reload that renames the products is refused and changes nothing.
func TestReloadWithProducts(t *testing.T) {
	c := startChangeover(t, 1024, config.OnFailureKeep, nil)
	if err := c.d.SelectProduct("shaft", inspection.ProductSourceHTTP); err != nil {
		t.Fatal(err)
	}
	next := *c.cfg
	next.Products = append([]config.Product(nil), c.cfg.Products...)
	thr := 0.8
	next.Products[1].Decision.Threshold = &thr
	c.d.deps.ReloadConfig = func() (*config.Config, error) { return &next, nil }
	if err := c.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.trigger("H0")
	if r := c.sink.waitResults(t, 1, 5*time.Second)[0]; r.Model.Product != "shaft" || r.Threshold != 0.8 {
		t.Errorf("after reload: product %s threshold %v; want shaft with its new threshold 0.8", r.Model.Product, r.Threshold)
	}
	renamed := next
	renamed.Products = append([]config.Product(nil), next.Products...)
	renamed.Products[2].Name = "camshaft"
	c.d.deps.ReloadConfig = func() (*config.Config, error) { return &renamed, nil }
	if err := c.d.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "only at a restart") {
		t.Errorf("reload renaming a product: %v; want it refused", err)
	}
	if got := strings.Join(c.d.ProductNames(), ","); got != "gear,shaft,cam" {
		t.Errorf("products after a refused reload: %s", got)
	}
}

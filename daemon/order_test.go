package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// slowEngines returns engines that take delay per part.
func slowEngines(delay time.Duration, closed *atomic.Int32) EngineFactory {
	return func(b *bundleT, m config.Model) (inspection.Engine, error) {
		return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, delay: delay, closed: closed}, nil
	}
}

// checkOnceInOrder fails unless every sink received exactly the parts in
// order, each once, with result sequence numbers 1, 2, 3…
func checkOnceInOrder(t *testing.T, order []string, sinks ...*collector) {
	t.Helper()
	for _, s := range sinks {
		res := s.snapshot()
		if len(res) != len(order) {
			t.Errorf("sink %p: %d results for %d accepted triggers", s, len(res), len(order))
		}
		for i := range min(len(res), len(order)) {
			if res[i].PartID != order[i] {
				t.Fatalf("sink %p: result %d is part %s (%s %s), want part %s: results left trigger order",
					s, i, res[i].PartID, res[i].Verdict, res[i].Reason, order[i])
			}
			if res[i].Seq != uint64(i+1) {
				t.Fatalf("sink %p: result %d has seq %d, want %d", s, i, res[i].Seq, i+1)
			}
		}
	}
}

// TestBurstOneResultPerTriggerInOrder fires hundreds of triggers from
// four goroutines, far faster than inference and past the trigger queue
// (overload), reloads the model in the middle and stops the daemon (SIGTERM)
// while triggers keep coming and parts are still queued past half the
// shutdown timeout. Every sink must receive exactly the accepted triggers,
// in the order they were accepted, each once; refused triggers (after the
// stop, or beyond the overload bound) get nothing.
func TestBurstOneResultPerTriggerInOrder(t *testing.T) {
	second := newCollector()
	var next *config.Config
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.Sinks = append(d.Sinks, second)
		d.NewEngine = slowEngines(15*time.Millisecond, nil)
		d.TriggerQueue = 16
		d.ShutdownTimeout = 200 * time.Millisecond
		d.ReloadConfig = func() (*config.Config, error) { return next, nil }
	})
	oldHash := h.d.Status().Model.BundleHash
	c := *h.cfg
	c.Model.Bundle = writeBundle(t, filepath.Join(t.TempDir(), "v2"), 7)
	next = &c

	var accepted sync.Map
	var nAccepted, nRefused, nFull atomic.Int32
	var stopping atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			after := 0 // triggers fired after the stop began
			for i := 0; after < 20; i++ {
				if stopping.Load() {
					after++
				}
				id := fmt.Sprintf("w%d-%04d", w, i)
				if err := h.d.Trigger(id, inspection.TriggerSoftware); err != nil {
					switch {
					case errors.Is(err, errStopping):
						nRefused.Add(1)
					case errors.Is(err, errIntakeFull):
						nFull.Add(1)
					default:
						t.Errorf("trigger %s refused: %v", id, err)
					}
				} else {
					accepted.Store(id, true)
					nAccepted.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	waitAccepted := func(n int32) {
		for nAccepted.Load() < n {
			time.Sleep(time.Millisecond)
		}
	}
	waitAccepted(100)
	reloadErr := h.d.Reload(context.Background())
	waitAccepted(nAccepted.Load() + 100)
	stopping.Store(true)
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	wg.Wait()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if reloadErr != nil {
		t.Fatalf("reload: %v", reloadErr)
	}
	order := h.sink.triggered()
	if got := second.triggered(); strings.Join(got, ",") != strings.Join(order, ",") {
		t.Fatal("the trigger observers saw different orders")
	}
	var want int
	accepted.Range(func(k, _ any) bool { want++; return true })
	if len(order) != want {
		t.Fatalf("%d triggers accepted, observers saw %d", want, len(order))
	}
	for _, id := range order {
		if _, ok := accepted.Load(id); !ok {
			t.Fatalf("part %s reached the observers but its trigger was refused", id)
		}
	}
	checkOnceInOrder(t, order, h.sink, second)

	reasons := map[string]int{}
	newFrom := -1
	for i, r := range h.sink.snapshot() {
		reasons[r.Reason]++
		switch {
		case r.Model.BundleHash != oldHash && newFrom < 0:
			newFrom = i
		case r.Model.BundleHash == oldHash && newFrom >= 0:
			t.Errorf("result %d (part %s) used the old model after result %d used the new one", i, r.PartID, newFrom)
		}
	}
	t.Logf("%d accepted, %d refused while stopping, %d refused as a flood; reasons %v; new model from result %d",
		want, nRefused.Load(), nFull.Load(), reasons, newFrom)
	if reasons[inspection.ReasonOverload] == 0 || reasons[inspection.ReasonShutdown] == 0 || reasons[inspection.ReasonPass] == 0 {
		t.Errorf("the burst did not exercise overload, shutdown and inspection: %v", reasons)
	}
	if newFrom < 0 {
		t.Error("no part was inspected with the reloaded model")
	}
	if nRefused.Load() == 0 {
		t.Error("no trigger arrived after the stop: the drain was not exercised")
	}
}

// TestOverloadKeepsItsPlace: with the engine blocked and the trigger queue
// full, further triggers are accepted as ERROR "overload" parts in their
// own place in the order — not ahead of the parts queued before them.
func TestOverloadKeepsItsPlace(t *testing.T) {
	gate := make(chan struct{})
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.TriggerQueue = 3
		first := true
		d.NewEngine = func(b *bundleT, m config.Model) (inspection.Engine, error) {
			e := &gatedEngine{fakeEngine: fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height}, gate: gate, warm: first}
			first = false
			return e, nil
		}
	})
	var ids []string
	for i := range 30 {
		id := fmt.Sprintf("P%02d", i)
		ids = append(ids, id)
		h.trigger(id)
	}
	time.Sleep(50 * time.Millisecond) // the overload results, if emitted early, would arrive now
	if got := len(h.sink.snapshot()); got != 0 {
		t.Fatalf("%d results arrived while the first part was still being inspected: overload ERRORs jumped the queue", got)
	}
	close(gate)
	res := h.sink.waitResults(t, len(ids), 5*time.Second)
	checkOnceInOrder(t, ids, h.sink)
	overloads := 0
	for _, r := range res {
		if r.Reason == inspection.ReasonOverload {
			overloads++
			if r.Verdict != inspection.Error || !strings.Contains(r.Detail, "already waiting for a frame") {
				t.Errorf("overload part %s: %s %q", r.PartID, r.Verdict, r.Detail)
			}
		}
	}
	if overloads == 0 {
		t.Error("no part was overloaded")
	}
}

// gatedEngine lets the warm-up through and holds every part until gate
// closes.
type gatedEngine struct {
	fakeEngine
	gate <-chan struct{}
	warm bool
	n    int
}

func (g *gatedEngine) Localize(frame imageImage, roi imageRectangle, t preprocessTransform, dst *preprocessHeatmap) (float32, error) {
	g.n++
	if !(g.warm && g.n == 1) {
		<-g.gate
	}
	return g.fakeEngine.Localize(frame, roi, t, dst)
}

// TestShutdownGivesUpInOrder: parts still queued past half the shutdown
// timeout become ERROR "shutdown" results in their own place; Run returns
// within the timeout; triggers after the stop are refused.
func TestShutdownGivesUpInOrder(t *testing.T) {
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.NewEngine = slowEngines(60*time.Millisecond, nil)
		d.ShutdownTimeout = 600 * time.Millisecond
	})
	var ids []string
	for i := range 40 {
		id := fmt.Sprintf("S%02d", i)
		ids = append(ids, id)
		h.trigger(id)
	}
	start := time.Now()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	// Inspecting all 40 parts would take 2.4 s; giving up at half the
	// timeout bounds it (with room for a loaded machine).
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("shutdown took %s with a 600 ms timeout: the queued parts were not given up", took)
	}
	checkOnceInOrder(t, ids, h.sink)
	res := h.sink.snapshot()
	inspected, shutdown := 0, 0
	for i, r := range res {
		switch r.Reason {
		case inspection.ReasonShutdown:
			shutdown++
		case inspection.ReasonPass:
			if shutdown > 0 {
				t.Errorf("part %s inspected after an earlier part (%d) got a shutdown ERROR", r.PartID, i)
			}
			inspected++
		default:
			t.Errorf("part %s: %s %s", r.PartID, r.Verdict, r.Reason)
		}
	}
	if inspected == 0 || shutdown == 0 {
		t.Errorf("%d inspected, %d shutdown ERRORs: want both", inspected, shutdown)
	}
	if err := h.d.Trigger("late", inspection.TriggerSoftware); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("trigger after the stop: %v", err)
	}
}

// TestReloadGivenUpClosesLateModel: a reload whose model is still loading
// when its context ends returns at once; a second reload is
// refused while the first load runs; the model that finishes afterwards is
// closed, never installed, never leaked.
func TestReloadGivenUpClosesLateModel(t *testing.T) {
	var next *config.Config
	var closed atomic.Int32
	release := make(chan struct{})
	building := make(chan struct{}, 1)
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.ReloadConfig = func() (*config.Config, error) { return next, nil }
		d.NewEngine = func(b *bundleT, m config.Model) (inspection.Engine, error) {
			if next != nil {
				building <- struct{}{}
				<-release
			}
			return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, closed: &closed}, nil
		}
	})
	oldHash := h.d.Status().Model.BundleHash
	c := *h.cfg
	c.Model.Bundle = writeBundle(t, filepath.Join(t.TempDir(), "slow"), 9)
	next = &c

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- h.d.Reload(ctx) }()
	<-building // the engine is being built: give up on it now
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("reload given up during the load: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("reload did not return within 3 s of its context ending")
	}
	if err := h.d.Reload(context.Background()); !errors.Is(err, errLoadRunning) {
		t.Errorf("second reload while the first still loads: %v", err)
	}
	close(release)
	deadline := time.Now().Add(3 * time.Second)
	for closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if closed.Load() != 1 {
		t.Fatalf("the model finished after its reload gave up was closed %d times, want 1", closed.Load())
	}
	if h.d.Status().Model.BundleHash != oldHash {
		t.Error("the late model was installed")
	}
	h.d.loaders.Wait()
	if h.d.loading.Load() {
		t.Error("still loading after the load finished")
	}
}

// TestStopWhileReloadLoads: a shutdown during a model load cancels the
// reload, waits for the load and leaves no engine open.
func TestStopWhileReloadLoads(t *testing.T) {
	var next *config.Config
	var built, closed atomic.Int32
	building := make(chan struct{}, 1)
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.ReloadConfig = func() (*config.Config, error) { return next, nil }
		d.NewEngine = func(b *bundleT, m config.Model) (inspection.Engine, error) {
			built.Add(1)
			if next != nil {
				building <- struct{}{}
				time.Sleep(200 * time.Millisecond)
			}
			return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, closed: &closed}, nil
		}
	})
	c := *h.cfg
	c.Model.Bundle = writeBundle(t, filepath.Join(t.TempDir(), "v2"), 11)
	next = &c
	errc := make(chan error, 1)
	go func() { errc <- h.d.Reload(context.Background()) }()
	<-building
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, errStopping) {
		t.Errorf("reload cut short by the shutdown: %v", err)
	}
	if built.Load() != 2 || closed.Load() != 2 {
		t.Errorf("%d engines built, %d closed after Run returned", built.Load(), closed.Load())
	}
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// harness runs a daemon over a fake camera and fake engines.
type harness struct {
	t      *testing.T
	cfg    *config.Config
	cam    *fakeCamera
	sink   *collector
	d      *Daemon
	cancel context.CancelFunc
	done   chan error
	closed atomic.Int32
	notify *recordingNotifier
}

func startHarness(t *testing.T, mode string, tweak func(*Deps)) *harness {
	t.Helper()
	h := &harness{t: t, sink: newCollector(), notify: &recordingNotifier{}}
	h.cfg = testConfig(t, writeBundle(t, filepath.Join(t.TempDir(), "bundle"), 1), mode)
	h.cam = newFakeCamera(scene(320, 240, 0, 0, 0, 0), 5*time.Millisecond)
	deps := Deps{Config: h.cfg, Camera: h.cam, NewEngine: engineFactory(&h.closed), Sinks: []inspection.Sink{h.sink},
		Notifier: h.notify, ShutdownTimeout: 3 * time.Second}
	if tweak != nil {
		tweak(&deps)
	}
	d, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(func() { h.stop() })
	// Start-up verifies a real bundle (checksums, graphs): generous for a
	// loaded machine under the race detector.
	deadline := time.Now().Add(30 * time.Second)
	for h.notify.count("READY=1") == 0 {
		select {
		case err := <-h.done:
			h.done <- err
			t.Fatalf("Run ended during start-up: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon not ready within 30 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return h
}

// stop cancels Run and returns its error.
func (h *harness) stop() error {
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return within 10 s of cancel")
		return nil
	}
}

func (h *harness) trigger(id string) {
	h.t.Helper()
	if err := h.d.Trigger(id, inspection.TriggerSoftware); err != nil {
		h.t.Fatalf("trigger %s: %v", id, err)
	}
}

// TestSoftwareTriggersGoodAndDefective: every trigger yields exactly one
// result, in order; defective parts are NG with a region on the painted
// square (in frame coordinates); good parts are OK.
func TestSoftwareTriggersGoodAndDefective(t *testing.T) {
	h := startHarness(t, config.TriggerSoftware, nil)
	good := scene(320, 240, 0, 0, 0, 0)
	defect := image.Rect(96, 64, 96+64, 64+48)
	bad := scene(320, 240, defect.Min.X, defect.Min.Y, defect.Dx(), defect.Dy())
	const n = 20
	for i := range n {
		if i%2 == 1 {
			h.cam.setScene(bad)
		} else {
			h.cam.setScene(good)
		}
		h.trigger(fmt.Sprintf("P%02d", i))
		h.sink.waitResults(t, i+1, 3*time.Second)
	}
	res := h.sink.waitResults(t, n, 3*time.Second)
	if len(res) != n {
		t.Fatalf("%d results for %d triggers", len(res), n)
	}
	ids := map[string]bool{}
	for i, r := range res {
		if want := fmt.Sprintf("P%02d", i); r.PartID != want {
			t.Errorf("result %d is part %s, want %s (order)", i, r.PartID, want)
		}
		if ids[r.ID] {
			t.Errorf("duplicate result ID %s", r.ID)
		}
		ids[r.ID] = true
		if r.Station != "test-station" || r.Trigger != inspection.TriggerSoftware || r.Model.BundleHash == "" {
			t.Errorf("result %d identity incomplete: %+v", i, r)
		}
		if r.CaptureTime.Before(r.TriggerTime) {
			t.Errorf("result %d: frame captured before its trigger", i)
		}
		if r.Latency.TotalMs <= 0 || r.VerdictTime.Before(r.CaptureTime) {
			t.Errorf("result %d: latency %+v", i, r.Latency)
		}
		if i%2 == 0 {
			if r.Verdict != inspection.OK || len(r.Regions) != 0 {
				t.Errorf("good part %s: %s %s regions %v", r.PartID, r.Verdict, r.Reason, r.Regions)
			}
			continue
		}
		if r.Verdict != inspection.NG || len(r.Regions) != 1 {
			t.Errorf("defective part %s: %s %s regions %v", r.PartID, r.Verdict, r.Reason, r.Regions)
			continue
		}
		reg := r.Regions[0]
		box := image.Rect(reg.X, reg.Y, reg.X+reg.Width, reg.Y+reg.Height)
		inter := box.Intersect(defect)
		iou := float64(inter.Dx()*inter.Dy()) / float64(box.Dx()*box.Dy()+defect.Dx()*defect.Dy()-inter.Dx()*inter.Dy())
		if iou < 0.7 {
			t.Errorf("part %s: region %v overlaps the painted square %v with IoU %.2f", r.PartID, box, defect, iou)
		}
		if reg.Area < defect.Dx()*defect.Dy()/2 || reg.Area > defect.Dx()*defect.Dy()*2 {
			t.Errorf("part %s: region area %d px, painted %d px", r.PartID, reg.Area, defect.Dx()*defect.Dy())
		}
	}
	if st := h.d.Status(); st.Counts.Total != n || st.Counts.NG != n/2 || st.Counts.OK != n/2 || !st.Healthy {
		t.Errorf("status counts %+v healthy %v problems %v", st.Counts, st.Healthy, st.Problems)
	}
	if got := len(h.sink.trigs); got != n {
		t.Errorf("trigger observers saw %d parts, want %d", got, n)
	}
}

// TestFrozenCameraGivesErrorsThenRecovers: while no frame arrives, each
// trigger gets an ERROR verdict within trigger.timeout; after the camera
// resumes, parts are inspected again.
func TestFrozenCameraGivesErrorsThenRecovers(t *testing.T) {
	h := startHarness(t, config.TriggerSoftware, nil)
	h.trigger("before")
	h.sink.waitResults(t, 1, 2*time.Second)
	h.cam.freeze(true)
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	h.trigger("frozen-1")
	h.trigger("frozen-2")
	res := h.sink.waitResults(t, 3, 3*time.Second)
	for _, r := range res[1:3] {
		if r.Verdict != inspection.Error || r.Reason != inspection.ReasonCameraTimeout {
			t.Errorf("part %s during freeze: %s %s", r.PartID, r.Verdict, r.Reason)
		}
		if !strings.Contains(r.Detail, "trigger.timeout") {
			t.Errorf("detail %q does not name trigger.timeout", r.Detail)
		}
		if wait := r.VerdictTime.Sub(r.TriggerTime); wait > h.cfg.Trigger.Timeout.D+200*time.Millisecond {
			t.Errorf("part %s: ERROR after %s, timeout is %s", r.PartID, wait, h.cfg.Trigger.Timeout.D)
		}
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("two timeouts took %s", time.Since(start))
	}
	if st := h.d.Status(); st.Healthy {
		t.Error("status healthy while the camera is stalled")
	}
	h.cam.freeze(false)
	h.trigger("after")
	res = h.sink.waitResults(t, 4, 2*time.Second)
	if r := res[3]; r.Verdict != inspection.OK {
		t.Errorf("after recovery: %s %s %s", r.Verdict, r.Reason, r.Detail)
	}
	kinds := strings.Join(h.sink.eventKinds(), ",")
	if !strings.Contains(kinds, inspection.EventCameraStalled) || !strings.Contains(kinds, inspection.EventCameraOnline) {
		t.Errorf("events %s lack camera stalled/online", kinds)
	}
}

// TestReload: a broken bundle keeps the old model and reports why; a good
// new bundle is swapped in between parts and the old engine is closed.
func TestReload(t *testing.T) {
	var next *config.Config
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.ReloadConfig = func() (*config.Config, error) { return next, nil }
	})
	oldHash := h.d.Status().Model.BundleHash

	broken := writeBundle(t, filepath.Join(t.TempDir(), "broken"), 2)
	if err := os.WriteFile(filepath.Join(broken, "localize.onnx"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := *h.cfg
	c.Model.Bundle = broken
	next = &c
	err := h.d.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "localize.onnx") {
		t.Fatalf("reload of a corrupt bundle: %v, want an error naming localize.onnx", err)
	}
	if h.d.Status().Model.BundleHash != oldHash {
		t.Fatal("a failed reload changed the model")
	}
	h.trigger("still-running")
	if r := h.sink.waitResults(t, 1, 2*time.Second)[0]; r.Verdict != inspection.OK || r.Model.BundleHash != oldHash {
		t.Errorf("after failed reload: %s with %s", r.Verdict, r.Model.BundleHash)
	}

	good := *h.cfg
	good.Model.Bundle = writeBundle(t, filepath.Join(t.TempDir(), "v2"), 3)
	good.Decision.Threshold = 0.9
	next = &good
	if err := h.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for h.d.Status().Model.BundleHash == oldHash && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := h.d.Status()
	if st.Model.BundleHash == oldHash || st.Model.Threshold != 0.9 {
		t.Fatalf("after reload: hash %s threshold %g", st.Model.BundleHash, st.Model.Threshold)
	}
	if h.closed.Load() != 1 {
		t.Errorf("old engine closed %d times, want 1", h.closed.Load())
	}
	h.trigger("new-model")
	if r := h.sink.waitResults(t, 2, 2*time.Second)[1]; r.Model.BundleHash != st.Model.BundleHash || r.Threshold != 0.9 {
		t.Errorf("part after reload used %s threshold %g", r.Model.BundleHash, r.Threshold)
	}
	kinds := strings.Join(h.sink.eventKinds(), ",")
	if !strings.Contains(kinds, inspection.EventReloadFailed) || !strings.Contains(kinds, inspection.EventReloadDone) {
		t.Errorf("events %s lack reload_failed and reload_done", kinds)
	}
}

// TestShutdownDrains: SIGTERM (context cancel) with parts queued: each
// trigger still gets exactly one result, in order, the sink queues are
// drained (the sinks stay open for their owner to close), STOPPING is sent.
func TestShutdownDrains(t *testing.T) {
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.NewEngine = func(b *bundleT, m config.Model) (inspection.Engine, error) {
			return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, delay: 20 * time.Millisecond}, nil
		}
	})
	const n = 15
	for i := range n {
		h.trigger(fmt.Sprintf("Q%d", i))
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run returned %v on shutdown, want nil", err)
	}
	res := h.sink.snapshot()
	if len(res) != n {
		t.Fatalf("%d results for %d triggers after shutdown", len(res), n)
	}
	seen := map[string]int{}
	for _, r := range res {
		seen[r.PartID]++
		// The camera kept running: every accepted part was inspected.
		if r.Verdict == inspection.Error {
			t.Errorf("part %s: %s %s %s", r.PartID, r.Verdict, r.Reason, r.Detail)
		}
	}
	for i := range n {
		if c := seen[fmt.Sprintf("Q%d", i)]; c != 1 {
			t.Errorf("part Q%d has %d results", i, c)
		}
	}
	checkOnceInOrder(t, h.sink.triggered(), h.sink)
	if h.notify.count("STOPPING=1") != 1 {
		t.Error("no STOPPING=1")
	}
	if err := h.d.Trigger("late", inspection.TriggerSoftware); err == nil {
		t.Error("a trigger after shutdown was accepted")
	}
}

// TestSlowSinkDoesNotStall: a sink that never returns loses results (counted)
// while inspection and the other sinks go on.
func TestSlowSinkDoesNotStall(t *testing.T) {
	stuck := &blockingSink{release: make(chan struct{})}
	h := startHarness(t, config.TriggerFreeRun, func(d *Deps) {
		d.Sinks = append(d.Sinks, stuck)
		d.SinkQueue = 4
	})
	h.sink.waitResults(t, 30, 5*time.Second)
	var st inspection.SinkStatus
	for _, s := range h.d.Status().Sinks {
		if s.Name == "stuck" {
			st = s
		}
	}
	if st.Dropped == 0 || st.Queued != 4 {
		t.Errorf("stuck sink status %+v, want drops and a full queue", st)
	}
	if h.d.Status().Healthy {
		t.Error("healthy although a sink is not keeping up")
	}
	close(stuck.release)
}

// TestFreeRunAndMaxParts: free-run inspects the newest frames, numbers
// parts by frame, and Run returns nil after MaxParts.
func TestFreeRunAndMaxParts(t *testing.T) {
	h := startHarness(t, config.TriggerFreeRun, func(d *Deps) {
		d.MaxParts = 10
		d.NewEngine = func(b *bundleT, m config.Model) (inspection.Engine, error) {
			return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, delay: 30 * time.Millisecond}, nil
		}
	})
	select {
	case err := <-h.done:
		h.done <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after MaxParts")
	}
	res := h.sink.snapshot()
	if len(res) != 10 {
		t.Fatalf("%d results for --max-parts 10", len(res))
	}
	for i := 1; i < len(res); i++ {
		if res[i].FrameSeq <= res[i-1].FrameSeq {
			t.Errorf("frame %d after %d: not the newest", res[i].FrameSeq, res[i-1].FrameSeq)
		}
	}
	// Frames come every 5 ms and inspection takes 30 ms: frames are skipped.
	if res[len(res)-1].FrameSeq-res[0].FrameSeq < uint64(len(res)) {
		t.Errorf("no frame was skipped: %d..%d for %d parts", res[0].FrameSeq, res[len(res)-1].FrameSeq, len(res))
	}
	if err := h.d.Trigger("x", inspection.TriggerSoftware); !errors.Is(err, inspection.ErrTriggerMode) && !strings.Contains(fmt.Sprint(err), "stopping") {
		t.Errorf("software trigger in free-run: %v", err)
	}
}

// TestErrorVerdicts: engine failures, NaN scores and parts aligned mostly
// outside the ROI are ERROR, never OK.
func TestErrorVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		engine fakeEngine
		reason string
	}{
		{"engine failure", fakeEngine{fail: errEngine}, inspection.ReasonEngine},
		{"nan score", fakeEngine{nan: true}, inspection.ReasonNaN},
		{"out of frame", fakeEngine{outside: 0.6}, inspection.ReasonOutOfFrame},
		{"partly out of frame", fakeEngine{outside: 0.4}, inspection.ReasonPass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
				first := true
				d.NewEngine = func(b *bundleT, m config.Model) (inspection.Engine, error) {
					e := tc.engine
					e.w, e.h = b.Manifest.Input.Width, b.Manifest.Input.Height
					if first { // the warm-up must pass
						first = false
						return &warmFirst{fakeEngine: &e}, nil
					}
					return &e, nil
				}
			})
			h.trigger("p")
			r := h.sink.waitResults(t, 1, 2*time.Second)[0]
			if (r.Verdict != inspection.Error) != (tc.reason == inspection.ReasonPass) || r.Reason != tc.reason {
				t.Errorf("%s: %s %s", tc.name, r.Verdict, r.Reason)
			}
			if tc.reason == inspection.ReasonOutOfFrame && !strings.Contains(r.Detail, "placed 60 % of the model input outside camera.roi, more than decision.max_outside_fraction 0.5") {
				t.Errorf("detail %q", r.Detail)
			}
		})
	}
}

// warmFirst lets the warm-up frame through, then behaves like the engine.
type warmFirst struct {
	*fakeEngine
	n int
}

func (w *warmFirst) Localize(frame image.Image, roi image.Rectangle, t preprocessTransform, dst *preprocessHeatmap) (float32, error) {
	w.n++
	if w.n == 1 {
		good := *w.fakeEngine
		good.fail, good.nan = nil, false
		return good.Localize(frame, roi, t, dst)
	}
	return w.fakeEngine.Localize(frame, roi, t, dst)
}

// TestStartupFailures: nothing starts (no READY) and the error names the
// failing part.
func TestStartupFailures(t *testing.T) {
	bundleDir := writeBundle(t, filepath.Join(t.TempDir(), "bundle"), 1)
	corrupt := writeBundle(t, filepath.Join(t.TempDir(), "corrupt"), 1)
	if err := os.WriteFile(filepath.Join(corrupt, "manifest.toml"), []byte("format_version = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		bundle string
		cam    func(*fakeCamera)
		engine EngineFactory
		want   string
	}{
		{"missing bundle", filepath.Join(t.TempDir(), "nope"), nil, nil, "model.bundle"},
		{"corrupt bundle", corrupt, nil, nil, "model.bundle"},
		{"engine refuses", bundleDir, nil, func(*bundleT, config.Model) (inspection.Engine, error) { return nil, errEngine }, "engine exploded"},
		{"warm-up fails", bundleDir, nil, func(b *bundleT, _ config.Model) (inspection.Engine, error) {
			return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, fail: errEngine}, nil
		}, "warm-up frame: engine exploded"},
		{"camera fails", bundleDir, func(c *fakeCamera) { c.startErr = errors.New("open /dev/video9: no such device") }, nil, "camera: open /dev/video9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, tc.bundle, config.TriggerSoftware)
			cam := newFakeCamera(scene(64, 64, 0, 0, 0, 0), 5*time.Millisecond)
			if tc.cam != nil {
				tc.cam(cam)
			}
			eng := tc.engine
			if eng == nil {
				eng = engineFactory(nil)
			}
			n := &recordingNotifier{}
			d, err := New(Deps{Config: cfg, Camera: cam, NewEngine: eng, Notifier: n})
			if err != nil {
				t.Fatal(err)
			}
			err = d.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run error %v, want one containing %q", err, tc.want)
			}
			if n.count("READY=1") != 0 {
				t.Error("READY sent although start-up failed")
			}
		})
	}
}

// TestWatchdog: WATCHDOG=1 is sent while frames flow and stops while the
// camera is frozen.
func TestWatchdog(t *testing.T) {
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) {
		d.Notifier.(*recordingNotifier).wd = 100 * time.Millisecond
	})
	time.Sleep(300 * time.Millisecond)
	if h.notify.count("WATCHDOG=1") < 2 {
		t.Fatalf("%d watchdog pings in 300 ms while frames flow", h.notify.count("WATCHDOG=1"))
	}
	h.cam.freeze(true)
	time.Sleep(300 * time.Millisecond) // the period that still saw frames ends
	before := h.notify.count("WATCHDOG=1")
	time.Sleep(400 * time.Millisecond)
	if after := h.notify.count("WATCHDOG=1"); after != before {
		t.Errorf("%d watchdog pings while the camera was frozen", after-before)
	}
	h.cam.freeze(false)
	time.Sleep(300 * time.Millisecond)
	if h.notify.count("WATCHDOG=1") == before {
		t.Error("no watchdog ping after the camera resumed")
	}
}

// TestControl: pause refuses triggers, thresholds are checked and applied,
// trigger mode mismatches are refused.
func TestControl(t *testing.T) {
	h := startHarness(t, config.TriggerSoftware, nil)
	h.d.Pause()
	if err := h.d.Trigger("p", inspection.TriggerSoftware); !errors.Is(err, inspection.ErrPaused) {
		t.Errorf("trigger while paused: %v", err)
	}
	h.d.Resume()
	if err := h.d.Trigger("g", inspection.TriggerGPIO); !errors.Is(err, inspection.ErrTriggerMode) {
		t.Errorf("gpio trigger in software mode: %v", err)
	}
	bad := []float64{0, -1, 1.5, nanValue()}
	for _, v := range bad {
		if err := h.d.SetThresholds(&v, nil); err == nil || !strings.Contains(err.Error(), "image:") {
			t.Errorf("threshold %v accepted: %v", v, err)
		}
	}
	v := 0.95
	if err := h.d.SetThresholds(&v, nil); err != nil {
		t.Fatal(err)
	}
	st := h.d.Status()
	if st.Model.Threshold != 0.95 || st.Model.ThresholdFrom != "runtime" || st.Model.PixelThreshold != 0.5 {
		t.Errorf("status model %+v", st.Model)
	}
	h.cam.setScene(scene(320, 240, 10, 10, 5, 5))
	h.sink.images = true
	h.trigger("after-threshold")
	r := h.sink.waitResults(t, 1, 2*time.Second)[0]
	if r.Threshold != 0.95 || r.Snapshot == nil || r.Snapshot.Heatmap == nil {
		t.Errorf("result threshold %g snapshot %v", r.Threshold, r.Snapshot != nil)
	}
}

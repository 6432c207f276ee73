package daemon

import (
	"context"
	"errors"
	"image"
	"image/color"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
)

// fakeCamera produces a frame of the current scene every interval until
// frozen, like a live camera; Next follows the inspection.Camera contract.
type fakeCamera struct {
	interval time.Duration

	mu       sync.Mutex
	scene    image.Image
	frozen   bool
	latest   *inspection.Frame
	wake     chan struct{}
	watchers []func(inspection.CameraStatus)
	status   inspection.CameraStatus
	startErr error

	seq      atomic.Uint64
	captured atomic.Uint64
	stop     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
}

func newFakeCamera(scene image.Image, interval time.Duration) *fakeCamera {
	return &fakeCamera{interval: interval, scene: scene, wake: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		status: inspection.CameraStatus{State: inspection.CameraStarting}}
}

func (c *fakeCamera) Watch(fn func(inspection.CameraStatus)) { c.watchers = append(c.watchers, fn) }

func (c *fakeCamera) setState(s inspection.CameraState, detail string) {
	c.mu.Lock()
	c.status = inspection.CameraStatus{State: s, Since: time.Now(), Detail: detail}
	st := c.status
	c.mu.Unlock()
	for _, w := range c.watchers {
		w(st)
	}
}

func (c *fakeCamera) Start(ctx context.Context) error {
	if c.startErr != nil {
		return c.startErr
	}
	c.setState(inspection.CameraOnline, "")
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.interval)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
			c.mu.Lock()
			if c.frozen {
				c.mu.Unlock()
				continue
			}
			c.latest = inspection.NewFrame(c.seq.Add(1), time.Now(), c.scene, nil)
			c.captured.Add(1)
			close(c.wake)
			c.wake = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	return nil
}

func (c *fakeCamera) Next(ctx context.Context, after time.Time) (*inspection.Frame, error) {
	for {
		c.mu.Lock()
		f, wake := c.latest, c.wake
		c.mu.Unlock()
		if f != nil && f.Time.After(after) {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		}
	}
}

func (c *fakeCamera) setScene(img image.Image) {
	c.mu.Lock()
	c.scene = img
	c.mu.Unlock()
}

func (c *fakeCamera) freeze(frozen bool) {
	c.mu.Lock()
	c.frozen = frozen
	c.mu.Unlock()
	if frozen {
		c.setState(inspection.CameraStalled, "no frame (test)")
	} else {
		c.setState(inspection.CameraOnline, "")
	}
}

func (c *fakeCamera) Status() inspection.CameraStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *fakeCamera) Stats() inspection.CameraStats {
	return inspection.CameraStats{Captured: c.captured.Load()}
}

func (c *fakeCamera) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	close(c.stop)
	if c.status.State != inspection.CameraStarting {
		<-c.done
	}
	return nil
}

// fakeEngine scores a frame by its red channel: the heatmap is red/255 at
// each model-input pixel (nearest sample of the ROI), the score its max.
// Painted red squares are defects with an exactly known footprint.
type fakeEngine struct {
	w, h      int
	transform preprocess.Transform
	delay     time.Duration
	fail      error
	nan       bool
	outside   float64 // reported as the heatmap's Outside fraction
	closed    *atomic.Int32
}

func (e *fakeEngine) Align(frame image.Image, roi image.Rectangle) (preprocess.Transform, error) {
	return e.transform, nil
}

func (e *fakeEngine) Localize(frame image.Image, roi image.Rectangle, t preprocess.Transform, dst *preprocess.Heatmap) (float32, error) {
	if e.fail != nil {
		return 0, e.fail
	}
	if roi.Empty() {
		roi = frame.Bounds()
	}
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	var best float32
	sx, sy := float64(roi.Dx())/float64(e.w), float64(roi.Dy())/float64(e.h)
	for v := range e.h {
		for u := range e.w {
			x := roi.Min.X + int((float64(u)+0.5)*sx)
			y := roi.Min.Y + int((float64(v)+0.5)*sy)
			r, _, _, _ := frame.At(x, y).RGBA()
			val := float32(r>>8) / 255
			dst.Values[v*e.w+u] = val
			best = max(best, val)
		}
	}
	dst.Outside = e.outside
	if e.nan {
		return float32(nanValue()), nil
	}
	return best, nil
}

func nanValue() float64 { var z float64; return z / z }

func (e *fakeEngine) NewHeatmap() *preprocess.Heatmap { return preprocess.NewHeatmap(e.w, e.h) }
func (e *fakeEngine) Provider() string                { return "fake" }
func (e *fakeEngine) Close() error {
	if e.closed != nil {
		e.closed.Add(1)
	}
	return nil
}

// scene draws a grey part, with a red w×h square at (x, y) when w > 0.
func scene(width, height, x, y, w, h int) *preprocess.BGR {
	img := preprocess.NewBGR(image.Rect(0, 0, width, height))
	for i := range img.Pix {
		img.Pix[i] = 60
	}
	for yy := y; yy < y+h; yy++ {
		for xx := x; xx < x+w; xx++ {
			img.Set(xx, yy, color.RGBA{R: 250, G: 20, B: 20, A: 255})
		}
	}
	return img
}

// writeBundle writes a small random-weight bundle (the fake engine ignores
// its graphs, but the daemon verifies it like any other).
func writeBundle(t testing.TB, dir string, seed uint64) string {
	t.Helper()
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testConfig is a valid configuration for the fake parts.
func testConfig(t testing.TB, bundleDir, mode string) *config.Config {
	t.Helper()
	c := config.Default()
	c.ConfigVersion = 1
	c.Station.ID = "test-station"
	c.Model.Bundle = bundleDir
	c.Trigger.Mode = mode
	c.Trigger.Timeout = config.Dur(300 * time.Millisecond)
	c.Decision.Threshold = 0.5
	c.Decision.PixelThreshold = 0.5
	c.Camera.MaxFrameAge = config.Dur(time.Second)
	c.StateDir = t.TempDir()
	return &c
}

// engineFactory returns fake engines of the bundle's input size.
func engineFactory(closed *atomic.Int32) EngineFactory {
	return func(b *bundle.Bundle, m config.Model) (inspection.Engine, error) {
		return &fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height, closed: closed}, nil
	}
}

// collector is a sink that keeps every result and event.
type collector struct {
	mu      sync.Mutex
	results []*inspection.Result
	events  []inspection.Event
	trigs   []string
	closed  bool
	got     chan struct{}
	images  bool
}

func newCollector() *collector { return &collector{got: make(chan struct{}, 10000)} }

func (c *collector) Name() string { return "collector" }
func (c *collector) Deliver(ctx context.Context, r *inspection.Result) error {
	c.mu.Lock()
	c.results = append(c.results, r)
	c.mu.Unlock()
	c.got <- struct{}{}
	return nil
}
func (c *collector) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}
func (c *collector) Event(e inspection.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}
func (c *collector) PartTriggered(partID string, at time.Time) {
	c.mu.Lock()
	c.trigs = append(c.trigs, partID)
	c.mu.Unlock()
}
func (c *collector) WantsImage(r *inspection.Result) bool { return c.images }

func (c *collector) snapshot() []*inspection.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*inspection.Result(nil), c.results...)
}

func (c *collector) eventKinds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		out = append(out, e.Kind)
	}
	return out
}

// waitResults waits until n results arrived.
func (c *collector) waitResults(t *testing.T, n int, timeout time.Duration) []*inspection.Result {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if r := c.snapshot(); len(r) >= n {
			return r
		}
		select {
		case <-c.got:
		case <-deadline:
			t.Fatalf("got %d results, want %d", len(c.snapshot()), n)
		}
	}
}

// blockingSink never finishes a delivery until released.
type blockingSink struct {
	release chan struct{}
	n       atomic.Int32
}

func (b *blockingSink) Name() string { return "stuck" }
func (b *blockingSink) Deliver(ctx context.Context, r *inspection.Result) error {
	b.n.Add(1)
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (b *blockingSink) Close(ctx context.Context) error { return nil }

// recordingNotifier records sd_notify lines.
type recordingNotifier struct {
	mu    sync.Mutex
	lines []string
	wd    time.Duration
}

func (n *recordingNotifier) Notify(s string) (bool, error) {
	n.mu.Lock()
	n.lines = append(n.lines, s)
	n.mu.Unlock()
	return true, nil
}
func (n *recordingNotifier) WatchdogInterval() time.Duration { return n.wd }
func (n *recordingNotifier) count(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, l := range n.lines {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			c++
		}
	}
	return c
}

var errEngine = errors.New("engine exploded")

type (
	bundleT             = bundle.Bundle
	preprocessTransform = preprocess.Transform
	preprocessHeatmap   = preprocess.Heatmap
)

// triggered returns the part IDs the collector observed as triggered, in
// the order the daemon accepted them.
func (c *collector) triggered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.trigs...)
}

type (
	imageImage     = image.Image
	imageRectangle = image.Rectangle
)

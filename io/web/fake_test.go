package web

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// fakeControl is the Server's Host: its status, trigger and clear-fault
// answer what the test sets. It has only Host's methods, which is all the
// handlers may call.
type fakeControl struct {
	mu         sync.Mutex
	status     inspection.Status
	triggerErr error
	triggers   []string // part IDs, in order
	sources    []string
	clearErr   error
	clearLeft  []string // the problems after ClearFaults; nil: none
	clears     int      // ClearFaults calls
}

// ClearFaults counts the call and, unless clearErr is set, leaves the
// problems in clearLeft (healthy when none).
func (f *fakeControl) ClearFaults() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clears++
	if f.clearErr != nil {
		return f.clearErr
	}
	f.status.Problems = append([]string{}, f.clearLeft...)
	f.status.Healthy = len(f.clearLeft) == 0
	return nil
}

func (f *fakeControl) clearCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clears
}

func (f *fakeControl) Trigger(partID, source string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.triggerErr != nil {
		return f.triggerErr
	}
	f.triggers = append(f.triggers, partID)
	f.sources = append(f.sources, source)
	return nil
}

func (f *fakeControl) Status() inspection.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeControl) set(fn func(*inspection.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

func (f *fakeControl) setTriggerErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.triggerErr = err
}

func (f *fakeControl) triggered() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.triggers...), append([]string(nil), f.sources...)
}

// fakeStatus is a plausible healthy station.
func fakeStatus(now time.Time) inspection.Status {
	started := now.Add(-(3*time.Hour + 17*time.Minute))
	return inspection.Status{
		Station: inspection.Station{ID: "st-042", Name: "Bracket press 3 outfeed", Line: "L2"},
		Version: "0.4.0-dev",
		Started: started,
		UptimeS: now.Sub(started).Seconds(),
		Trigger: inspection.TriggerSoftware,
		Model: inspection.ModelStatus{
			Product: "bracket-a", BundleHash: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Provider: "cpu", InputWidth: 256, InputHeight: 256, AlignMethod: "stn",
			Threshold: 0.42, PixelThreshold: 0.35, ThresholdFrom: "bundle", LoadedAt: started,
		},
		Camera:   inspection.CameraStatus{State: inspection.CameraOnline, Since: started},
		CameraN:  inspection.CameraStats{Captured: 118230, Delivered: 11890, Dropped: 12, Reconnects: 1},
		Counts:   inspection.Counts{Total: 11890, OK: 11802, NG: 81, Error: 7},
		RatePerS: 1.02,
		Healthy:  true,
		Problems: []string{},
		Sinks: []inspection.SinkStatus{
			{Name: "web", Capacity: 64, Delivered: 11890},
			{Name: "mqtt", Queued: 3, Capacity: 256, Delivered: 11887},
			{Name: "archive", Capacity: 64, Delivered: 88, Dropped: 2, Errors: 1, LastError: "disk budget reached: pruned 12 files"},
		},
		Latency: inspection.LatencyStats{P50: 48.2, P99: 91.7, Max: 143.0},
	}
}

// syntheticPart draws a grey bracket-like part with a dark scratch on a
// 640×480 frame, tilted by tiltDeg about the ROI centre, and returns the
// frame, the ROI, and a defect mask (white on black) for the scratch.
func syntheticPart(tiltDeg float64) (*preprocess.BGR, image.Rectangle, *image.Gray) {
	const w, h = 640, 480
	frame := preprocess.NewBGR(image.Rect(0, 0, w, h))
	mask := image.NewGray(frame.Rect)
	roi := image.Rect(80, 60, 560, 420)
	cx, cy := float64(roi.Min.X+roi.Max.X)/2, float64(roi.Min.Y+roi.Max.Y)/2
	th := tiltDeg * math.Pi / 180
	c, s := math.Cos(th), math.Sin(th)
	for y := range h {
		for x := range w {
			// Part coordinates: undo the tilt.
			dx, dy := float64(x)-cx, float64(y)-cy
			px, py := c*dx+s*dy, -s*dx+c*dy
			v := uint8(28 + (x+y)%7) // dark conveyor with a faint texture
			inPart := math.Abs(px) < 180 && math.Abs(py) < 120
			hole := math.Hypot(px-110, py) < 28 || math.Hypot(px+110, py) < 28
			if inPart && !hole {
				v = uint8(150 + 40*(px+180)/360)
			}
			scratch := math.Abs(py-0.35*px-40) < 3 && px > -60 && px < 30
			if inPart && scratch {
				v = 60
				mask.Pix[y*mask.Stride+x] = 255
			}
			i := frame.PixOffset(x, y)
			frame.Pix[i], frame.Pix[i+1], frame.Pix[i+2] = v, v, uint8(min(255, int(v)+6))
		}
	}
	return frame, roi, mask
}

// heatFromMask builds the heatmap the engine would produce for a defect
// mask: the mask prepared exactly like the model input (crop, alignment
// warp, resize), so that it lives in the aligned model-input frame, then
// scaled to peak.
func heatFromMask(t testing.TB, mask image.Image, roi image.Rectangle, tr preprocess.Transform, w, h int, peak float32) *preprocess.Heatmap {
	t.Helper()
	hm := preprocess.NewHeatmap(w, h)
	spec := preprocess.Spec{Width: w, Height: h, Channels: 1, Crop: roi}
	if !tr.IsIdentity() {
		warp := tr.Pixel(roi.Dx(), roi.Dy())
		spec.Warp = &warp
	}
	if err := preprocess.Fill(hm.Values, mask, spec); err != nil {
		t.Fatal(err)
	}
	for i, v := range hm.Values {
		hm.Values[i] = min(1, v*peak*1.5)
	}
	return hm
}

// blur box-blurs hm n times with radius r and rescales it to its old
// peak, so a thin defect looks like a model's smooth anomaly blob.
func blur(hm *preprocess.Heatmap, r, n int) *preprocess.Heatmap {
	var peak float32
	for _, v := range hm.Values {
		peak = max(peak, v)
	}
	w, h := hm.Width, hm.Height
	tmp := make([]float32, len(hm.Values))
	for range n {
		for y := range h {
			for x := range w {
				var s float32
				for k := -r; k <= r; k++ {
					s += hm.Values[y*w+min(max(x+k, 0), w-1)]
				}
				tmp[y*w+x] = s / float32(2*r+1)
			}
		}
		for y := range h {
			for x := range w {
				var s float32
				for k := -r; k <= r; k++ {
					s += tmp[min(max(y+k, 0), h-1)*w+x]
				}
				hm.Values[y*w+x] = s / float32(2*r+1)
			}
		}
	}
	var top float32
	for _, v := range hm.Values {
		top = max(top, v)
	}
	if top > 0 {
		for i := range hm.Values {
			hm.Values[i] *= peak / top
		}
	}
	return hm
}

// fakeResult returns result number seq.
func fakeResult(seq int, at time.Time, v inspection.Verdict) *inspection.Result {
	r := &inspection.Result{
		ID:          fmt.Sprintf("st-042-20260101T000000-%06d", seq),
		PartID:      fmt.Sprintf("P%07d", 4410000+seq),
		Station:     "st-042",
		Seq:         uint64(seq),
		FrameSeq:    uint64(10 * seq),
		Trigger:     inspection.TriggerSoftware,
		Verdict:     v,
		Reason:      inspection.ReasonPass,
		TriggerTime: at.Add(-50 * time.Millisecond),
		CaptureTime: at.Add(-40 * time.Millisecond),
		VerdictTime: at,
		Latency:     inspection.Latency{CaptureWaitMs: 9.5, AlignMs: 11.2, LocalizeMs: 27.9, DecideMs: 0.4, TotalMs: 49 + float64(seq%9)},
		Score:       0.12 + 0.01*float64(seq%10),
		Threshold:   0.42, PixelThreshold: 0.35,
		Regions: []inspection.Region{},
		Model:   inspection.Model{Product: "bracket-a", BundleHash: "sha256:9f86d081884c"},
	}
	switch v {
	case inspection.NG:
		r.Reason, r.Score = inspection.ReasonRegion, 0.71
		r.Regions = []inspection.Region{{X: 290, Y: 210, Width: 80, Height: 40, Area: 410, Peak: 0.71}}
	case inspection.Error:
		r.Reason, r.Score, r.FrameSeq = inspection.ReasonCameraTimeout, 0, 0
		r.Detail = "no frame within 2s"
	}
	return r
}

// tilt is the alignment of the synthetic NG part in feedStation.
var tilt = preprocess.Transform{Tx: 0.03, Ty: -0.02, Theta: 6 * math.Pi / 180}

// fixture is feedStation's synthetic NG part, built once (read-only).
var fixture struct {
	once    sync.Once
	snap    *inspection.Snapshot
	regions []inspection.Region
}

// feedStation delivers a realistic history to s: OK parts, two NG parts
// (the last with a snapshot of a synthetic scratched part), one ERROR,
// and a few events.
func feedStation(t testing.TB, s *Server, now time.Time) {
	t.Helper()
	ctx := context.Background()
	verdicts := []inspection.Verdict{
		inspection.OK, inspection.OK, inspection.OK, inspection.NG, inspection.OK, inspection.OK,
		inspection.Error, inspection.OK, inspection.OK, inspection.OK, inspection.OK, inspection.NG, inspection.OK,
	}
	for i, v := range verdicts {
		seq := 11878 + i
		r := fakeResult(seq, now.Add(time.Duration(i-len(verdicts))*time.Second), v)
		if i == len(verdicts)-2 {
			fixture.once.Do(func() {
				frame, roi, mask := syntheticPart(tilt.Degrees())
				fixture.snap = &inspection.Snapshot{Frame: frame, ROI: roi, Transform: tilt,
					Heatmap: blur(heatFromMask(t, mask, roi, tilt, 256, 256, 0.71/1.5), 4, 3)}
				fixture.regions = regionsOf(mask)
			})
			snap := *fixture.snap
			r.Snapshot, r.Regions = &snap, fixture.regions
		}
		if err := s.Deliver(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range []inspection.Event{
		{Severity: inspection.Info, Kind: inspection.EventStarted, Message: "inspectd 0.4.0-dev started"},
		{Severity: inspection.Warning, Kind: inspection.EventCameraStalled, Message: "no frame for 2s; reconnecting"},
		{Severity: inspection.Info, Kind: inspection.EventCameraOnline, Message: "camera online again"},
		{Severity: inspection.Warning, Kind: inspection.EventDiskBudget, Message: "archive over budget: pruned 12 files"},
	} {
		e.Time, e.Station = now.Add(time.Duration(i-4)*time.Minute), "st-042"
		s.Event(e)
	}
}

// regionsOf returns the bounding box of the mask's set pixels as a region.
func regionsOf(m *image.Gray) []inspection.Region {
	b := image.Rectangle{}
	n := 0
	for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
		for x := m.Rect.Min.X; x < m.Rect.Max.X; x++ {
			if m.GrayAt(x, y) != (color.Gray{}) {
				b = b.Union(image.Rect(x, y, x+1, y+1))
				n++
			}
		}
	}
	if n == 0 {
		return []inspection.Region{}
	}
	return []inspection.Region{{X: b.Min.X, Y: b.Min.Y, Width: b.Dx(), Height: b.Dy(), Area: n, Peak: 0.71}}
}

// testOptions are the options of a test server: a free loopback port and
// the configuration's default history.
func testOptions() Options {
	return Options{Listen: "127.0.0.1:0", History: config.Default().HTTP.History}
}

// newTestServer returns a server started with fc (a healthy fake when nil)
// on a free loopback port, closed at the end of the test. Empty Listen and
// zero History in o take testOptions' values.
func newTestServer(t testing.TB, o Options, fc *fakeControl) (*Server, *fakeControl) {
	t.Helper()
	if fc == nil {
		fc = &fakeControl{status: fakeStatus(time.Now())}
	}
	def := testOptions()
	if o.Listen == "" {
		o.Listen = def.Listen
	}
	if o.History == 0 {
		o.History = def.History
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), fc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, fc
}

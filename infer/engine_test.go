package infer

import (
	"image"
	"image/color"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
)

// testBundle writes and loads a random-weight bundle.
func testBundle(t testing.TB, o netdef.RandomBundleOptions) *bundle.Bundle {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(dir, o); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testEngine(t testing.TB, o netdef.RandomBundleOptions) *Engine {
	t.Helper()
	rt := openRuntime(t)
	e, err := NewEngine(rt, testBundle(t, o), EngineOptions{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// partFrame draws a bright part with a notch on a dark 200×150 frame.
func partFrame() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, 200, 150))
	for y := range 150 {
		for x := range 200 {
			c := color.RGBA{30, 35, 40, 255}
			dx, dy := float64(x-100), float64(y-75)
			if dx*dx+dy*dy < 50*50 && !(dx > 0 && math.Abs(dy) < 8) {
				c = color.RGBA{200, uint8(150 + x%50), 90, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func TestEngineLocalize(t *testing.T) {
	e := testEngine(t, netdef.RandomBundleOptions{Height: 64, Width: 96, D: 16, AlignSize: 32, Seed: 3})
	frame := partFrame()
	tr, err := e.Align(frame, image.Rectangle{})
	if err != nil {
		t.Fatal(err)
	}
	if tr != (preprocess.Transform{}) {
		// A freshly initialised IMM has a zero last layer: the identity.
		t.Errorf("untrained align = %+v, want the identity", tr)
	}
	hm := e.NewHeatmap()
	score, err := e.Localize(frame, image.Rect(20, 10, 180, 140), tr, hm)
	if err != nil {
		t.Fatal(err)
	}
	if hm.Width != 96 || hm.Height != 64 || len(hm.Values) != 96*64 {
		t.Fatalf("heatmap %dx%d with %d values", hm.Width, hm.Height, len(hm.Values))
	}
	var maxv float32
	for _, v := range hm.Values {
		if v < -1e-6 || v > 1+1e-6 || math.IsNaN(float64(v)) {
			t.Fatalf("heatmap value %v outside [0,1]", v)
		}
		maxv = max(maxv, v)
	}
	if math.Abs(float64(score-maxv)) > 1e-6 {
		t.Errorf("score %v, want the heatmap maximum %v", score, maxv)
	}

	// The engine's result equals running the graph on the same prepared
	// input by hand.
	rt := openRuntime(t)
	b := testBundle(t, netdef.RandomBundleOptions{Height: 64, Width: 96, D: 16, AlignSize: 32, Seed: 3})
	s := newSession(t, rt, b.LocalizeGraph, SessionOptions{IntraOpThreads: 1})
	in, _ := s.Input(bundle.InputImage)
	if err := preprocess.Fill(in, frame, preprocess.Spec{Width: 96, Height: 64, Channels: 3, Crop: image.Rect(20, 10, 180, 140)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	out, _ := s.Output(bundle.OutputHeatmap)
	for i := range out {
		if math.Abs(float64(out[i]-hm.Values[i])) > 1e-5 {
			t.Fatalf("heatmap[%d] = %v, direct run %v", i, hm.Values[i], out[i])
		}
	}

	// A rotation changes what the model sees.
	other := e.NewHeatmap()
	if _, err := e.Localize(frame, image.Rect(20, 10, 180, 140), preprocess.Transform{Theta: 0.3}, other); err != nil {
		t.Fatal(err)
	}
	diff := 0.0
	for i := range other.Values {
		diff += math.Abs(float64(other.Values[i] - hm.Values[i]))
	}
	if diff == 0 {
		t.Error("a rotated warp gave the identical heatmap")
	}

	// The rotation pulls the ROI's corners from beyond it (replicated
	// border): the heatmap is 0 there and within the margin, the score
	// the maximum of the rest, which is not 0.
	roi := image.Rect(20, 10, 180, 140)
	warp := preprocess.Transform{Theta: 0.3}.Pixel(roi.Dx(), roi.Dy())
	inside, found := preprocess.Spec{Width: 96, Height: 64, Channels: 3, Crop: roi, Warp: &warp}.InsideSpans(roi.Dx(), roi.Dy(), nil)
	if found == 0 {
		t.Fatal("a 0.3 rad rotation pulled nothing from outside the ROI")
	}
	margin := e.m.Localize.OutsideMargin()
	score, err = e.Localize(frame, roi, preprocess.Transform{Theta: 0.3}, other)
	if err != nil {
		t.Fatal(err)
	}
	var rest float32
	zeroed := 0
	for y := range 64 {
		for x := range 96 {
			near := false
			for yy := max(0, y-margin); yy <= min(63, y+margin) && !near; yy++ {
				for xx := max(0, x-margin); xx <= min(95, x+margin); xx++ {
					if !inside[yy].Contains(xx) {
						near = true
						break
					}
				}
			}
			v := other.Values[y*96+x]
			if near {
				zeroed++
				if v != 0 {
					t.Fatalf("heatmap (%d,%d) = %v within %d px of replicated border, want 0", x, y, v, margin)
				}
			} else {
				rest = max(rest, v)
			}
		}
	}
	if other.Outside != float64(found)/(96*64) {
		t.Errorf("heatmap Outside = %v, want %d/%d (the pixels outside, before the margin)", other.Outside, found, 96*64)
	}
	if score != rest || rest == 0 || zeroed == 0 || zeroed == 96*64 {
		t.Errorf("score %v, maximum of the unsuppressed heatmap %v (%d of %d pixels suppressed)", score, rest, zeroed, 96*64)
	}
}

func TestEngineLocalizeAllocatesNothing(t *testing.T) {
	e := testEngine(t, netdef.RandomBundleOptions{Height: 64, Width: 64, D: 8, AlignSize: 32, Seed: 1})
	frame := partFrame()
	hm := e.NewHeatmap()
	tr := preprocess.Transform{Tx: 0.05, Theta: 0.1}
	if _, err := e.Localize(frame, image.Rectangle{}, tr, hm); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := e.Localize(frame, image.Rectangle{}, tr, hm); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Localize allocates %v times per frame, want 0", allocs)
	}
}

func TestEngineAlignNoneIsIdentity(t *testing.T) {
	e := testEngine(t, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 8, NoAlign: true, Seed: 2})
	tr, err := e.Align(partFrame(), image.Rectangle{})
	if err != nil || tr != (preprocess.Transform{}) {
		t.Fatalf("Align = %+v, %v; want identity", tr, err)
	}
}

func TestEngineErrors(t *testing.T) {
	rt := openRuntime(t)
	b := testBundle(t, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 8, AlignSize: 16, Seed: 2})

	ecc := *b
	ecc.Manifest.Align.Method = bundle.AlignECC
	if _, err := NewEngine(rt, &ecc, EngineOptions{}); err == nil || !strings.Contains(err.Error(), `align method "ecc"`) {
		t.Errorf("ecc bundle: err = %v", err)
	}
	if _, err := NewEngine(rt, b, EngineOptions{Provider: "tensorrt"}); err == nil || !strings.Contains(err.Error(), "tensorrt") {
		t.Errorf("tensorrt without fallback: err = %v", err)
	}
	e, err := NewEngine(rt, b, EngineOptions{Provider: "cuda", AllowFallback: true})
	if err != nil {
		t.Fatalf("cuda with fallback: %v", err)
	}
	defer e.Close()
	if e.Provider() != ProviderCPUFallback || e.FallbackReason() == nil {
		t.Errorf("fallback provider = %q (reason %v), want %q with a reason", e.Provider(), e.FallbackReason(), ProviderCPUFallback)
	}
	if _, err := e.Localize(partFrame(), image.Rectangle{}, preprocess.Transform{}, &preprocess.Heatmap{Values: make([]float32, 3)}); err == nil || !strings.Contains(err.Error(), "use Engine.NewHeatmap") {
		t.Errorf("wrong heatmap size: err = %v", err)
	}
	if _, err := e.Localize(partFrame(), image.Rect(150, 100, 300, 200), preprocess.Transform{}, e.NewHeatmap()); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("roi outside the frame: err = %v", err)
	}
}

func benchEngine(b *testing.B) (*Engine, *image.RGBA) {
	e := testEngine(b, netdef.RandomBundleOptions{Seed: 1})
	img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 31)
	}
	return e, img
}

// BenchmarkLocalize measures the full localisation of a 720p frame at the
// standard 256×256 input on 2 threads: warp + resize + graph.
func BenchmarkLocalize(b *testing.B) {
	e, img := benchEngine(b)
	hm := e.NewHeatmap()
	roi := image.Rect(280, 0, 1000, 720)
	tr := preprocess.Transform{Tx: 0.02, Theta: 0.05}
	if _, err := e.Localize(img, roi, tr, hm); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Localize(img, roi, tr, hm); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAlign measures the IMM regressor on a 720p frame (resize to
// 128×128 grey + graph), 2 threads.
func BenchmarkAlign(b *testing.B) {
	e, img := benchEngine(b)
	roi := image.Rect(280, 0, 1000, 720)
	if _, err := e.Align(img, roi); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Align(img, roi); err != nil {
			b.Fatal(err)
		}
	}
}

package ecc

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/inspectd/inspectd/models/preprocess"
)

// part draws a w×h frame: a bright plate with a hole and a notch on a dark
// background, lit by a gradient, scaled in brightness by gain.
func part(w, h int, gain float64) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	cx, cy := float64(w)/2, float64(h)/2
	for y := range h {
		for x := range w {
			dx, dy := float64(x)-cx, float64(y)-cy
			v := 30.0
			if math.Abs(dx) < 0.3*float64(w) && math.Abs(dy) < 0.25*float64(h) {
				v = 180 + 40*dx/float64(w)
				if math.Hypot(dx-0.12*float64(w), dy) < 0.08*float64(h) {
					v = 40 // hole
				}
				if dx < -0.2*float64(w) && dy > 0.1*float64(h) {
					v = 60 // notch
				}
			}
			g := uint8(math.Min(255, v*gain))
			img.SetRGBA(x, y, color.RGBA{g, g, g, 255})
		}
	}
	return img
}

// grey prepares img as the align input: w×h grey, optionally warped.
func grey(t *testing.T, img image.Image, w, h int, warp *preprocess.Affine) []float32 {
	return planes(t, img, 1, w, h, warp)
}

// planes prepares img as a w×h align input of channels planes.
func planes(t *testing.T, img image.Image, channels, w, h int, warp *preprocess.Affine) []float32 {
	t.Helper()
	out := make([]float32, channels*w*h)
	if err := preprocess.Fill(out, img, preprocess.Spec{Width: w, Height: h, Channels: channels, Warp: warp}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRefineRecoversKnownPose: the template is the frame warped by a known
// transform; starting up to 20 px and 6° off, the refinement returns to it,
// on a non-square crop, with the template 30 % brighter, from grey and from
// RGB inputs.
func TestRefineRecoversKnownPose(t *testing.T) {
	const fw, fh, w, h = sceneW, sceneH, sceneSize, sceneSize
	truth := preprocess.Transform{Tx: 0.06, Ty: -0.04, Theta: 8 * math.Pi / 180}
	var r Refiner
	for _, channels := range []int{1, 3} {
		src, tpl := scene(t, truth, channels)
		for i, off := range []preprocess.Transform{
			{Tx: 0.05, Ty: 0.04, Theta: 4 * math.Pi / 180},
			{Tx: -0.08, Ty: 0, Theta: -6 * math.Pi / 180},
			{Tx: 0.02, Ty: -0.07, Theta: 0},
		} {
			start := preprocess.Transform{Tx: truth.Tx + off.Tx, Ty: truth.Ty + off.Ty, Theta: truth.Theta + off.Theta}
			got, res := r.Refine(src, tpl, channels, w, h, fw, fh, start)
			if !res.Kept || !(res.After > res.Before) {
				t.Fatalf("%d channels, start %d: not kept (%+v)", channels, i, res)
			}
			// Errors in crop pixels and degrees.
			ex, ey := (got.Tx-truth.Tx)*fw/2, (got.Ty-truth.Ty)*fh/2
			ed := (got.Theta - truth.Theta) * 180 / math.Pi
			if math.Hypot(ex, ey) > 1.5 || math.Abs(ed) > 0.5 {
				t.Errorf("%d channels, start %d (%.1f px, %.1f° off): refined to %.2f px, %.2f° off the truth (correlation %.4f → %.4f)",
					channels, i, math.Hypot(off.Tx*fw/2, off.Ty*fh/2), off.Theta*180/math.Pi, math.Hypot(ex, ey), ed, res.Before, res.After)
			}
		}
	}
}

// scene sizes: a 320×240 frame seen at the 128×128 align input.
const sceneW, sceneH, sceneSize = 320, 240, 128

// scene returns the align inputs of a frame with the part (src) and of the
// template (tpl, 30 % brighter): the frame warped by truth, so that truth
// is the transform a refinement should find.
func scene(t *testing.T, truth preprocess.Transform, channels int) (src, tpl []float32) {
	t.Helper()
	warp := truth.Pixel(sceneW, sceneH)
	tpl = planes(t, part(sceneW, sceneH, 1.3), channels, sceneSize, sceneSize, &warp)
	src = planes(t, part(sceneW, sceneH, 1), channels, sceneSize, sceneSize, nil)
	return src, tpl
}

// TestSearchRecoversWideMiss: a regressor answer 30–55° off the truth is
// beyond what Refine reaches (it keeps the answer or stops short); Search
// starts from turns of it and returns to the truth. From an answer already
// near the truth it does as well as Refine.
func TestSearchRecoversWideMiss(t *testing.T) {
	const fw, fh, w, h = sceneW, sceneH, sceneSize, sceneSize
	truth := preprocess.Transform{Tx: 0.04, Ty: -0.03, Theta: 10 * math.Pi / 180}
	var r Refiner
	for _, channels := range []int{1, 3} {
		src, tpl := scene(t, truth, channels)
		for _, tc := range []struct {
			off       preprocess.Transform
			refineMay bool // Refine reaches the truth too
		}{
			{preprocess.Transform{Tx: 0.03, Theta: 4 * math.Pi / 180}, true},
			{preprocess.Transform{Tx: 0.03, Ty: 0.02, Theta: -30 * math.Pi / 180}, false},
			{preprocess.Transform{Tx: -0.02, Theta: 40 * math.Pi / 180}, false},
			{preprocess.Transform{Ty: 0.03, Theta: -55 * math.Pi / 180}, false},
		} {
			start := preprocess.Transform{Tx: truth.Tx + tc.off.Tx, Ty: truth.Ty + tc.off.Ty, Theta: truth.Theta + tc.off.Theta}
			offBy := func(got preprocess.Transform) (float64, float64) {
				return math.Hypot((got.Tx-truth.Tx)*fw/2, (got.Ty-truth.Ty)*fh/2), math.Abs(got.Theta-truth.Theta) * 180 / math.Pi
			}
			if !tc.refineMay {
				got, _ := r.Refine(src, tpl, channels, w, h, fw, fh, start)
				if px, deg := offBy(got); px < 3 && deg < 1 {
					t.Errorf("%d channels, %.0f° off: Refine alone reached the truth (%.2f px, %.2f°): the case does not test the search",
						channels, tc.off.Theta*180/math.Pi, px, deg)
				}
			}
			got, res := r.Search(src, tpl, channels, w, h, fw, fh, start)
			if px, deg := offBy(got); !res.Kept || px > 1.5 || deg > 0.5 {
				t.Errorf("%d channels, start %.0f° off: searched to %.2f px, %.2f° off the truth (kept %v, correlation %.4f → %.4f)",
					channels, tc.off.Theta*180/math.Pi, px, deg, res.Kept, res.Before, res.After)
			}
		}
	}
}

// TestMethodNamed: the align.refine names of a bundle choose the
// refinement; an unknown name is refused.
func TestMethodNamed(t *testing.T) {
	var r Refiner
	for _, tc := range []struct {
		name         string
		known, found bool
	}{
		{"", true, false}, {"none", true, false}, {"ecc", true, true}, {"ecc-search", true, true}, {"lk", false, false},
	} {
		m, known := r.MethodNamed(tc.name)
		if known != tc.known || (m != nil) != tc.found {
			t.Errorf("MethodNamed(%q) = method %v, known %v; want method %v, known %v", tc.name, m != nil, known, tc.found, tc.known)
		}
	}
}

// TestRefineKeepsTransformWithoutMatch: against an unrelated template (noise)
// or a flat one, or with sizes that do not fit, the module's transform
// comes back unchanged.
func TestRefineKeepsTransformWithoutMatch(t *testing.T) {
	const fw, fh, w, h = 200, 200, 64, 64
	src := grey(t, part(fw, fh, 1), w, h, nil)
	noise := make([]float32, w*h)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = rng.Float32()
	}
	flat := make([]float32, w*h)
	start := preprocess.Transform{Tx: 0.03, Ty: 0.01, Theta: 0.02}
	var r Refiner
	for name, tpl := range map[string][]float32{"noise": noise, "flat": flat} {
		if got, res := r.Refine(src, tpl, 1, w, h, fw, fh, start); got != start || res.Kept {
			t.Errorf("%s: moved to %+v (%+v)", name, got, res)
		}
	}
	if got, res := r.Refine(src, noise[:10], 1, w, h, fw, fh, start); got != start || res.Kept {
		t.Errorf("short template: %+v %+v", got, res)
	}
	for name, tpl := range map[string][]float32{"noise": noise, "flat": flat, "short": noise[:10]} {
		if got, res := r.Search(src, tpl, 1, w, h, fw, fh, start); got != start || res.Kept {
			t.Errorf("search, %s: moved to %+v (%+v)", name, got, res)
		}
	}
}

// TestRefineAllocatesNothing: after the first call a Refiner reuses its
// buffers.
func TestRefineAllocatesNothing(t *testing.T) {
	const fw, fh, w, h = 320, 240, 128, 128
	warp := preprocess.Transform{Tx: 0.03, Theta: 0.05}.Pixel(fw, fh)
	tpl := grey(t, part(fw, fh, 1), w, h, &warp)
	src := grey(t, part(fw, fh, 1), w, h, nil)
	var r Refiner
	r.Refine(src, tpl, 1, w, h, fw, fh, preprocess.Transform{})
	if n := testing.AllocsPerRun(5, func() { r.Refine(src, tpl, 1, w, h, fw, fh, preprocess.Transform{}) }); n != 0 {
		t.Errorf("%v allocations per refinement, want 0", n)
	}
	if n := testing.AllocsPerRun(5, func() { r.Search(src, tpl, 1, w, h, fw, fh, preprocess.Transform{}) }); n != 0 {
		t.Errorf("%v allocations per search, want 0", n)
	}
}

// BenchmarkRefine: one refinement at the align input size (128×128) from
// a start 5 % and 4° off.
func BenchmarkRefine(b *testing.B) {
	benchmarkMethod(b, func(r *Refiner) Method { return r.Refine })
}

// BenchmarkSearch: one search from the same start.
func BenchmarkSearch(b *testing.B) {
	benchmarkMethod(b, func(r *Refiner) Method { return r.Search })
}

func benchmarkMethod(b *testing.B, of func(*Refiner) Method) {
	const fw, fh, w, h = 640, 480, 128, 128
	truth := preprocess.Transform{Tx: 0.04, Ty: -0.03, Theta: 0.1}
	warp := truth.Pixel(fw, fh)
	tpl := make([]float32, w*h)
	src := make([]float32, w*h)
	if err := preprocess.Fill(tpl, part(fw, fh, 1), preprocess.Spec{Width: w, Height: h, Channels: 1, Warp: &warp}); err != nil {
		b.Fatal(err)
	}
	if err := preprocess.Fill(src, part(fw, fh, 1), preprocess.Spec{Width: w, Height: h, Channels: 1}); err != nil {
		b.Fatal(err)
	}
	start := preprocess.Transform{Tx: truth.Tx + 0.05, Ty: truth.Ty, Theta: truth.Theta + 0.07}
	var r Refiner
	run := of(&r)
	for b.Loop() {
		run(src, tpl, 1, w, h, fw, fh, start)
	}
}

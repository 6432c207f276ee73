package evaluate

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
)

// fakeClock is a manual clock: only the fake engine advances it.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// fakeEngine "localises" by resampling the image itself, as grey, to the
// model size (through the same warp as the real engine): the heatmap is the
// image and the score its maximum. Align returns tr. Each Align call i
// (from 0) takes i+1 ms and each Localize call 10·(i+1) ms on the clock.
type fakeEngine struct {
	w, h       int
	thr        float64
	tr         preprocess.Transform
	clock      *fakeClock
	aligns     int
	localizes  int
	onLocalize func(n int)     // called after the n-th Localize (from 1)
	outside    map[int]float64 // the n-th Localize's heatmap Outside fraction
}

func (f *fakeEngine) Manifest() bundle.Manifest {
	var m bundle.Manifest
	m.Product = "fake"
	m.Input.Width, m.Input.Height = f.w, f.h
	m.Align.Method = bundle.AlignIMM
	m.Calibration.ImageThreshold = f.thr
	m.Calibration.PixelThreshold = f.thr // the heatmap's maximum is the score: regions add nothing
	return m
}

func (f *fakeEngine) ModelHash() string { return "fakehash" }

func (f *fakeEngine) NewHeatmap() *preprocess.Heatmap {
	return &preprocess.Heatmap{Width: f.w, Height: f.h, Values: make([]float32, f.w*f.h)}
}

func (f *fakeEngine) Align(frame image.Image, roi image.Rectangle) (preprocess.Transform, error) {
	f.aligns++
	if f.clock != nil {
		f.clock.t = f.clock.t.Add(time.Duration(f.aligns) * time.Millisecond)
	}
	return f.tr, nil
}

func (f *fakeEngine) Localize(frame image.Image, roi image.Rectangle, t preprocess.Transform, dst *preprocess.Heatmap) (float32, error) {
	f.localizes++
	if f.clock != nil {
		f.clock.t = f.clock.t.Add(time.Duration(10*f.localizes) * time.Millisecond)
	}
	spec := preprocess.Spec{Width: f.w, Height: f.h, Channels: 1}
	if t != (preprocess.Transform{}) {
		b := frame.Bounds()
		w := t.Pixel(b.Dx(), b.Dy())
		spec.Warp = &w
	}
	if err := preprocess.Fill(dst.Values, frame, spec); err != nil {
		return 0, err
	}
	var m float32
	for _, v := range dst.Values {
		m = max(m, v)
	}
	if f.onLocalize != nil {
		f.onLocalize(f.localizes)
	}
	dst.Outside = f.outside[f.localizes]
	return m, nil
}

// writeGray writes a w×h grey PNG whose pixels are fn(x, y).
func writeGray(t *testing.T, path string, w, h int, fn func(x, y int) uint8) {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Pix[y*img.Stride+x] = fn(x, y)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// background is the grey level of the hand-made defect images' background.
const background = 13

// handCategory writes an 8×8 category: 4 good test images of uniform grey
// goodLevels, and per defect type 2 images of background with a 2×2 patch
// at its level (masks on the patch when masks is set).
func handCategory(t *testing.T, root, name string, masks bool) *dataset.Category {
	t.Helper()
	dir := filepath.Join(root, name)
	writeGray(t, filepath.Join(dir, "train", "good", "000.png"), 8, 8, func(x, y int) uint8 { return 20 })
	// Grey levels (score = level/255): good 0.1 0.2 0.3 0.6, crack 0.4
	// 0.7, dent 0.5 0.8; defect patches are 2×2 at these corners.
	goodLevels := []uint8{26, 51, 77, 153}
	levels := map[string][]uint8{"crack": {102, 179}, "dent": {128, 204}}
	patches := map[string][2]int{"crack": {2, 2}, "dent": {5, 5}}
	for i, v := range goodLevels {
		writeGray(t, filepath.Join(dir, "test", "good", "00"+string(rune('0'+i))+".png"), 8, 8, func(x, y int) uint8 { return v })
	}
	for d, lv := range levels {
		p := patches[d]
		in := func(x, y int) bool { return x >= p[0] && x < p[0]+2 && y >= p[1] && y < p[1]+2 }
		for i, v := range lv {
			n := "00" + string(rune('0'+i))
			writeGray(t, filepath.Join(dir, "test", d, n+".png"), 8, 8, func(x, y int) uint8 {
				if in(x, y) {
					return v
				}
				return background
			})
			if masks {
				writeGray(t, filepath.Join(dir, "ground_truth", d, n+"_mask.png"), 8, 8, func(x, y int) uint8 {
					if in(x, y) {
						return 255
					}
					return 0
				})
			}
		}
	}
	c, err := dataset.OpenCategory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.HasMasks != masks || len(c.Test) != 8 {
		t.Fatalf("hand category: masks %v, %d test images", c.HasMasks, len(c.Test))
	}
	return c
}

func near(t *testing.T, what string, got *float64, want, tol float64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s absent, want %.6f", what, want)
		return
	}
	if math.Abs(*got-want) > tol {
		t.Errorf("%s = %.6f, want %.6f", what, *got, want)
	}
}

func TestHandComputedMetrics(t *testing.T) {
	cat := handCategory(t, t.TempDir(), "hand", true)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	eng := &fakeEngine{w: 8, h: 8, thr: 0.45, clock: clk}
	var prog bytes.Buffer
	rep, err := Run(context.Background(), eng, []*dataset.Category{cat}, Options{Progress: &prog, now: clk.now, terminal: func(io.Writer) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Categories[0]
	if c.Count != 8 || c.Anomalous != 4 || eng.aligns != 8 || eng.localizes != 8 {
		t.Fatalf("%d images, %d anomalous, %d aligns, %d localizes", c.Count, c.Anomalous, eng.aligns, eng.localizes)
	}
	// Image level: each defect outranks 3, 3, 4, 4 of the 4 good images.
	near(t, "image AUROC", c.ImageAUROC, 14.0/16, 1e-12)
	// At 0.45: TP 0.5 0.7 0.8, FP 0.6, FN 0.4 → P = R = F1 = 0.75.
	if a := c.AtThreshold; a == nil || a.TP != 3 || a.FP != 1 || a.FN != 1 || a.TN != 3 || math.Abs(a.F1-0.75) > 1e-12 {
		t.Errorf("at threshold = %+v, want TP 3 FP 1 FN 1 TN 3 F1 0.75", a)
	}
	// Best: threshold 0.4 → TP 4, FP 1: P 0.8, R 1, F1 8/9.
	if b := c.BestF1; b == nil || math.Abs(b.Threshold-102.0/255) > 1e-6 || math.Abs(b.F1-8.0/9) > 1e-12 || b.Recall != 1 {
		t.Errorf("best F1 = %+v, want threshold 0.4, F1 8/9", b)
	}
	// Pixel level: 16 defect pixels (4 per level 0.4 0.5 0.7 0.8), 496
	// normal (4×64 good at 0.1–0.6, 4×60 background at 0.05).
	near(t, "pixel AUROC", c.PixelAUROC, 4*(432+432+496+496)/(16.0*496), 1e-9)
	near(t, "pixel AP", c.PixelAP, 0.5+0.25*(12.0/76+16.0/80), 1e-9)
	fpr := 64.0 / 496
	near(t, "AUPRO", c.AUPRO, (0.5*fpr+(0.3-fpr))/0.3, 1e-9)

	// Per defect.
	if g := c.PerDefect["good"]; g == nil || g.Count != 4 || g.DetectionRate != 0.25 || g.ImageAUROC != nil {
		t.Errorf("good stats = %+v", g)
	}
	cr := c.PerDefect["crack"]
	if cr == nil || cr.Count != 2 || cr.DetectionRate != 0.5 || math.Abs(cr.MeanScore-(102+179)/2.0/255) > 1e-6 {
		t.Errorf("crack stats = %+v", cr)
	}
	near(t, "crack AUROC", cr.ImageAUROC, 7.0/8, 1e-12)
	if d := c.PerDefect["dent"]; d == nil || d.DetectionRate != 1 {
		t.Errorf("dent stats = %+v", d)
	}

	// Latency from the fake clock: align i+1 ms, localize 10·(i+1) ms.
	want := LatencyReport{Align: Latency{MinMs: 1, MedianMs: 4.5, P99Ms: 8}, Localize: Latency{MinMs: 10, MedianMs: 45, P99Ms: 80}}
	if c.Latency != want {
		t.Errorf("latency = %+v, want %+v", c.Latency, want)
	}
	if !(c.Latency.Align.MedianMs < c.Latency.Localize.MedianMs) {
		t.Error("align median not below localize median")
	}

	// Progress on a terminal: one redraw per image after the initial line,
	// then '\n'.
	p := prog.String()
	if strings.Count(p, "\r") != 9 || !strings.HasSuffix(p, "\n") || !strings.Contains(p, "8/8") ||
		!strings.Contains(p, "img/s") || !strings.Contains(p, "ETA") || strings.Count(p, "\n") != 1 {
		t.Errorf("progress output %q", p)
	}

	// Threshold override, with the pixel threshold raised alike.
	rep2, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45}, []*dataset.Category{cat}, Options{Threshold: 0.75, Decision: config.Decision{PixelThreshold: 0.75}})
	if err != nil {
		t.Fatal(err)
	}
	if a := rep2.Categories[0].AtThreshold; a == nil || a.TP != 1 || a.FP != 0 || rep2.Bundle.ThresholdSource != "override" || rep2.Bundle.Threshold != 0.75 ||
		rep2.Bundle.PixelThreshold != 0.75 || rep2.Bundle.PixelThresholdSource != "config" {
		t.Errorf("override: %+v, bundle %+v", a, rep2.Bundle)
	}
}

// TestVerdictsAreTheDecision: the figures at the threshold count the
// daemon's verdicts. With the image threshold raised to 0.75 and the
// bundle's pixel threshold 0.45 left in force (as the daemon does with
// [decision] threshold alone), the good image at 0.6 and the defects at
// 0.5 and 0.7 are NG by region, the defect at 0.8 by score; a
// min_defect_area larger than the 4-pixel defects (in a 64-pixel image,
// 8×8 heatmap: one heatmap pixel per image pixel) drops those regions.
func TestVerdictsAreTheDecision(t *testing.T) {
	cat := handCategory(t, t.TempDir(), "hand", true)
	cases := []struct {
		name                 string
		opts                 Options
		tp, fp, fn, byRegion int
		goodReason           string
	}{
		{"image threshold only", Options{Threshold: 0.75}, 3, 1, 1, 1, inspection.ReasonRegion},
		{"config threshold only", Options{Decision: config.Decision{Threshold: 0.75}}, 3, 1, 1, 1, inspection.ReasonRegion},
		{"min_defect_area drops small regions", Options{Threshold: 0.75, Decision: config.Decision{MinDefectArea: 5}}, 1, 1, 3, 1, inspection.ReasonRegion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45}, []*dataset.Category{cat}, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			c := rep.Categories[0]
			a := c.AtThreshold
			if a == nil || int(a.TP) != tc.tp || int(a.FP) != tc.fp || int(a.FN) != tc.fn || c.GoodRejectedByRegion != tc.byRegion ||
				c.FalseRejects != tc.fp || c.Escapes != tc.fn || *c.FRR != float64(tc.fp)/4 || *c.EscapeRate != float64(tc.fn)/4 {
				t.Fatalf("at threshold %+v, false rejects %d (%d by region), escapes %d; want TP %d FP %d FN %d, %d by region",
					a, c.FalseRejects, c.GoodRejectedByRegion, c.Escapes, tc.tp, tc.fp, tc.fn, tc.byRegion)
			}
			if g := c.PerDefect["good"]; g.DetectionRate != float64(tc.fp)/4 {
				t.Errorf("good detection rate %v, want %v", g.DetectionRate, float64(tc.fp)/4)
			}
			reasons := map[string]string{}
			for _, s := range c.Scores {
				if s.Verdict.Rejects() != (s.Reason != inspection.ReasonPass) {
					t.Errorf("%s: verdict %s reason %s", s.Path, s.Verdict, s.Reason)
				}
				reasons[s.Defect+"@"+strconv.FormatFloat(math.Round(s.Score*10)/10, 'f', 1, 64)] = s.Reason
			}
			if reasons["good@0.6"] != tc.goodReason {
				t.Errorf("good at 0.6: reason %q, want %q (%v)", reasons["good@0.6"], tc.goodReason, reasons)
			}
			if reasons["crack@0.8"] != inspection.ReasonScore && reasons["dent@0.8"] != inspection.ReasonScore {
				t.Errorf("defect at 0.8 not NG by score: %v", reasons)
			}
		})
	}
}

// TestOutOfFrame: an image aligned with more than the allowed fraction of
// the input outside the frame scores 1 (the daemon rejects it), is marked
// in the JSON and counted in a note; below the limit nothing changes.
func TestOutOfFrame(t *testing.T) {
	cat := handCategory(t, t.TempDir(), "hand", true)
	base, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45}, []*dataset.Category{cat}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		limit float64
		flags []bool
	}{
		{0, []bool{true, false}},  // the default, 0.5
		{0.2, []bool{true, true}}, // both above
		{0.95, []bool{false, false}},
	} {
		rep, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45, outside: map[int]float64{1: 0.9, 2: 0.3}},
			[]*dataset.Category{cat}, Options{MaxOutsideFraction: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		c := rep.Categories[0]
		n := 0
		for i, flagged := range tc.flags {
			im := c.Images[i]
			want := base.Categories[0].Images[i].Score
			if flagged {
				want, n = 1, n+1
			}
			if im.OutOfFrame != flagged || im.Score != want || c.Scores[i].OutOfFrame != flagged {
				t.Errorf("limit %g, image %d: out of frame %v, score %v; want %v, %v", tc.limit, i, im.OutOfFrame, im.Score, flagged, want)
			}
		}
		note := strings.Join(c.Notes, "\n")
		if (n > 0) != strings.Contains(note, fmt.Sprintf("%d images were aligned with more than", n)) {
			t.Errorf("limit %g: notes %q", tc.limit, c.Notes)
		}
	}
}

func TestLatencyOf(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Latency
	}{
		{nil, Latency{}},
		{[]float64{5}, Latency{MinMs: 5, MedianMs: 5, P99Ms: 5}},
		{[]float64{3, 1, 2}, Latency{MinMs: 1, MedianMs: 2, P99Ms: 3}},
		{func() []float64 {
			v := make([]float64, 200)
			for i := range v {
				v[i] = float64(200 - i)
			}
			return v
		}(), Latency{MinMs: 1, MedianMs: 100.5, P99Ms: 198}},
	} {
		if got := latencyOf(c.in); got != c.want {
			t.Errorf("latencyOf(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestMaskRendering(t *testing.T) {
	m := &dataset.Mask{W: 16, H: 16, Pix: make([]bool, 256)}
	for y := 4; y < 8; y++ {
		for x := 4; x < 8; x++ {
			m.Pix[y*16+x] = true // 4×4 block → 2×2 at (2,2) in 8×8
		}
	}
	m.Pix[12*16+12] = true // a lone pixel covers a quarter of one output pixel
	var r maskRenderer
	got, err := r.render(m, preprocess.Transform{}, 8, 8)
	if err != nil {
		t.Fatal(err)
	}
	for y := range 8 {
		for x := range 8 {
			want := x >= 2 && x < 4 && y >= 2 && y < 4
			if got[y*8+x] != want {
				t.Fatalf("mask (%d,%d) = %v, want %v", x, y, got[y*8+x], want)
			}
		}
	}
	if got, _ := r.render(&dataset.Mask{W: 16, H: 16, Pix: make([]bool, 256)}, preprocess.Transform{}, 8, 8); got != nil {
		t.Error("empty mask gave defect pixels")
	}
}

// TestMaskCoverageIsArea: a heatmap pixel is defect when more than half of
// its footprint is, at reductions and enlargements that are not whole
// numbers too — checked against the exact overlap of random rectangles,
// without a warp exactly and under a shift (sampled at 8×8 points: pixels
// within 1/8 of one half are not judged) — whatever the pixel centres hit.
func TestMaskCoverageIsArea(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var mr maskRenderer
	overlap := func(a0, a1, b0, b1 float64) float64 { return max(0, min(a1, b1)-max(a0, b0)) }
	for _, shifted := range []bool{false, true} {
		judged := 0
		for trial := range 200 {
			mw, mh := 20+r.IntN(60), 20+r.IntN(60)
			w, h := 8+r.IntN(2*mw), 8+r.IntN(2*mh)
			x0, y0 := r.IntN(mw-1), r.IntN(mh-1)
			x1, y1 := x0+1+r.IntN(min(6, mw-x0)), y0+1+r.IntN(mh-y0)
			m := &dataset.Mask{W: mw, H: mh, Pix: make([]bool, mw*mh)}
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					m.Pix[y*mw+x] = true
				}
			}
			var tr preprocess.Transform
			var dx, dy float64 // the warp's shift in mask pixels
			tol := 1e-9
			if shifted {
				tr = preprocess.Transform{Tx: (r.Float64() - 0.5) * 0.2, Ty: (r.Float64() - 0.5) * 0.2}
				p := tr.Pixel(mw, mh)
				dx, dy, tol = p[0][2], p[1][2], 1.0/8
			}
			got, err := mr.render(m, tr, w, h)
			if err != nil {
				t.Fatal(err)
			}
			sx, sy := float64(mw)/float64(w), float64(mh)/float64(h)
			for y := range h {
				for x := range w {
					area := overlap(float64(x)*sx+dx, float64(x+1)*sx+dx, float64(x0), float64(x1)) *
						overlap(float64(y)*sy+dy, float64(y+1)*sy+dy, float64(y0), float64(y1)) / (sx * sy)
					if math.Abs(area-0.5) < tol {
						continue
					}
					judged++
					if defect := got != nil && got[y*w+x]; defect != (area > 0.5) {
						t.Fatalf("trial %d (shift %v by %.2f, %.2f px): %dx%d mask, rectangle [%d,%d)×[%d,%d) onto %dx%d: pixel (%d,%d) covers %.4f of it, defect = %v",
							trial, shifted, dx, dy, mw, mh, x0, x1, y0, y1, w, h, x, y, area, defect)
					}
				}
			}
		}
		if judged < 200000 {
			t.Errorf("shift %v: only %d pixels judged", shifted, judged)
		}
	}
	// A crack 2 mask pixels wide at a 1.5× reduction: bilinear sampling at
	// pixel centres finds it in two columns at a third and two thirds;
	// by area it is one column, wholly covered.
	m := &dataset.Mask{W: 30, H: 30, Pix: make([]bool, 900)}
	for y := range 30 {
		m.Pix[y*30+10], m.Pix[y*30+11] = true, true
	}
	got, _ := mr.render(m, preprocess.Transform{}, 20, 20)
	for x := range 20 {
		if got[5*20+x] != (x == 7) {
			t.Errorf("crack at mask columns 10–11 onto 20 px: column %d defect = %v, want only column 7", x, got[5*20+x])
		}
	}
}

// TestAlignedMasks checks that masks are warped like the heatmap: the
// images are their own masks and the fake heatmap is the warped image, so
// the pixel AUROC is 1 only if the mask follows the alignment transform.
func TestAlignedMasks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "aligned")
	blob := func(x, y int) uint8 {
		if x >= 20 && x < 28 && y >= 4 && y < 12 {
			return 255
		}
		return 0
	}
	writeGray(t, filepath.Join(dir, "train", "good", "000.png"), 32, 32, func(x, y int) uint8 { return 0 })
	writeGray(t, filepath.Join(dir, "test", "good", "000.png"), 32, 32, func(x, y int) uint8 { return 0 })
	writeGray(t, filepath.Join(dir, "test", "blob", "000.png"), 32, 32, blob)
	writeGray(t, filepath.Join(dir, "ground_truth", "blob", "000_mask.png"), 32, 32, blob)
	cat, err := dataset.OpenCategory(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := preprocess.Transform{Tx: 0.15, Ty: -0.1, Theta: 0.4}
	rep, err := Run(context.Background(), &fakeEngine{w: 16, h: 16, thr: 0.5, tr: tr}, []*dataset.Category{cat}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "aligned pixel AUROC", rep.Categories[0].PixelAUROC, 1, 1e-3)

	// The same heatmaps against unwarped masks score clearly worse, so the
	// check above can fail.
	var mr maskRenderer
	img, m, err := cat.Test[1].Load()
	if err != nil {
		t.Fatal(err)
	}
	eng := &fakeEngine{w: 16, h: 16}
	hm := eng.NewHeatmap()
	if _, err := eng.Localize(img, image.Rectangle{}, tr, hm); err != nil {
		t.Fatal(err)
	}
	plain, _ := mr.render(m, preprocess.Transform{}, 16, 16)
	agree := 0
	for i, v := range hm.Values {
		if (v > 0.5) == plain[i] {
			agree++
		}
	}
	if agree == len(hm.Values) {
		t.Fatal("the transform does not move the blob; the test cannot tell warped from unwarped masks")
	}

	// --save-maps writes the heatmap back in the image's frame, where the
	// peers' (unwarped) masks apply: the blob where the image has it.
	out := t.TempDir()
	if _, err := Run(context.Background(), &fakeEngine{w: 16, h: 16, thr: 0.5, tr: tr}, []*dataset.Category{cat}, Options{MapsDir: out}); err != nil {
		t.Fatal(err)
	}
	z, err := zip.OpenReader(filepath.Join(out, "aligned_maps.npz"))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	_, _, data := readNPY(t, &z.Reader, "maps")
	saved := make([]float32, 256)
	for k := range saved {
		saved[k] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*(256+k):])) // image 1: the blob
	}
	inBlob, outside := 0, 0
	for y := range 16 {
		for x := range 16 {
			switch {
			case x >= 11 && x < 13 && y >= 3 && y < 5: // the blob's middle, unwarped
				if saved[y*16+x] > 0.9 {
					inBlob++
				}
			case x < 8 || y > 8: // well away from it
				if saved[y*16+x] > 0.1 {
					outside++
				}
			}
		}
	}
	if inBlob != 4 || outside != 0 || hm.Values[4*16+12] > 0.5 {
		t.Errorf("saved map: %d of the blob's 4 middle pixels high (want 4), %d pixels away from it high (want 0); the aligned heatmap there %.2f (must be low, or the test proves nothing)",
			inBlob, outside, hm.Values[4*16+12])
	}
}

func decodeJSON(t *testing.T, rep *Report) map[string]any {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b.Bytes(), &out); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return out
}

func TestJSONShape(t *testing.T) {
	root := t.TempDir()
	masked := handCategory(t, root, "masked", true)
	plain := handCategory(t, root, "plain", false)
	rep, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45}, []*dataset.Category{masked, plain}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := decodeJSON(t, rep)
	if len(out) != 2 || out["bundle"] == nil || out["categories"] == nil {
		t.Fatalf("top-level keys: %v", out)
	}
	if b := out["bundle"].(map[string]any); b["product"] != "fake" || b["model_hash"] != "fakehash" || b["threshold"] != 0.45 {
		t.Errorf("bundle = %v", b)
	}
	cats := out["categories"].(map[string]any)
	common := []string{"image_auroc", "f1_at_threshold", "threshold", "best_f1", "per_defect", "latency_ms"}
	pixel := []string{"pixel_auroc", "pixel_ap", "aupro"}
	m := cats["masked"].(map[string]any)
	p := cats["plain"].(map[string]any)
	for _, k := range append(common, pixel...) {
		if _, ok := m[k]; !ok {
			t.Errorf("masked category lacks %q", k)
		}
	}
	for _, k := range common {
		if _, ok := p[k]; !ok {
			t.Errorf("plain category lacks %q", k)
		}
	}
	for _, k := range pixel {
		if v, ok := p[k]; ok {
			t.Errorf("plain category has %q = %v, want it absent", k, v)
		}
	}
	notes, _ := p["notes"].([]any)
	if len(notes) != 1 || notes[0] != NoMasksNote {
		t.Errorf("plain notes = %v, want [%q]", p["notes"], NoMasksNote)
	}
	if _, ok := m["notes"]; ok {
		t.Errorf("masked category has notes %v", m["notes"])
	}
	lat := m["latency_ms"].(map[string]any)
	for _, stage := range []string{"align", "localize"} {
		s, _ := lat[stage].(map[string]any)
		for _, k := range []string{"min_ms", "median_ms", "p99_ms"} {
			if _, ok := s[k].(float64); !ok {
				t.Errorf("latency_ms.%s.%s missing: %v", stage, k, lat)
			}
		}
	}
	bf := m["best_f1"].(map[string]any)
	if bf["f1"] == nil || bf["threshold"] == nil || bf["precision"] == nil || bf["recall"] == nil {
		t.Errorf("best_f1 = %v", bf)
	}
	pd := m["per_defect"].(map[string]any)
	crack := pd["crack"].(map[string]any)
	for _, k := range []string{"count", "mean_score", "detection_rate", "image_auroc"} {
		if _, ok := crack[k]; !ok {
			t.Errorf("per_defect.crack lacks %q: %v", k, crack)
		}
	}
	if m["f1_at_threshold"] != 0.75 {
		t.Errorf("f1_at_threshold = %v, want 0.75", m["f1_at_threshold"])
	}

	// Only good images: image-level figures needing defects are absent, with notes.
	onlyGood := *plain
	onlyGood.Name = "onlygood"
	onlyGood.Test = plain.Test[:4]
	rep, err = Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45}, []*dataset.Category{&onlyGood}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := decodeJSON(t, rep)["categories"].(map[string]any)["onlygood"].(map[string]any)
	for _, k := range []string{"image_auroc", "f1_at_threshold", "best_f1"} {
		if _, ok := g[k]; ok {
			t.Errorf("only-good category has %q", k)
		}
	}
	if n, _ := g["notes"].([]any); len(n) < 3 {
		t.Errorf("only-good notes = %v, want the undefined figures explained", g["notes"])
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func TestHTMLReport(t *testing.T) {
	root := t.TempDir()
	masked := handCategory(t, root, "masked", true)
	plain := handCategory(t, root, "plain", false)
	rep, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45}, []*dataset.Category{masked, plain}, Options{Overlays: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Categories[0]
	fp, fn := c.WorstGood(), c.WorstDefective()
	if len(fp) != 2 || fp[0].Sample.Name != "003" || fp[1].Sample.Name != "002" {
		t.Errorf("worst good = %v", fp)
	}
	if len(fn) != 2 || fn[0].Sample.Defect != "crack" || fn[0].Sample.Name != "000" || fn[1].Sample.Defect != "dent" || fn[1].Sample.Name != "000" {
		t.Errorf("worst defective = %v", fn)
	}
	dir := filepath.Join(t.TempDir(), "report")
	if err := rep.WriteHTML(dir); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{`<svg class="roc"`, `<svg class="pr"`, `<polyline`, `class="metrics"`, `class="per-defect"`,
		"<td>crack</td>", NoMasksNote, "masked_fp1_good_003.png", "plain_fn2_dent_000.png", "0.8750"} {
		if !strings.Contains(s, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	if strings.Contains(s, "<script") || strings.Contains(s, "http://") && !strings.Contains(s, "http://www.w3.org/2000/svg") {
		t.Error("index.html is not self-contained")
	}
	files := []string{"masked_fp1_good_003.png", "masked_fp2_good_002.png", "masked_fn1_crack_000.png", "masked_fn2_dent_000.png",
		"plain_fp1_good_003.png", "plain_fp2_good_002.png", "plain_fn1_crack_000.png", "plain_fn2_dent_000.png"}
	for _, f := range files {
		img := decodePNG(t, filepath.Join(dir, f))
		if b := img.Bounds(); b.Dx() != 4*8+3*OverlayGap || b.Dy() != 8 {
			t.Errorf("%s is %v, want %dx8", f, b, 4*8+3*OverlayGap)
		}
	}
	// masked crack 000: patch at (2..3, 2..3) is white in the mask panel,
	// the rest black; the heatmap panel is hot on the patch.
	img := decodePNG(t, filepath.Join(dir, "masked_fn1_crack_000.png"))
	mx := 3 * (8 + OverlayGap)
	if r, _, _, _ := img.At(mx+2, 2).RGBA(); r>>8 != 255 {
		t.Errorf("mask panel at the defect = %v, want white", img.At(mx+2, 2))
	}
	if r, _, _, _ := img.At(mx+0, 0).RGBA(); r>>8 != 0 {
		t.Errorf("mask panel off the defect = %v, want black", img.At(mx, 0))
	}
	hx := 2 * (8 + OverlayGap)
	hot, cold := img.At(hx+2, 2), img.At(hx, 0)
	hr, _, _, _ := hot.RGBA()
	cr, _, cb, _ := cold.RGBA()
	if !(hr > cr && cb > cr) {
		t.Errorf("heatmap panel: defect %v, background %v; want the defect redder and the background blue", hot, cold)
	}
	// The original panel shows the image: background grey 13.
	if r, g, b, _ := img.At(0, 0).RGBA(); r>>8 != uint32(background) || g != r || b != r {
		t.Errorf("original panel (0,0) = %v, want grey %d", img.At(0, 0), background)
	}
	// No masks: the mask panel is the grey "no mask" panel.
	img = decodePNG(t, filepath.Join(dir, "plain_fn1_crack_000.png"))
	if r, _, _, _ := img.At(mx+1, 4).RGBA(); r>>8 != noMaskBackgroundGrey {
		t.Errorf("no-mask panel = %v, want grey %d", img.At(mx+1, 4), noMaskBackgroundGrey)
	}
}

func TestCancellation(t *testing.T) {
	cat := handCategory(t, t.TempDir(), "hand", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng := &fakeEngine{w: 8, h: 8, thr: 0.45, onLocalize: func(n int) {
		if n == 3 {
			cancel()
		}
	}}
	var prog bytes.Buffer
	rep, err := Run(ctx, eng, []*dataset.Category{cat}, Options{Progress: &prog})
	if !errors.Is(err, context.Canceled) || rep != nil {
		t.Fatalf("Run after cancel = %v, %v; want context.Canceled", rep, err)
	}
	if eng.localizes != 3 {
		t.Errorf("%d images localised after cancelling at the third", eng.localizes)
	}
	if !strings.HasSuffix(prog.String(), "\n") {
		t.Errorf("progress line not ended after cancel: %q", prog.String())
	}

	eng = &fakeEngine{w: 8, h: 8, thr: 0.45}
	if _, err := Run(ctx, eng, []*dataset.Category{cat}, Options{}); !errors.Is(err, context.Canceled) || eng.aligns != 0 {
		t.Errorf("Run with a cancelled context: %v after %d images", err, eng.aligns)
	}
}

func TestErrors(t *testing.T) {
	root := t.TempDir()
	cat := handCategory(t, root, "hand", false)
	bad := cat.Test[5].Path
	if err := os.WriteFile(bad, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45}, []*dataset.Category{cat}, Options{})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("corrupt image: err = %v, want it to name %s", err, bad)
	}
	dup := handCategory(t, t.TempDir(), "hand", false)
	if _, err := Run(context.Background(), &fakeEngine{w: 8, h: 8}, []*dataset.Category{dup, dup}, Options{}); err == nil || !strings.Contains(err.Error(), "two categories") {
		t.Errorf("duplicate names: err = %v", err)
	}
	empty := *dup
	empty.Test = nil
	if _, err := Run(context.Background(), &fakeEngine{w: 8, h: 8}, []*dataset.Category{&empty}, Options{}); err == nil || !strings.Contains(err.Error(), "no test images") {
		t.Errorf("no test images: err = %v", err)
	}
	// Without a pixel threshold every heatmap pixel would be a region.
	want := "evaluate: pixel threshold 0, expected a number above 0 (the bundle's calibration or [decision] pixel_threshold)"
	if _, err := Run(context.Background(), noPixelThreshold{&fakeEngine{w: 8, h: 8, thr: 0.45}}, []*dataset.Category{dup}, Options{}); err == nil || err.Error() != want {
		t.Errorf("no pixel threshold: err = %v, want %q", err, want)
	}
}

// noPixelThreshold is a bundle without a calibrated pixel threshold.
type noPixelThreshold struct{ *fakeEngine }

func (e noPixelThreshold) Manifest() bundle.Manifest {
	m := e.fakeEngine.Manifest()
	m.Calibration.PixelThreshold = 0
	return m
}

// TestRealEngine runs the ONNX Runtime engine on a random-weight bundle and
// tiny synthetic data end to end.
func TestRealEngine(t *testing.T) {
	rt := infertest.Runtime(t)
	tmp := t.TempDir()
	bdir := filepath.Join(tmp, "bundle")
	if _, err := netdef.WriteRandomBundle(bdir, netdef.RandomBundleOptions{Height: 64, Width: 64, D: 8, AlignSize: 32, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(bdir)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := infer.NewEngine(rt, b, infer.EngineOptions{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := eng.Close(); err != nil {
			t.Error(err)
		}
	})
	data := filepath.Join(tmp, "data")
	if err := synth.Generate(context.Background(), data, synth.Options{Seed: 7, Objects: []string{synth.Gear}, Width: 64, Height: 64,
		TrainGood: 1, TestGood: 2, TestPerDefect: 1, MaxRotationDeg: 10, MaxShiftFrac: 0.05}); err != nil {
		t.Fatal(err)
	}
	cats, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	var prog bytes.Buffer
	rep, err := Run(context.Background(), eng, cats, Options{Progress: &prog, Overlays: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Categories[0]
	n := len(cats[0].Test)
	if c.Count != n || n != 2+len(synth.Defects()) || c.Anomalous != len(synth.Defects()) {
		t.Fatalf("%d images (%d defective) of %d", c.Count, c.Anomalous, n)
	}
	if c.ImageAUROC == nil || c.PixelAUROC == nil || c.PixelAP == nil || c.AUPRO == nil || c.BestF1 == nil || c.AtThreshold == nil {
		t.Errorf("missing figures: %+v, notes %v", c, c.Notes)
	}
	if c.Threshold != b.Manifest.Calibration.ImageThreshold || rep.Bundle.ModelHash != eng.ModelHash() || rep.Bundle.Provider == "" {
		t.Errorf("threshold %v, bundle %+v", c.Threshold, rep.Bundle)
	}
	if !(c.Latency.Localize.MinMs > 0 && c.Latency.Localize.MinMs <= c.Latency.Localize.MedianMs && c.Latency.Localize.MedianMs <= c.Latency.Localize.P99Ms) {
		t.Errorf("localize latency %+v", c.Latency.Localize)
	}
	// The recorded scores are the engine's.
	img, _, err := c.Images[n-1].Sample.Load()
	if err != nil {
		t.Fatal(err)
	}
	hm := eng.NewHeatmap()
	tr, err := eng.Align(img, image.Rectangle{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := eng.Localize(img, image.Rectangle{}, tr, hm)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(s)-c.Images[n-1].Score) > 1e-6 {
		t.Errorf("recorded score %v, engine %v", c.Images[n-1].Score, s)
	}
	if !strings.Contains(prog.String(), strconv.Itoa(n)+"/"+strconv.Itoa(n)) {
		t.Errorf("progress %q", prog.String())
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"aupro"`) {
		t.Errorf("JSON: %v\n%s", err, js.String())
	}
	dir := filepath.Join(tmp, "html")
	if err := rep.WriteHTML(dir); err != nil {
		t.Fatal(err)
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "gear_f*.png"))
	if len(pngs) != 4 {
		t.Errorf("overlays %v, want 2 false positives and 2 false negatives", pngs)
	}
	for _, p := range pngs {
		if b := decodePNG(t, p).Bounds(); b.Dx() != 4*64+3*OverlayGap || b.Dy() != 64 {
			t.Errorf("%s is %v", p, b)
		}
	}
}

// TestMaskNotes: a mask under ground_truth/good is ignored (pixel metrics
// as without it) with a note naming it; an empty mask of a defect image is
// reported as empty, not blamed on resampling; a 0/1 mask counts its 1
// pixels as defect, giving the same pixel metrics as the 0/255 mask.
func TestMaskNotes(t *testing.T) {
	run := func(t *testing.T, cat *dataset.Category) *CategoryReport {
		t.Helper()
		clk := &fakeClock{t: time.Unix(1000, 0)}
		rep, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45, clock: clk}, []*dataset.Category{cat}, Options{now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Categories[0]
	}
	root := t.TempDir()
	base := run(t, handCategory(t, root, "hand", true))

	dir := filepath.Join(root, "hand")
	writeGray(t, filepath.Join(dir, "ground_truth", "good", "000_mask.png"), 8, 8, func(x, y int) uint8 { return 255 })
	withGood, err := dataset.OpenCategory(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := run(t, withGood)
	if *c.PixelAP != *base.PixelAP || *c.PixelAUROC != *base.PixelAUROC {
		t.Errorf("a mask under ground_truth/good changed pixel AP %v → %v", *base.PixelAP, *c.PixelAP)
	}
	if !strings.Contains(strings.Join(c.Notes, "\n"), "(first: 000_mask.png)") {
		t.Errorf("notes do not name the ignored mask: %q", c.Notes)
	}
	if err := os.RemoveAll(filepath.Join(dir, "ground_truth", "good")); err != nil {
		t.Fatal(err)
	}

	// 0/1 masks: the same figures as 0/255.
	for _, d := range []string{"crack", "dent"} {
		for _, n := range []string{"000", "001"} {
			p := filepath.Join(dir, "ground_truth", d, n+"_mask.png")
			m, err := dataset.LoadMask(p)
			if err != nil {
				t.Fatal(err)
			}
			writeGray(t, p, 8, 8, func(x, y int) uint8 {
				if m.Pix[y*8+x] {
					return 1
				}
				return 0
			})
		}
	}
	c = run(t, mustOpen(t, dir))
	if c.PixelAP == nil || *c.PixelAP != *base.PixelAP {
		t.Errorf("0/1 masks: pixel AP %v, want %v as with 0/255; notes %q", c.PixelAP, *base.PixelAP, c.Notes)
	}

	// An empty mask is reported as such.
	writeGray(t, filepath.Join(dir, "ground_truth", "dent", "001_mask.png"), 8, 8, func(x, y int) uint8 { return 0 })
	c = run(t, mustOpen(t, dir))
	notes := strings.Join(c.Notes, "\n")
	if !strings.Contains(notes, "1 defect images have an empty mask") || !strings.Contains(notes, filepath.Join("dent", "001_mask.png")) || strings.Contains(notes, "resampling") {
		t.Errorf("notes = %q, want the empty mask named and no resampling blamed", c.Notes)
	}
}

func mustOpen(t *testing.T, dir string) *dataset.Category {
	t.Helper()
	c, err := dataset.OpenCategory(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readNPY decodes member name.npy of an npz archive: its header's descr and
// shape, and its data.
func readNPY(t *testing.T, z *zip.Reader, name string) (descr, shape string, data []byte) {
	t.Helper()
	f, err := z.Open(name + ".npy")
	if err != nil {
		t.Fatalf("archive member %s.npy: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x93NUMPY\x01\x00")) {
		t.Fatalf("%s.npy: no NumPy magic", name)
	}
	n := int(b[8]) | int(b[9])<<8
	if (10+n)%64 != 0 {
		t.Errorf("%s.npy: data starts at %d, not on a 64-byte boundary", name, 10+n)
	}
	h := string(b[10 : 10+n])
	d := strings.SplitN(strings.SplitN(h, "'descr': '", 2)[1], "'", 2)[0]
	s := strings.SplitN(strings.SplitN(h, "'shape': (", 2)[1], ")", 2)[0]
	return d, s, b[10+n:]
}

// TestSaveMaps: with MapsDir, every category's heatmaps, scores, labels and
// paths land in <category>_maps.npz in the peers' layout, the maps exactly
// what was scored.
func TestSaveMaps(t *testing.T) {
	root := t.TempDir()
	cat := handCategory(t, root, "hand", true)
	out := t.TempDir()
	eng := &fakeEngine{w: 8, h: 8, thr: 0.45}
	rep, err := Run(context.Background(), eng, []*dataset.Category{cat}, Options{MapsDir: out})
	if err != nil {
		t.Fatal(err)
	}
	z, err := zip.OpenReader(filepath.Join(out, "hand_maps.npz"))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	n := len(cat.Test)
	descr, shape, data := readNPY(t, &z.Reader, "maps")
	if descr != "<f4" || shape != fmt.Sprintf("%d, 8, 8", n) || len(data) != 4*n*64 {
		t.Fatalf("maps: %s (%s), %d bytes; want <f4 (%d, 8, 8)", descr, shape, len(data), n)
	}
	descr, shape, scores := readNPY(t, &z.Reader, "scores")
	if descr != "<f8" || shape != fmt.Sprintf("%d,", n) {
		t.Fatalf("scores: %s (%s)", descr, shape)
	}
	_, _, labels := readNPY(t, &z.Reader, "labels")
	descr, _, paths := readNPY(t, &z.Reader, "paths")
	width, _ := strconv.Atoi(strings.TrimPrefix(descr, "<U"))
	for i, res := range rep.Categories[0].Images {
		// The fake engine's heatmap is the image, its score the maximum.
		var top float32
		for k := range 64 {
			top = max(top, math.Float32frombits(binary.LittleEndian.Uint32(data[4*(i*64+k):])))
		}
		score := math.Float64frombits(binary.LittleEndian.Uint64(scores[8*i:]))
		if score != res.Score || float64(top) != res.Score {
			t.Errorf("image %d: saved score %g and map maximum %g, want the scored %g", i, score, top, res.Score)
		}
		if l := binary.LittleEndian.Uint64(labels[8*i:]); (l == 1) != res.Sample.Anomalous() {
			t.Errorf("image %d: label %d for %s", i, l, res.Sample.Path)
		}
		var path []rune
		for k := range width {
			if r := rune(binary.LittleEndian.Uint32(paths[4*(i*width+k):])); r != 0 {
				path = append(path, r)
			}
		}
		if want, _ := filepath.Rel(root, res.Sample.Path); string(path) != want {
			t.Errorf("image %d: path %q, want %q", i, string(path), want)
		}
	}
	// An archive is never overwritten.
	if _, err := Run(context.Background(), eng, []*dataset.Category{cat}, Options{MapsDir: out}); err == nil || !strings.Contains(err.Error(), "heatmap archive") {
		t.Errorf("second run into the same directory: %v, want the archive's error", err)
	}
}

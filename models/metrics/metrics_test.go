package metrics

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type goldenPRF struct {
	Threshold, Precision, Recall, F1 float64
}

type goldenImage struct {
	Name      string
	Scores    []float64
	Labels    []bool
	Threshold float64
	OneClass  bool `json:"one_class"`
	AUROC     float64
	AP        float64
	PRF       goldenPRF
	BestF1    goldenPRF `json:"best_f1"`
}

type goldenMap struct {
	W, H   int
	Scores []float64
	Mask   []int
}

type goldenPixel struct {
	Name  string
	Maps  []goldenMap
	AUROC float64
	AP    float64
	AUPRO float64
}

type golden struct {
	Labeller string
	Images   []goldenImage
	Pixels   []goldenPixel
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		t.Fatalf("golden values (regenerate with testdata/make_golden.py): %v", err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("golden.json: %v", err)
	}
	if len(g.Images) < 8 || len(g.Pixels) < 3 {
		t.Fatalf("golden.json: %d image and %d pixel cases, expected at least 8 and 3", len(g.Images), len(g.Pixels))
	}
	return g
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol {
		t.Errorf("%s = %.9f, want %.9f (tolerance %g)", what, got, want, tol)
	}
}

func nearPRF(t *testing.T, what string, got PRF, want goldenPRF, tol float64) {
	t.Helper()
	near(t, what+" threshold", got.Threshold, want.Threshold, tol)
	near(t, what+" precision", got.Precision, want.Precision, tol)
	near(t, what+" recall", got.Recall, want.Recall, tol)
	near(t, what+" F1", got.F1, want.F1, tol)
}

func TestGoldenImageMetrics(t *testing.T) {
	for _, c := range loadGolden(t).Images {
		t.Run(c.Name, func(t *testing.T) {
			auroc, errA := AUROC(c.Scores, c.Labels)
			if c.OneClass {
				if !errors.Is(errA, ErrOneClass) || !strings.Contains(errA.Error(), "only one class present") {
					t.Errorf("AUROC error = %v, want one that wraps ErrOneClass", errA)
				}
				return
			}
			if errA != nil {
				t.Fatal(errA)
			}
			near(t, "AUROC", auroc, c.AUROC, 1e-6)
			ap, err := AveragePrecision(c.Scores, c.Labels)
			if err != nil {
				t.Fatal(err)
			}
			near(t, "AP", ap, c.AP, 1e-6)
			p, err := PRF1At(c.Scores, c.Labels, c.Threshold)
			if err != nil {
				t.Fatal(err)
			}
			nearPRF(t, "PRF1At", p, c.PRF, 1e-9)
			b, err := BestF1(c.Scores, c.Labels)
			if err != nil {
				t.Fatal(err)
			}
			nearPRF(t, "BestF1", b, c.BestF1, 1e-9)
		})
	}
}

func toMaps(gm []goldenMap) []ScoreMap {
	out := make([]ScoreMap, len(gm))
	for i, m := range gm {
		sm := ScoreMap{W: m.W, H: m.H, Scores: make([]float32, len(m.Scores)), Mask: make([]bool, len(m.Mask))}
		for j, s := range m.Scores {
			sm.Scores[j] = float32(s)
		}
		for j, v := range m.Mask {
			sm.Mask[j] = v != 0
		}
		out[i] = sm
	}
	return out
}

func TestGoldenPixelMetrics(t *testing.T) {
	for _, c := range loadGolden(t).Pixels {
		t.Run(c.Name, func(t *testing.T) {
			maps := toMaps(c.Maps)
			v, err := ExactPixelAUROC(maps)
			if err != nil {
				t.Fatal(err)
			}
			near(t, "exact pixel AUROC", v, c.AUROC, 1e-6)
			if v, err = ExactPixelAP(maps); err != nil {
				t.Fatal(err)
			}
			near(t, "exact pixel AP", v, c.AP, 1e-6)
			if v, err = ExactAUPRO(maps, 0.3); err != nil {
				t.Fatal(err)
			}
			near(t, "exact AUPRO", v, c.AUPRO, 1e-6)

			acc, err := NewPixelAccumulator(0, 1, DefaultBins)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range maps {
				if err := acc.Add(m.Scores, m.Mask, m.W, m.H); err != nil {
					t.Fatal(err)
				}
			}
			if v, err = acc.AUROC(); err != nil {
				t.Fatal(err)
			}
			near(t, "binned pixel AUROC", v, c.AUROC, 1e-3)
			if v, err = acc.AP(); err != nil {
				t.Fatal(err)
			}
			near(t, "binned pixel AP", v, c.AP, 1e-3)
			if v, err = acc.AUPRO(0.3); err != nil {
				t.Fatal(err)
			}
			near(t, "binned AUPRO", v, c.AUPRO, 1e-3)
		})
	}
}

// TestLabelling checks 8-connectivity: diagonal contacts join regions.
func TestLabelling(t *testing.T) {
	const w, h = 5, 4
	rows := []string{
		"x...x",
		".x..x",
		"..x..",
		"x...x",
	}
	mask := make([]bool, w*h)
	for y, r := range rows {
		for x, ch := range r {
			mask[y*w+x] = ch == 'x'
		}
	}
	var l regionLabeler
	// Regions: the diagonal (0,0)-(1,1)-(2,2), joined only through corners
	// (4-connectivity would give three), the column (4,0)-(4,1), and the two
	// isolated bottom corners.
	if n := l.label(mask, w, h); n != 4 {
		t.Fatalf("regions = %d, want 4 (diagonal, right column, two corners)", n)
	}
	if l.sizes[0] != 3 || l.sizes[1] != 2 {
		t.Errorf("region sizes = %v, want [3 2 1 1]", l.sizes)
	}
}

// realistic returns n smooth anomaly maps of size w×h with elliptic defect
// masks whose scores are raised, plus sensor-like noise.
func realistic(n, w, h int, seed uint64) []ScoreMap {
	r := rand.New(rand.NewPCG(seed, 7))
	maps := make([]ScoreMap, n)
	for i := range maps {
		m := ScoreMap{W: w, H: h, Scores: make([]float32, w*h), Mask: make([]bool, w*h)}
		type blob struct{ x, y, rx, ry, amp float64 }
		var blobs []blob
		for k := 0; k < 4; k++ {
			blobs = append(blobs, blob{r.Float64() * float64(w), r.Float64() * float64(h), 4 + r.Float64()*12, 4 + r.Float64()*12, 0.1 + 0.2*r.Float64()})
		}
		var defects []blob
		if i%3 != 0 {
			for k := 0; k < 1+r.IntN(3); k++ {
				defects = append(defects, blob{r.Float64() * float64(w), r.Float64() * float64(h), 2 + r.Float64()*10, 1 + r.Float64()*8, 0.15 + 0.4*r.Float64()})
			}
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := 0.15
				for _, b := range blobs {
					dx, dy := (float64(x)-b.x)/b.rx, (float64(y)-b.y)/b.ry
					s += b.amp * math.Exp(-(dx*dx+dy*dy)/2)
				}
				for _, d := range defects {
					dx, dy := (float64(x)-d.x)/d.rx, (float64(y)-d.y)/d.ry
					if dx*dx+dy*dy <= 1 {
						m.Mask[y*w+x] = true
					}
					s += d.amp * math.Exp(-(dx*dx+dy*dy)/3)
				}
				s += r.NormFloat64() * 0.03
				m.Scores[y*w+x] = float32(min(max(s, 0), 1))
			}
		}
		maps[i] = m
	}
	return maps
}

func TestBinnedMatchesExactOnRealisticMaps(t *testing.T) {
	maps := realistic(24, 128, 128, 1)
	acc, err := NewPixelAccumulator(0, 1, DefaultBins)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if err := acc.Add(m.Scores, m.Mask, m.W, m.H); err != nil {
			t.Fatal(err)
		}
	}
	exA, err := ExactPixelAUROC(maps)
	if err != nil {
		t.Fatal(err)
	}
	exP, err := ExactPixelAP(maps)
	if err != nil {
		t.Fatal(err)
	}
	exU, err := ExactAUPRO(maps, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	bA, _ := acc.AUROC()
	bP, _ := acc.AP()
	bU, _ := acc.AUPRO(0.3)
	t.Logf("exact AUROC %.6f AP %.6f AUPRO %.6f; |binned-exact| %.2e %.2e %.2e; AUROC bound %.2e; clamped %d",
		exA, exP, exU, math.Abs(bA-exA), math.Abs(bP-exP), math.Abs(bU-exU), acc.AUROCErrorBound(), acc.Clamped())
	if exA < 0.6 || exA > 0.999 || exU < 0.2 || exU > 0.99 {
		t.Fatalf("test data not informative: AUROC %v AUPRO %v", exA, exU)
	}
	near(t, "binned AUROC", bA, exA, 1e-3)
	near(t, "binned AP", bP, exP, 1e-3)
	near(t, "binned AUPRO", bU, exU, 1e-3)
	if d := math.Abs(bA - exA); d > acc.AUROCErrorBound()+1e-12 {
		t.Errorf("AUROC error %g exceeds its stated bound %g", d, acc.AUROCErrorBound())
	}
	// Coarse bins must still respect the bound (and really approximate).
	coarse, _ := NewPixelAccumulator(0, 1, 64)
	for _, m := range maps {
		_ = coarse.Add(m.Scores, m.Mask, m.W, m.H)
	}
	cA, _ := coarse.AUROC()
	if d := math.Abs(cA - exA); d > coarse.AUROCErrorBound()+1e-12 || coarse.AUROCErrorBound() == 0 {
		t.Errorf("64 bins: AUROC error %g, bound %g: want 0 < error <= bound", d, coarse.AUROCErrorBound())
	}
}

func TestAccumulatorPRF(t *testing.T) {
	// Scores chosen on bin edges so the binned counts are exact.
	scores := []float32{0.25, 0.5, 0.75, 1, 0, 0.5}
	mask := []bool{false, true, true, true, false, false}
	acc, _ := NewPixelAccumulator(0, 1, 4)
	if err := acc.Add(scores, mask, 3, 2); err != nil {
		t.Fatal(err)
	}
	p, err := acc.PRF1At(0.5)
	if err != nil {
		t.Fatal(err)
	}
	if p.TP != 3 || p.FP != 1 || p.FN != 0 || p.TN != 2 {
		t.Errorf("PRF1At(0.5) counts = %+v, want TP 3 FP 1 FN 0 TN 2", p)
	}
	b, err := acc.BestF1()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := BestF1([]float64{0.25, 0.5, 0.75, 1, 0, 0.5}, mask)
	if b.F1 != want.F1 || b.Threshold != want.Threshold {
		t.Errorf("binned BestF1 = %+v, exact %+v", b, want)
	}
}

func TestErrors(t *testing.T) {
	acc := func() *PixelAccumulator { a, _ := NewPixelAccumulator(0, 1, 16); return a }
	onlyNormal := acc()
	_ = onlyNormal.Add([]float32{0.1, 0.2}, nil, 2, 1)
	cases := []struct {
		name string
		err  func() error
		want string
	}{
		{"AUROC one class", func() error { _, err := AUROC([]float64{1, 2}, []bool{true, true}); return err }, "AUROC: only one class present (2 anomalous, 0 normal samples)"},
		{"AUROC length", func() error { _, err := AUROC([]float64{1, 2}, []bool{true}); return err }, "2 scores but 1 labels"},
		{"AUROC empty", func() error { _, err := AUROC(nil, nil); return err }, "AUROC: no samples"},
		{"AUROC NaN", func() error { _, err := AUROC([]float64{math.NaN(), 1}, []bool{true, false}); return err }, "score 0 is NaN"},
		{"AP no positives", func() error { _, err := AveragePrecision([]float64{1, 2}, []bool{false, false}); return err }, "no anomalous (positive) samples"},
		{"PRF no positives", func() error { _, err := PRF1At([]float64{1}, []bool{false}, 0.5); return err }, "PRF1At: only one class present"},
		{"BestF1 no positives", func() error { _, err := BestF1([]float64{1}, []bool{false}); return err }, "BestF1: only one class present"},
		{"range", func() error { _, err := NewPixelAccumulator(1, 1, 16); return err }, "score range [1, 1], expected finite lo < hi"},
		{"bins", func() error { _, err := NewPixelAccumulator(0, 1, 1); return err }, "1 bins, expected 2 to"},
		{"Add size", func() error { return acc().Add([]float32{1, 2, 3}, nil, 2, 2) }, "image 0: 3 scores, expected 4 for 2x2"},
		{"Add mask size", func() error { return acc().Add([]float32{1, 2}, []bool{true}, 2, 1) }, "1 mask pixels, expected 2"},
		{"Add NaN", func() error { return acc().Add([]float32{float32(math.NaN())}, nil, 1, 1) }, "score 0 is NaN"},
		{"pixel AUROC one class", func() error { _, err := onlyNormal.AUROC(); return err }, "pixel AUROC: only one class present (0 defect, 2 normal pixels)"},
		{"pixel AP one class", func() error { _, err := onlyNormal.AP(); return err }, "pixel AP: only one class present"},
		{"AUPRO one class", func() error { _, err := onlyNormal.AUPRO(0.3); return err }, "AUPRO: only one class present (0 defect regions, 2 normal pixels)"},
		{"AUPRO limit", func() error { _, err := onlyNormal.AUPRO(0); return err }, "integration limit 0, expected 0 < maxFPR <= 1"},
		{"exact AUPRO one class", func() error {
			_, err := ExactAUPRO([]ScoreMap{{Scores: []float32{1}, Mask: []bool{true}, W: 1, H: 1}}, 0.3)
			return err
		}, "AUPRO: only one class present (1 defect regions, 0 normal pixels)"},
		{"exact pixel AUROC shape", func() error {
			_, err := ExactPixelAUROC([]ScoreMap{{Scores: []float32{1}, Mask: []bool{true}, W: 2, H: 1}})
			return err
		}, "image 0: 1 scores, expected 2 for 2x1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.err()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func BenchmarkPixelAccumulatorAdd(b *testing.B) {
	const w, h = 1024, 1024
	maps := realistic(1, 256, 256, 3)[0]
	// Tile the 256² map up to 1024² so the benchmark sees defects.
	scores := make([]float32, w*h)
	mask := make([]bool, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			scores[y*w+x] = maps.Scores[(y%256)*256+x%256]
			mask[y*w+x] = maps.Mask[(y%256)*256+x%256]
		}
	}
	acc, _ := NewPixelAccumulator(0, 1, DefaultBins)
	b.SetBytes(int64(w * h * 5))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := acc.Add(scores, mask, w, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPixelAccumulatorAddNoDefect(b *testing.B) {
	const w, h = 1024, 1024
	scores := realistic(1, 1024, 1024, 5)[0].Scores
	acc, _ := NewPixelAccumulator(0, 1, DefaultBins)
	b.SetBytes(int64(w * h * 4))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := acc.Add(scores, nil, w, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPixelAccumulatorMetrics(b *testing.B) {
	acc, _ := NewPixelAccumulator(0, 1, DefaultBins)
	for _, m := range realistic(4, 256, 256, 9) {
		_ = acc.Add(m.Scores, m.Mask, m.W, m.H)
	}
	b.ReportAllocs()
	for range b.N {
		_, _ = acc.AUROC()
		_, _ = acc.AP()
		_, _ = acc.AUPRO(0.3)
	}
}

//go:build workstation

package train

import (
	"context"
	"image"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/decision"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/preprocess"
)

// TestCalibrateForDecision: the pixel threshold is raised until the
// decision (score or region) rejects no more calibration goods than the
// image quantile promises, and never above the image threshold.
func TestCalibrateForDecision(t *testing.T) {
	identity := func(v float64) float64 { return v }
	scores := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	c := RecipeCalibration{ImageQuantile: 0.8, ImageMargin: 1, PixelQuantile: 0.999, PixelMargin: 1.1}
	goods := func(levels ...float64) []decisionGood {
		g := make([]decisionGood, len(scores))
		for i := range g {
			g[i] = decisionGood{score: scores[i], level: levels[i]}
		}
		return g
	}
	cases := []struct {
		name            string
		c               RecipeCalibration
		floor           float64 // the pixel-quantile rule's threshold
		goods           []decisionGood
		wantPx          float64
		wantAll, region int
		rule            string
	}{
		{"min_defect_area 0: the level is the score, the pixel threshold the image's", c, 2, goods(scores...), 8, 2, 0,
			"rejects at most the 2 of 10 good images the image quantile promises (the image threshold alone rejects 2): it rejects 2 (0 by region alone)"},
		{"the levels' quantile suffices", c, 2, goods(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 7, 7.5, 9, 10), 7.5, 2, 0, "0.8-quantile of the good images' region levels"},
		{"raised level by level past two passing goods' regions", c, 0.1, goods(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 7.5, 7.75, 0.5, 0.5), 7.75, 2, 0, "rejects 2"},
		{"the promise allows a region reject", RecipeCalibration{ImageQuantile: 0.8, ImageMargin: 1.25, PixelQuantile: 1, PixelMargin: 1}, 0.1,
			goods(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 9.5, 0.5), 0.625, 1, 1, "rejects 1 (1 by region alone)"},
		{"the floor stays when higher", c, 7.9, goods(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 7.5, 7.75, 0.5, 0.5), 7.9, 2, 0, ""},
		{"never above the image threshold", c, 9, goods(scores...), 8, 2, 0, ""},
		{"no region at any threshold", c, 3, goods(math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1)), 3, 2, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.c.ImageMargin * quantile(scores, tc.c.ImageQuantile)
			in := bundle.Calibration{ImageThreshold: img, PixelThreshold: tc.floor, Rule: "base"}
			got := calibrateForDecision(tc.c, in, tc.goods, 0, identity)
			if math.Abs(got.PixelThreshold-tc.wantPx) > 1e-12 || got.ImageThreshold != img || got.GoodRejects != tc.wantAll || got.GoodRejectsByRegion != tc.region {
				t.Fatalf("pixel %v image %v rejects %d (%d by region), want pixel %v, rejects %d (%d)", got.PixelThreshold, got.ImageThreshold,
					got.GoodRejects, got.GoodRejectsByRegion, tc.wantPx, tc.wantAll, tc.region)
			}
			if !strings.HasPrefix(got.Rule, "base; ") || !strings.Contains(got.Rule, "decision.min_defect_area = 0 frame pixels") || !strings.Contains(got.Rule, tc.rule) {
				t.Errorf("rule %q lacks %q", got.Rule, tc.rule)
			}
		})
	}
}

// TestCalibratedPixelThresholdKeepsPromise: on random heatmaps of
// calibration goods (distances, squashed as the memory's are), with
// regions measured in frame pixels at several min_defect_area values, the
// daemon's own decision at the calibrated thresholds rejects at most the
// goods the image quantile promises — exactly the number the manifest
// records.
func TestCalibratedPixelThresholdKeepsPromise(t *testing.T) {
	squash := func(b float64) float64 { return b / (b + 2) }
	const w, h, n = 16, 16, 60
	roi := image.Rect(0, 0, 64, 48) // 12 frame pixels per heatmap cell
	r := rand.New(rand.NewPCG(7, 8))
	maps := make([][]float64, n)
	for i := range maps {
		// Smooth-ish noise with a few bright blobs: the blobs decide the
		// score, their size the regions.
		m := make([]float64, w*h)
		for j := range m {
			m[j] = r.Float64()
		}
		for range 1 + r.IntN(3) {
			u, v, s := r.IntN(w-3), r.IntN(h-3), 1+r.IntN(3)
			peak := 1 + 3*r.Float64()
			for y := v; y < v+s; y++ {
				for x := u; x < u+s; x++ {
					m[y*w+x] = peak * (0.8 + 0.2*r.Float64())
				}
			}
		}
		maps[i] = m
	}
	c := RecipeCalibration{ImageQuantile: 0.9, ImageMargin: 1.05, PixelQuantile: 0.99, PixelMargin: 1.1}
	for _, minArea := range []int{0, 12, 30, 100} {
		var dec decision.Decider
		goods := make([]decisionGood, n)
		var scores, pixels []float64
		raw := preprocess.NewHeatmap(w, h)
		for i, m := range maps {
			for j, v := range m {
				raw.Values[j] = float32(v)
			}
			goods[i] = decisionGood{score: slicesMax(m), level: dec.Level(decision.Input{Heatmap: raw, ROI: roi, MinDefectArea: minArea, MaxRegions: 1})}
			scores = append(scores, goods[i].score)
			pixels = append(pixels, m...)
		}
		cal := calibrateForDecision(c, calibrate(c, scores, pixels, squash, "random maps"), goods, minArea, squash)
		promise := n - int(math.Ceil(c.ImageQuantile*n))
		rejected, byRegion, imageOnly := 0, 0, 0
		heat := preprocess.NewHeatmap(w, h)
		for _, m := range maps {
			for j, v := range m {
				heat.Values[j] = float32(squash(v))
			}
			score := float64(float32(squash(slicesMax(m)))) // the daemon's scores are float32
			if score > cal.ImageThreshold {
				imageOnly++
			}
			v, reason, _ := dec.Decide(decision.Input{Score: score, Heatmap: heat, ROI: roi,
				Threshold: cal.ImageThreshold, PixelThreshold: cal.PixelThreshold, MinDefectArea: minArea, MaxRegions: 16})
			if v.Rejects() {
				rejected++
				if reason == "region" {
					byRegion++
				}
			}
		}
		t.Logf("min_defect_area %d: image %.4f pixel %.4f, %d rejected (%d by region), promise %d", minArea, cal.ImageThreshold, cal.PixelThreshold, rejected, byRegion, promise)
		if rejected > max(promise, imageOnly) || rejected != cal.GoodRejects || byRegion != cal.GoodRejectsByRegion || cal.PixelMinDefectArea != minArea {
			t.Errorf("min_defect_area %d: the decision rejects %d goods (%d by region), promise %d, manifest says %d (%d) at area %d",
				minArea, rejected, byRegion, promise, cal.GoodRejects, cal.GoodRejectsByRegion, cal.PixelMinDefectArea)
		}
		if cal.PixelThreshold > cal.ImageThreshold {
			t.Errorf("pixel threshold %v above the image threshold %v", cal.PixelThreshold, cal.ImageThreshold)
		}
		// Levels are float32 heatmap values, scores float64: equal up to
		// float32 rounding.
		if minArea == 0 && (math.Abs(cal.PixelThreshold-cal.ImageThreshold) > 1e-6 || byRegion != 0) {
			t.Errorf("min_defect_area 0: pixel threshold %v, want the image threshold %v and no goods rejected by region (%d)", cal.PixelThreshold, cal.ImageThreshold, byRegion)
		}
	}
}

func slicesMax(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

// TestRunCalibratesPixelForDecision: training records the min_defect_area
// its pixel threshold assumed and how many calibration goods the decision
// rejects, within the image quantile's promise.
func TestRunCalibratesPixelForDecision(t *testing.T) {
	good, _ := synthGood(t)
	out := filepath.Join(t.TempDir(), "bundle")
	r := tinyRecipe()
	r.Align.Method = bundle.AlignNone
	var progress strings.Builder
	if _, err := Run(context.Background(), Options{GoodDir: good, Backbone: backbonePath(t), Out: out, Recipe: r, Backend: testBackend(t), Progress: &progress}); err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	b, err := bundle.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	cal := b.Manifest.Calibration
	n := cal.GoodScores.Count
	promise := n - int(math.Ceil(r.Calibration.ImageQuantile*float64(n)))
	// One more when the good at the quantile rounds above it in float32.
	if cal.PixelMinDefectArea != 0 || math.Abs(cal.PixelThreshold-cal.ImageThreshold) > 1e-6 || cal.GoodRejects > promise+1 || cal.GoodRejectsByRegion != 0 ||
		!strings.Contains(cal.Rule, "decision.min_defect_area = 0 frame pixels") || !strings.Contains(progress.String(), "the decision at min_defect_area 0 rejects") {
		t.Errorf("calibration %+v (promise %d of %d)\nprogress:\n%s", cal, promise, n, progress.String())
	}
}

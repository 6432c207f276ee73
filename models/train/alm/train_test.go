//go:build workstation

package alm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/synth"
)

const testSize = 64

// fixture is a small synthetic data set with its feature extractor.
type fixture struct {
	bb        *backbone.Weights
	fe        *BackboneFeatures
	train     [][]float32
	good, bad [][]float32 // held-out test images
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	bb := infertest.Backbone(t)
	f := &fixture{bb: bb, fe: testFeatures(t, bb, testSize, testSize)}
	f.train = renderSet(t, testSize, 24, synth.None, 1000)
	f.good = renderSet(t, testSize, 12, synth.None, 5000)
	for i, d := range synth.Defects() {
		f.bad = append(f.bad, renderSet(t, testSize, 3, d, 7000+uint64(i)*100)...)
	}
	return f
}

// testConfig is a small, fast configuration.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Reduction = ReductionRandomOrthogonal
	cfg.Epochs = 6
	cfg.LocationsPerStep = 1024
	cfg.DGM.PoolSize = 12
	cfg.DGM.RefreshEpochs = 3
	return cfg
}

// auroc scores f's test images with m and returns the image AUROC and the
// mean scores of good and defective images.
func (f *fixture) auroc(t *testing.T, m *Model) (auroc, good, bad float64) {
	t.Helper()
	var scores []float64
	var labels []bool
	for k, set := range [][][]float32{f.good, f.bad} {
		for _, img := range set {
			mixed, err := f.fe.Mixed(img)
			if err != nil {
				t.Fatal(err)
			}
			_, s, err := m.Score(mixed, 0)
			if err != nil {
				t.Fatal(err)
			}
			scores = append(scores, float64(s))
			labels = append(labels, k == 1)
			if k == 0 {
				good += float64(s) / float64(len(f.good))
			} else {
				bad += float64(s) / float64(len(f.bad))
			}
		}
	}
	auroc, err := metrics.AUROC(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	return auroc, good, bad
}

// syntheticContrast augments held-out good images with DGM defects (a seed
// not used in training) and returns the mean distance at defect locations
// divided by the mean distance at normal locations.
func (f *fixture) syntheticContrast(t *testing.T, m *Model) float64 {
	t.Helper()
	gen, err := newDefectGen(DefaultConfig().DGM, testSize, testSize)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(99, 99))
	var dDefect, dNormal float64
	var nDefect, nNormal int
	for i, img := range f.good {
		aug, mask := gen.augment(r, img, f.good[(i+1)%len(f.good)])
		mixed, err := f.fe.Mixed(aug)
		if err != nil {
			t.Fatal(err)
		}
		dist, err := m.Distances(mixed)
		if err != nil {
			t.Fatal(err)
		}
		for p, v := range dist {
			if mask[p] {
				dDefect += float64(v)
				nDefect++
			} else {
				dNormal += float64(v)
				nNormal++
			}
		}
	}
	if nDefect == 0 {
		t.Fatal("no synthetic defect locations")
	}
	return (dDefect / float64(nDefect)) / (dNormal / float64(nNormal))
}

// TestTrain trains without and with DGM on synthetic plates: the loss goes
// down, the trained model separates painted defects from good parts better
// than chance and at least as well as the untrained (reduction-only) model,
// and DGM pushes synthetic-defect locations further from their centres.
func TestTrain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	untrainedCfg := testConfig()
	untrainedCfg.Epochs = 0
	untrained, err := Train(ctx, untrainedCfg, f.train, testSize, testSize, f.fe, nil)
	if err != nil {
		t.Fatal(err)
	}
	a0, _, _ := f.auroc(t, untrained)

	results := map[bool]*Model{}
	for _, dgm := range []bool{false, true} {
		cfg := testConfig()
		cfg.DGM.Enabled = dgm
		var log bytes.Buffer
		m, err := Train(ctx, cfg, f.train, testSize, testSize, f.fe, &log)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Losses) != cfg.Epochs {
			t.Fatalf("DGM %v: %d epoch losses, want %d", dgm, len(m.Losses), cfg.Epochs)
		}
		if got := strings.Count(log.String(), "alm: epoch "); got != cfg.Epochs {
			t.Errorf("DGM %v: %d progress lines, want one per epoch:\n%s", dgm, got, log.String())
		}
		wantPools := 0
		if dgm {
			wantPools = (cfg.Epochs + cfg.DGM.RefreshEpochs - 1) / cfg.DGM.RefreshEpochs
		}
		if got := strings.Count(log.String(), "alm: DGM pool"); got != wantPools {
			t.Errorf("DGM %v: %d pool refreshes, want %d:\n%s", dgm, got, wantPools, log.String())
		}
		first, last := m.Losses[0], m.Losses[len(m.Losses)-1]
		if !(last < 0.8*first) {
			t.Errorf("DGM %v: loss %v did not go down (first %.4f, last %.4f)", dgm, m.Losses, first, last)
		}
		a, good, bad := f.auroc(t, m)
		t.Logf("DGM %v: losses %.4f → %.4f; image AUROC %.3f (untrained %.3f), mean score good %.4f, defective %.4f; %.0f locations/s",
			dgm, first, last, a, a0, good, bad, m.LocationsPerSecond)
		if a < 0.9 || a < a0-0.02 {
			t.Errorf("DGM %v: image AUROC %.3f, want ≥ 0.9 and not below the untrained %.3f", dgm, a, a0)
		}
		if !(bad > good) {
			t.Errorf("DGM %v: mean score of defective parts %.4f ≤ good %.4f", dgm, bad, good)
		}
		results[dgm] = m
	}
	// Informational: on these easy parts the synthetic defects are already
	// beyond δ for most locations, so eq. 5's hinge is rarely active and DGM
	// changes little; the hinge itself is asserted in TestHingeLoss.
	cOff, cOn := f.syntheticContrast(t, results[false]), f.syntheticContrast(t, results[true])
	t.Logf("held-out synthetic defects, mean distance at defect / normal locations: without DGM %.2f, with DGM %.2f", cOff, cOn)

	// "One definition serves training and export": ONNX Runtime running
	// netdef.LocalizeGraph with the trained weights gives Model.Score's values.
	t.Run("ScoreMatchesONNX", func(t *testing.T) {
		m := results[true]
		model, err := netdef.LocalizeGraph(m.LocalizeSpec(0), f.bb, m.Mapping, m.Centre)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := testBackend(t).NewSession(model, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		in, err1 := sess.Input("image")
		heat, err2 := sess.Output("heatmap")
		score, err3 := sess.Output("score")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		for i, img := range [][]float32{f.good[0], f.bad[0], f.bad[7]} {
			copy(in, img)
			if err := sess.Run(); err != nil {
				t.Fatal(err)
			}
			mixed, err := f.fe.Mixed(img)
			if err != nil {
				t.Fatal(err)
			}
			gh, gs, err := m.Score(mixed, 0)
			if err != nil {
				t.Fatal(err)
			}
			var maxDiff float64
			for k := range gh {
				maxDiff = math.Max(maxDiff, math.Abs(float64(gh[k]-heat[k])))
			}
			t.Logf("image %d: score Go %.6f ONNX %.6f, heatmap max |Δ| %.2g", i, gs, score[0], maxDiff)
			if maxDiff > 1e-4 || math.Abs(float64(gs-score[0])) > 1e-4 {
				t.Errorf("image %d: Model.Score differs from ONNX Runtime: heatmap max |Δ| %g, score %g vs %g", i, maxDiff, gs, score[0])
			}
		}
	})
}

// TestTrainDeterministic trains twice with one seed (DGM on, so every
// random stream is used) and once with another seed.
func TestTrainDeterministic(t *testing.T) {
	bb := infertest.Backbone(t)
	fe := testFeatures(t, bb, testSize, testSize)
	images := renderSet(t, testSize, 12, synth.None, 1000)
	cfg := testConfig()
	cfg.Epochs = 2
	cfg.DGM.RefreshEpochs = 1
	cfg.DGM.PoolSize = 4
	train := func(seed uint64) *Model {
		c := cfg
		c.Seed = seed
		m, err := Train(context.Background(), c, images, testSize, testSize, fe, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b, other := train(7), train(7), train(8)
	same := func(x, y *Model) bool {
		if !slices.Equal(x.Centre, y.Centre) || !slices.Equal(x.Losses, y.Losses) {
			return false
		}
		for l := range x.Mapping.Layers {
			if !slices.Equal(x.Mapping.Layers[l].Weight, y.Mapping.Layers[l].Weight) || !slices.Equal(x.Mapping.Layers[l].Bias, y.Mapping.Layers[l].Bias) {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("two trainings with the same seed differ")
	}
	if same(a, other) {
		t.Error("trainings with different seeds are identical")
	}
}

// TestTrainGlobalCentre checks the ablation, one centre vector at every
// location, with the PCA reduction.
func TestTrainGlobalCentre(t *testing.T) {
	bb := infertest.Backbone(t)
	fe := testFeatures(t, bb, testSize, testSize)
	images := renderSet(t, testSize, 8, synth.None, 1000)
	cfg := testConfig()
	cfg.Centre = CentreGlobal
	cfg.Reduction = ReductionPCA
	cfg.Epochs = 1
	cfg.DGM.Enabled = false
	m, err := Train(context.Background(), cfg, images, testSize, testSize, fe, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := testSize / 4 * testSize / 4
	for o := 0; o < m.D; o++ {
		for p := 1; p < n; p++ {
			if m.Centre[o*n+p] != m.Centre[o*n] {
				t.Fatalf("global centre differs between locations 0 and %d in channel %d", p, o)
			}
		}
	}
	if m.CentreMode != CentreGlobal {
		t.Errorf("CentreMode %q", m.CentreMode)
	}
}

func TestTrainErrors(t *testing.T) {
	img := make([]float32, 3*testSize*testSize)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fe := constFeatures{n: testSize / 4 * testSize / 4}
	bad := DefaultConfig()
	bad.D = 0
	cases := []struct {
		name string
		ctx  context.Context
		cfg  Config
		imgs [][]float32
		h    int
		want string
	}{
		{"config", context.Background(), bad, [][]float32{img}, testSize, "alm config: D = 0"},
		{"size", context.Background(), testConfig(), [][]float32{img}, 60, "want positive multiples of 16"},
		{"no images", context.Background(), testConfig(), nil, testSize, "no training images"},
		{"image length", context.Background(), testConfig(), [][]float32{img[:10]}, testSize, "image 0 has 10 values"},
		{"cancelled", ctx, testConfig(), [][]float32{img}, testSize, context.Canceled.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Train(tc.ctx, tc.cfg, tc.imgs, tc.h, testSize, fe, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.name == "cancelled" && !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v is not context.Canceled", err)
			}
		})
	}
}

// constFeatures returns constant features, for argument checks.
type constFeatures struct{ n int }

func (c constFeatures) Mixed([]float32) ([]float32, error) {
	return make([]float32, mixedChannels*c.n), nil
}

// BenchmarkTrainStep measures one Adam step (GoMLX loss and gradient on the
// pure-Go backend) at the recommended size: D = 128, two layers, 4096
// locations. It reports locations/s and the implied wall time of one epoch
// of 200 images at 256×256 (200·64·64 locations).
func BenchmarkTrainStep(b *testing.B) {
	cfg := DefaultConfig()
	r := rand.New(rand.NewPCG(1, 2))
	red := &reduction{p: randomOrthogonal(r, cfg.D, mixedChannels), mu: make([]float64, mixedChannels)}
	feats := [][]float32{make([]float32, 64*mixedChannels)}
	for i := range feats[0] {
		feats[0][i] = r.Float32()
	}
	tr, err := newTrainer(cfg, initMapping(cfg, red, feats, r))
	if err != nil {
		b.Fatal(err)
	}
	defer tr.close()
	tr.warmup = 1
	L := cfg.LocationsPerStep
	x, c, mk := make([]float32, L*mixedChannels), make([]float32, L*cfg.D), make([]float32, L)
	for i := range x {
		x[i] = r.Float32()
	}
	for i := range c {
		c[i] = r.Float32() - 0.5
	}
	if _, _, _, err := tr.step(x, c, mk); err != nil { // compile
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, _, _, err := tr.step(x, c, mk); err != nil {
			b.Fatal(err)
		}
	}
	rate := float64(b.N*L) / time.Since(start).Seconds()
	b.ReportMetric(rate, "locations/s")
	b.ReportMetric(200*64*64/rate, "s/epoch(200×256²)")
}

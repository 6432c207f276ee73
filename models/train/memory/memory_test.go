//go:build workstation

package memory

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
)

const testSize = 64

// render returns count synthetic parts (CHW tensors) of the given object
// and defect, seeds from seed0.
func render(t testing.TB, object string, count int, defect synth.Defect, seed0 uint64) [][]float32 {
	t.Helper()
	return renderPosed(t, object, count, defect, seed0, nil)
}

// renderPosed is render with the pose of each part given by pose(i) (nil:
// every part at the zero pose).
func renderPosed(t testing.TB, object string, count int, defect synth.Defect, seed0 uint64, pose func(i int) synth.Pose) [][]float32 {
	t.Helper()
	var out [][]float32
	for i := range count {
		var p synth.Pose
		if pose != nil {
			p = pose(i)
		}
		smp, err := synth.Render(object, testSize, testSize, false, p, defect, seed0+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 3*testSize*testSize)
		if err := preprocess.Fill(x, smp.Image, preprocess.Spec{Width: testSize, Height: testSize, Channels: 3}); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

type fixture struct {
	be   backend.Backend
	bb   *backbone.Weights
	good [][]float32
	bad  [][]float32
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{be: infer.NewBackend(infertest.Runtime(t)), bb: infertest.Backbone(t)}
	f.good = render(t, synth.Plate, 12, synth.None, 5000)
	for i, d := range synth.Defects() {
		f.bad = append(f.bad, render(t, synth.Plate, 3, d, 7000+uint64(i)*100)...)
	}
	return f
}

func testConfig() Config {
	return Config{Height: testSize, Width: testSize, D: 32, Entries: 8, Radius: 0, Threads: 2, Seed: 1, Folds: 3}
}

func (f *fixture) train(t *testing.T, cfg Config, images [][]float32) *Model {
	t.Helper()
	m, err := Train(context.Background(), cfg, images, f.be, f.bb, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func (f *fixture) auroc(t *testing.T, m *Model) float64 {
	t.Helper()
	var scores []float64
	var labels []bool
	for k, set := range [][][]float32{f.good, f.bad} {
		for _, img := range set {
			_, s, err := m.Score(img)
			if err != nil {
				t.Fatal(err)
			}
			scores = append(scores, float64(s))
			labels = append(labels, k == 1)
		}
	}
	a, err := metrics.AUROC(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMemoryLearnsThePart: a memory built from good plates separates
// painted defects from good plates; one built from another product (gears)
// — the memory of the wrong data, i.e. one that learned nothing about
// plates — does clearly worse. Out-of-fold scores exist for every training
// image and lie above the scores the full memory gives the same images.
func TestMemoryLearnsThePart(t *testing.T) {
	f := newFixture(t)
	plates := render(t, synth.Plate, 24, synth.None, 1000)
	m := f.train(t, testConfig(), plates)
	wrong := f.train(t, testConfig(), render(t, synth.Gear, 24, synth.None, 1000))
	a, aw := f.auroc(t, m), f.auroc(t, wrong)
	t.Logf("image AUROC: memory of plates %.3f, memory of gears %.3f", a, aw)
	if a < 0.9 {
		t.Errorf("image AUROC %.3f with a memory of good plates, want ≥ 0.9", a)
	}
	if !(a > aw+0.1) {
		t.Errorf("the memory of plates (AUROC %.3f) is not clearly better than one of gears (%.3f)", a, aw)
	}
	if len(m.OutOfFold) != len(plates) {
		t.Fatalf("%d out-of-fold maps, want one per training image (%d)", len(m.OutOfFold), len(plates))
	}
	var oof, in float64
	for i, img := range plates {
		b, err := m.Blurred(img)
		if err != nil {
			t.Fatal(err)
		}
		in += slices.Max(b)
		oof += slices.Max(m.OutOfFold[i])
	}
	if !(oof > in) {
		t.Errorf("mean out-of-fold score %.4f not above the in-memory score %.4f", oof/24, in/24)
	}
}

// TestGraphMatchesReference runs the exported graph in ONNX Runtime and
// compares heatmap and score with Model.Score (the Go reference), for each
// choice of layers, with and without the PCA projection and global entries.
func TestGraphMatchesReference(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		layers                            []int
		stride, d, wantD, entries, global int
		eachLayer, int8                   bool
	}{
		{nil, 0, 32, 32, 8, 0, false, false},
		{[]int{1, 2, 3}, 8, 0, 448, 8, 0, false, false},
		{[]int{1, 2, 3}, 8, 24, 24, 8, 0, false, false},
		{[]int{2, 3}, 0, 0, 384, 8, 0, false, false},
		{[]int{2, 3}, 4, 24, 24, 8, 0, false, false},
		{[]int{3}, 0, 16, 16, 8, 0, false, false},
		{[]int{1, 2, 3}, 8, 0, 448, 8, 6, false, false},
		{nil, 0, 32, 32, 8, 5, false, false},
		// PatchCore's patches, global entries only, in int8; more than
		// globalProjectAbove of them are chosen in a random projection.
		{[]int{2, 3}, 8, 0, 384, 0, 40, true, true},
		{[]int{2, 3}, 8, 0, 384, 4, globalProjectAbove + 200, true, true},
		{[]int{1, 2, 3}, 8, 24, 24, 4, 0, true, false},
		{[]int{1, 2, 3}, 8, 0, 448, 0, 30, false, false},
		// PCA directions are signed: the quantisation's zero point moves.
		{[]int{1, 2, 3}, 8, 24, 24, 4, 30, false, true},
	} {
		t.Run(fmt.Sprintf("layers %v stride %d d %d entries %d global %d each-layer %v int8 %v", tc.layers, tc.stride, tc.d, tc.entries, tc.global, tc.eachLayer, tc.int8), func(t *testing.T) {
			cfg := testConfig()
			cfg.Layers, cfg.Stride, cfg.D, cfg.Entries, cfg.Global = tc.layers, tc.stride, tc.d, tc.entries, tc.global
			cfg.AverageEachLayer, cfg.GlobalInt8 = tc.eachLayer, tc.int8
			m := f.train(t, cfg, render(t, synth.Plate, 12, synth.None, 1000))
			if m.Spec.GlobalInt8 != tc.int8 || m.Spec.AverageEachLayer != tc.eachLayer || tc.int8 != (m.Spec.GlobalScale > 0) {
				t.Fatalf("spec %+v, want each-layer %v and int8 %v with a step", m.Spec, tc.eachLayer, tc.int8)
			}
			if tc.int8 {
				for i, v := range m.Global {
					if q := float64(v / m.Spec.GlobalScale); math.Abs(q-math.Round(q)) > 1e-3 || math.Abs(q) > 127.001 {
						t.Fatalf("global value %d = %g is %g steps of %g, want a whole number within ±127", i, v, q, m.Spec.GlobalScale)
					}
				}
			}
			gh, gw := m.Spec.Grid()
			if m.Spec.D != tc.wantD || len(m.Bank) != gh*gw*cfg.Entries*tc.wantD || (tc.d == 0) != (len(m.Projection.Weight) == 0) ||
				m.Spec.Global != tc.global || len(m.Global) != tc.global*tc.wantD {
				t.Fatalf("D %d, bank %d values at %d×%d, projection %d weights, %d global values; want D %d, %d global entries",
					m.Spec.D, len(m.Bank), gw, gh, len(m.Projection.Weight), len(m.Global), tc.wantD, tc.global)
			}
			f.checkGraph(t, m)
		})
	}
}

func (f *fixture) checkGraph(t *testing.T, m *Model) {
	t.Helper()
	g, err := m.Graph(f.bb)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := f.be.NewSession(g, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	in, _ := sess.Input("image")
	heat, _ := sess.Output("heatmap")
	score, err := sess.Output("score")
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range append(f.good[:2], f.bad[:3]...) {
		copy(in, img)
		if err := sess.Run(); err != nil {
			t.Fatal(err)
		}
		want, ws, err := m.Score(img)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(want[i]-heat[i])))
		}
		if worst > 1e-4 || math.Abs(float64(ws-score[0])) > 1e-4 {
			t.Errorf("graph and reference differ: heatmap by %.2g, score %.6f vs %.6f", worst, score[0], ws)
		}
	}
}

// TestInt8Distances: int8 global entries compare a frame's features with
// an error small against the distances themselves (the same entries in
// float32 as the yardstick: within 1 % on average, 5 % at worst), and the runtime's comparison
// (distancesAll, which training scores its own images with) is the Go
// reference's.
func TestInt8Distances(t *testing.T) {
	f := newFixture(t)
	cfg := testConfig()
	cfg.Layers, cfg.Stride, cfg.D, cfg.Entries, cfg.Global = []int{2, 3}, 8, 0, 0, 64
	cfg.AverageEachLayer, cfg.GlobalInt8 = true, true
	m := f.train(t, cfg, render(t, synth.Plate, 12, synth.None, 1000))
	float := *m
	float.Spec.GlobalInt8 = false
	imgs := append(f.good[:2], f.bad[:2]...)
	var feats [][]float32
	for _, img := range imgs {
		x, err := m.extract.Features(img, nil, m.Spec.D)
		if err != nil {
			t.Fatal(err)
		}
		feats = append(feats, x)
	}
	onRuntime, err := m.distancesAll(context.Background(), feats)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range feats {
		q, exact := m.distances(x), float.distances(x)
		var worstQ, meanQ, worstRT, mean float64
		for p := range q {
			e := math.Abs(float64(q[p] - exact[p]))
			worstQ, meanQ = math.Max(worstQ, e), meanQ+e/float64(len(q))
			worstRT = math.Max(worstRT, math.Abs(float64(q[p]-onRuntime[i][p])))
			mean += float64(exact[p]) / float64(len(q))
		}
		t.Logf("image %d: int8 − float32 distance: mean %.2g, largest %.2g (mean distance %.3g)", i, meanQ, worstQ, mean)
		if meanQ > 0.01*mean || worstQ > 0.05*mean {
			t.Errorf("image %d: int8 distances differ from float32 by %.3g on average and up to %.3g, want within 1 %% and 5 %% of their mean %.3g", i, meanQ, worstQ, mean)
		}
		if worstRT > 1e-3*mean {
			t.Errorf("image %d: the runtime's int8 distances differ from the reference by up to %.3g (mean %.3g)", i, worstRT, mean)
		}
	}
}

// TestKCenter: with four tight clusters and four entries, greedy k-center
// takes one entry from each; with fewer candidates than entries, every
// candidate is kept and the rest repeat one.
func TestKCenter(t *testing.T) {
	const d = 2
	centres := [][2]float32{{0, 0}, {10, 0}, {0, 10}, {10, 10}}
	var cand []float32
	for i := range 40 {
		c := centres[i%4]
		cand = append(cand, c[0]+float32(i%3)*0.1, c[1]+float32(i%5)*0.1)
	}
	out := make([]float32, 4*d)
	kCenter(out, cand, 40, d, 4, nil)
	seen := map[[2]int]bool{}
	for e := range 4 {
		seen[[2]int{int(math.Round(float64(out[e*d]) / 10)), int(math.Round(float64(out[e*d+1]) / 10))}] = true
	}
	if len(seen) != 4 {
		t.Errorf("entries %v cover %d of the 4 clusters", out, len(seen))
	}
	few := []float32{1, 2, 3, 4}
	out = make([]float32, 3*d)
	kCenter(out, few, 2, d, 3, nil)
	if !slices.Equal(out, []float32{1, 2, 3, 4, 3, 4}) && !slices.Equal(out, []float32{3, 4, 1, 2, 1, 2}) {
		t.Errorf("two candidates into three entries gave %v", out)
	}
}

// TestGlobalEntriesCoverPartsAnywhere: parts placed anywhere (no
// alignment) with one entry per location and no neighbourhood leave every
// location a single appearance, and good parts score like defective ones;
// entries shared by every location cover what good parts show anywhere and
// separate them again.
func TestGlobalEntriesCoverPartsAnywhere(t *testing.T) {
	f := newFixture(t)
	anywhere := func(seed uint64) func(int) synth.Pose {
		return func(i int) synth.Pose {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			return synth.Pose{RotationDeg: r.Float64()*360 - 180, ShiftXFrac: r.Float64()*0.2 - 0.1, ShiftYFrac: r.Float64()*0.2 - 0.1}
		}
	}
	f.good = renderPosed(t, synth.Gear, 12, synth.None, 5000, anywhere(1))
	f.bad = nil
	for i, d := range synth.Defects() {
		f.bad = append(f.bad, renderPosed(t, synth.Gear, 3, d, 7000+uint64(i)*100, anywhere(2+uint64(i)))...)
	}
	train := renderPosed(t, synth.Gear, 32, synth.None, 1000, anywhere(9))
	cfg := testConfig()
	cfg.Entries = 1
	local := f.train(t, cfg, train)
	cfg.Global = 64
	shared := f.train(t, cfg, train)
	a, ag := f.auroc(t, local), f.auroc(t, shared)
	t.Logf("image AUROC: one entry per location %.3f, with 64 global entries %.3f", a, ag)
	if !(ag > a+0.15) || ag < 0.65 {
		t.Errorf("global entries: image AUROC %.3f, want ≥ 0.65 and clearly above %.3f without them", ag, a)
	}
}

// TestKCenterParallelMatchesSerial: splitting each step over goroutines
// chooses the same entries as the serial selection.
func TestKCenterParallelMatchesSerial(t *testing.T) {
	const count, d, k = 5000, 7, 40
	r := rand.New(rand.NewPCG(3, 4))
	cand := make([]float32, count*d)
	for i := range cand {
		cand[i] = float32(r.NormFloat64())
	}
	want := make([]float32, k*d)
	kCenter(want, cand, count, d, k, nil)
	for _, threads := range []int{2, 3, 8} {
		got := make([]float32, k*d)
		if err := kCenterParallel(context.Background(), got, cand, count, d, k, threads); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%d threads chose other entries than the serial selection", threads)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := kCenterParallel(ctx, make([]float32, k*d), cand, count, d, k, 2); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("cancelled selection returned %v, want the context's error", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.D = -1 }, "d = -1"},
		{func(c *Config) { c.D = 449 }, "d = 449, want 0 (every channel) or 1..448"},
		{func(c *Config) { c.Layers, c.D = []int{2, 3}, 400 }, "d = 400, want 0 (every channel) or 1..384"},
		{func(c *Config) { c.Layers = []int{1, 2} }, "layers [1 2], want [1 2 3], [2 3] or [3]"},
		{func(c *Config) { c.Stride = 6 }, "stride = 6, want 4, 8 or 16"},
		{func(c *Config) { c.Entries = -1 }, "entries = -1, want 0..4096"},
		{func(c *Config) { c.Entries, c.Global = 0, 0 }, "no entries per location and no global ones"},
		{func(c *Config) { c.GlobalInt8, c.Global = true, 0 }, "int8 global entries, but no global entries"},
		{func(c *Config) { c.Radius = -1 }, "radius = -1"},
		{func(c *Config) { c.Global = -1 }, "global entries = -1, want 0..16384"},
		{func(c *Config) { c.Global = 20000 }, "global entries = 20000"},
		{func(c *Config) { c.Height = 40 }, "multiples of 16"},
		{func(c *Config) { c.Folds = 21 }, "folds = 21"},
	} {
		c := testConfig()
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
		}
	}
	if err := testConfig().Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

// rareFeatures returns images×locations features of d values: noise around
// one common appearance, except that image rareImage holds, at one
// location, an appearance no other location has.
func rareFeatures(images, locations, d, rareImage int, seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	feats := make([][]float32, images)
	for i := range feats {
		f := make([]float32, locations*d)
		for k := range f {
			f[k] = 1 + 0.05*float32(r.NormFloat64())
		}
		if i == rareImage {
			for c := range d {
				f[(locations/2)*d+c] = 6
			}
		}
		feats[i] = f
	}
	return feats
}

// TestGlobalPoolKeepsRareLocations: with more locations than global
// candidates, each image contributes the locations greedy k-center picks
// within it, so a structure that only one location of one image shows
// stays a candidate and becomes an entry — a uniform sample of 1 in 16
// locations would keep it by chance only. Both selection spaces: the
// features themselves, and a random projection of wide features.
func TestGlobalPoolKeepsRareLocations(t *testing.T) {
	const images = 32
	for _, c := range []struct {
		name                 string
		d, global, locations int
	}{
		{"features", 8, 8, 64},
		{"projected order", selectionDims + 32, 8, 64},
		{"projected order and selection", selectionDims + 32, globalProjectAbove + 8, 1024},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Global: c.global, GlobalCandidates: images * c.locations / 16, Threads: 2, Seed: 1}
			for rare := range 3 {
				feats := rareFeatures(images, c.locations, c.d, rare*7, uint64(rare))
				pool, err := newGlobalPool(context.Background(), cfg, c.d, feats, images)
				if err != nil {
					t.Fatal(err)
				}
				if pool == nil {
					t.Fatal("no candidate pool, though the images hold more locations than the global candidates")
				}
				global, err := selectGlobal(context.Background(), cfg, c.d, feats, pool)
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for e := range cfg.Global {
					found = found || global[e*c.d] == 6
				}
				if !found {
					t.Errorf("rare location of image %d: not among the %d global entries", rare*7, cfg.Global)
				}
			}
		})
	}
}

// TestGlobalPoolServesSubsets: a selection over some of the images drawn
// from the whole set's pool equals one from a pool of those images alone
// (greedy orders nest), which is how every out-of-fold memory shares the
// pool; and selectGlobal refuses to sample without a pool rather than fall
// back silently.
func TestGlobalPoolServesSubsets(t *testing.T) {
	const d, images, locations = 6, 20, 50
	cfg := Config{Global: 24, GlobalCandidates: 300, Threads: 2, Seed: 5}
	r := rand.New(rand.NewPCG(9, 9))
	feats := make([][]float32, images)
	for i := range feats {
		feats[i] = make([]float32, locations*d)
		for k := range feats[i] {
			feats[i][k] = float32(r.NormFloat64())
		}
	}
	at := []int{0, 2, 3, 5, 8, 9, 11, 12, 13, 15, 16, 19}
	var sub [][]float32
	for _, i := range at {
		sub = append(sub, feats[i])
	}
	whole, err := newGlobalPool(context.Background(), cfg, d, feats, len(at))
	if err != nil {
		t.Fatal(err)
	}
	alone, err := newGlobalPool(context.Background(), cfg, d, sub, len(at))
	if err != nil {
		t.Fatal(err)
	}
	got, err := selectGlobal(context.Background(), cfg, d, sub, whole.subset(at))
	if err != nil {
		t.Fatal(err)
	}
	want, err := selectGlobal(context.Background(), cfg, d, sub, alone)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("the whole set's pool, restricted to a subset, chose other entries than a pool of the subset")
	}
	if _, err := selectGlobal(context.Background(), cfg, d, sub, nil); err == nil || !strings.Contains(err.Error(), "no candidate pool") {
		t.Errorf("selection without a pool returned %v, want the internal error", err)
	}
	few := cfg
	few.GlobalCandidates = images * locations
	if p, err := newGlobalPool(context.Background(), few, d, feats, images); err != nil || p != nil {
		t.Errorf("every location fits the candidates: pool %v, %v, want none", p, err)
	}
}

// textbookKCenter is the greedy k-center kCenterThreads must reproduce:
// the candidate nearest the mean, then repeatedly the one farthest from
// every entry so far (lowest index among ties), every candidate weighed
// against every new entry.
func textbookKCenter(cand []float32, count, d, k int) []int {
	mean := make([]float64, d)
	for i := range count {
		for c, v := range cand[i*d : (i+1)*d] {
			mean[c] += float64(v)
		}
	}
	pick, best := 0, math.Inf(1)
	for i := range count {
		var s float64
		for c, v := range cand[i*d : (i+1)*d] {
			t := float64(v) - mean[c]/float64(count)
			s += t * t
		}
		if s < best {
			pick, best = i, s
		}
	}
	minD := make([]float32, count)
	for i := range minD {
		minD[i] = float32(math.Inf(1))
	}
	var picked []int
	for range min(k, count) {
		picked = append(picked, pick)
		far, farD := 0, float32(-1)
		for i := range count {
			minD[i] = min(minD[i], sqDist(cand[i*d:(i+1)*d], cand[pick*d:(pick+1)*d]))
			if minD[i] > farD {
				far, farD = i, minD[i]
			}
		}
		pick = far
	}
	return picked
}

// clusteredCandidates returns count candidates of d values around a few
// centres at different scales, with exact duplicates (ties), as features
// of real parts are: dense repeated texture and rare outliers.
func clusteredCandidates(count, d int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 11))
	centres := make([][]float32, 12)
	for k := range centres {
		centres[k] = make([]float32, d)
		for c := range centres[k] {
			centres[k][c] = float32(r.NormFloat64() * 4)
		}
	}
	cand := make([]float32, 0, count*d)
	for i := range count {
		if i%17 == 5 && i > 0 { // a duplicate of an earlier candidate
			j := r.IntN(i)
			cand = append(cand, cand[j*d:(j+1)*d]...)
			continue
		}
		k := r.IntN(len(centres))
		spread := float32(0.05) * float32(1+k%4*k%4)
		for c := range d {
			cand = append(cand, centres[k][c]+spread*float32(r.NormFloat64()))
		}
	}
	return cand
}

// TestOutOfFoldNeverHoldsItsFold: every image is scored by a memory that
// holds none of its features. With as many shared entries as candidates,
// a memory holding an image's features would give it distance 0 at its
// chosen locations (as the full memory does, checked first); every
// out-of-fold distance must stay above 0 — with every location a
// candidate, and with each image offering a share (the candidate pool).
func TestOutOfFoldNeverHoldsItsFold(t *testing.T) {
	be := infer.NewBackend(infertest.Runtime(t))
	const images, size = 10, 32
	for _, c := range []struct {
		name       string
		candidates int
	}{
		{"every location", 0},
		{"each image's share", images * 16 / 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Height: size, Width: size, Layers: []int{2, 3}, Stride: 8, Global: images * 16, AverageEachLayer: true,
				GlobalCandidates: c.candidates, Threads: 2, Seed: 3, Folds: 5}
			spec := netdef.MemorySpec{Height: size, Width: size, Layers: cfg.Layers, Stride: cfg.Stride, D: 384, Global: cfg.Global,
				AverageEachLayer: true, Scale: 1}
			locations := (size / 8) * (size / 8)
			r := rand.New(rand.NewPCG(4, 5))
			feats := make([][]float32, images)
			for i := range feats {
				feats[i] = make([]float32, locations*spec.D)
				for k := range feats[i] {
					feats[i][k] = float32(r.NormFloat64())
				}
			}
			m := &Model{Spec: spec, be: be, threads: 2}
			pool, err := newGlobalPool(context.Background(), cfg, spec.D, feats, images-images/cfg.Folds)
			if err != nil {
				t.Fatal(err)
			}
			if (pool != nil) != (c.candidates > 0) {
				t.Fatalf("candidate pool %v, want one only when the candidates are bounded", pool != nil)
			}
			choice, err := chooseGlobal(context.Background(), cfg, spec.D, feats, pool)
			if err != nil {
				t.Fatal(err)
			}
			m.Bank = []float32{}
			m.Global, m.Spec.GlobalScale = choice.entries(choice.g.picked, feats, spec.D, cfg)
			full, err := m.distancesAll(context.Background(), feats)
			if err != nil {
				t.Fatal(err)
			}
			oof, err := m.outOfFold(context.Background(), cfg, feats, choice, rand.New(rand.NewPCG(1, 1)), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			for i := range feats {
				if got := slices.Min(full[i]); got > 1e-2 {
					t.Fatalf("image %d: the full memory's nearest distance %.3g, want 0 (the test cannot see a memory holding an image)", i, got)
				}
				if got := slices.Min(oof[i]); got < 1 {
					t.Errorf("image %d: out-of-fold distance %.3g at a location: its fold's memory holds its features", i, got)
				}
			}
		})
	}
}

// continuedGreedy is the selection globalChoice.without must make, the
// textbook way: start from the entries given, weigh every candidate
// against every entry, then add the farthest candidate (lowest index among
// ties) until k are chosen. It returns the entries and the coverage radius
// (the largest distance of a candidate to its nearest entry).
func continuedGreedy(cand []float32, candidates []int, d int, start []int, k int) ([]int, float64) {
	picked := slices.Clone(start)
	minD := make([]float32, len(candidates))
	for j, i := range candidates {
		minD[j] = float32(math.Inf(1))
		for _, p := range picked {
			minD[j] = min(minD[j], sqDist(cand[i*d:(i+1)*d], cand[p*d:(p+1)*d]))
		}
	}
	for len(picked) < k {
		far, farD := 0, float32(-1)
		for j, v := range minD {
			if v > farD {
				far, farD = j, v
			}
		}
		p := candidates[far]
		picked = append(picked, p)
		for j, i := range candidates {
			minD[j] = min(minD[j], sqDist(cand[i*d:(i+1)*d], cand[p*d:(p+1)*d]))
		}
	}
	return picked, math.Sqrt(float64(slices.Max(minD)))
}

// TestFoldSelectionCoversLikeAFreshOne: an out-of-fold memory's entries,
// reused from the whole set's selection, never come from the held images;
// they are the whole selection's entries from the other images, in order,
// then exactly what greedy k-center continued from those picks (every
// candidate weighed anew) adds — so the distances it keeps are right; and
// their coverage radius over the fold's candidates stays near that of a
// selection made from scratch among them.
func TestFoldSelectionCoversLikeAFreshOne(t *testing.T) {
	const images, locations, d, global = 20, 300, 12, 150
	r := rand.New(rand.NewPCG(21, 22))
	feats := make([][]float32, images)
	for i := range feats {
		// Every image shares the common appearances; a few of them bring
		// their own (a scratch-free variant, a reflection).
		cand := clusteredCandidates(locations, d, uint64(1+i%3))
		if i%4 == 1 {
			for c := range d {
				cand[(r.IntN(locations))*d+c] += 6
			}
		}
		feats[i] = cand
	}
	for _, c := range []struct {
		name       string
		candidates int
	}{
		{"every location", 0},
		{"each image's share", images * locations / 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Global: global, GlobalCandidates: c.candidates, Threads: 2, Seed: 9}
			pool, err := newGlobalPool(context.Background(), cfg, d, feats, images)
			if err != nil {
				t.Fatal(err)
			}
			choice, err := chooseGlobal(context.Background(), cfg, d, feats, pool)
			if err != nil {
				t.Fatal(err)
			}
			for f := range 4 {
				held := make([]bool, images)
				for i := range held {
					held[i] = i%4 == f
				}
				got, err := choice.without(context.Background(), held, global, 2)
				if err != nil {
					t.Fatal(err)
				}
				var kept, candidates []int
				for _, p := range choice.g.picked {
					if !held[choice.image[p]] {
						kept = append(kept, p)
					}
				}
				for i, img := range choice.image {
					if !held[img] {
						candidates = append(candidates, i)
					}
				}
				for _, p := range got {
					if held[choice.image[p]] {
						t.Fatalf("fold %d: entry %d comes from held image %d", f, p, choice.image[p])
					}
				}
				want, radius := continuedGreedy(choice.cand, candidates, choice.width, kept, global)
				if !slices.Equal(got, want) {
					t.Errorf("fold %d: %d entries, want the %d kept then greedy k-center's continuation (%d entries)", f, len(got), len(kept), len(want))
				}
				_, fresh := continuedGreedy(choice.cand, candidates, choice.width, []int{candidates[0]}, global)
				t.Logf("fold %d: %d of %d entries kept, coverage radius %.3f (from scratch %.3f)", f, len(kept), global, radius, fresh)
				if radius > 1.5*fresh {
					t.Errorf("fold %d: coverage radius %.3f, want at most 1.5 × %.3f from scratch", f, radius, fresh)
				}
			}
		})
	}
}

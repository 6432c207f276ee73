//go:build workstation

package imm

import (
	"context"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/inspectd/inspectd/models/train/gocompute"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
)

// tensorOf prepares a rendered image as a C×H×W tensor at its own size.
func tensorOf(t testing.TB, img image.Image, channels int) []float32 {
	t.Helper()
	b := img.Bounds()
	spec := preprocess.Spec{Width: b.Dx(), Height: b.Dy(), Channels: channels}
	dst := make([]float32, spec.Len())
	if err := preprocess.Fill(dst, img, spec); err != nil {
		t.Fatal(err)
	}
	return dst
}

// posedSet renders n good parts with random poses (and the template, first).
type posedSet struct {
	template  []float32
	tplPose   synth.Pose
	images    [][]float32
	poses     []synth.Pose
	w, h      int
	object    string
	channels  int
	maxRotDeg float64
	maxShift  float64
}

func renderSet(t testing.TB, object string, w, h, channels, n int, maxRot, maxShift float64, seed uint64) posedSet {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	s := posedSet{w: w, h: h, object: object, channels: channels, maxRotDeg: maxRot, maxShift: maxShift}
	for i := range n + 1 {
		p := synth.RandomPose(r, maxRot, maxShift)
		sm, err := synth.Render(object, w, h, channels == 1, p, synth.None, seed*1000+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		x := tensorOf(t, sm.Image, channels)
		if i == 0 {
			s.template, s.tplPose = x, p
			continue
		}
		s.images = append(s.images, x)
		s.poses = append(s.poses, p)
	}
	return s
}

// poseError returns the rotation error (degrees) and the shift error at the
// image centre (Euclidean, in fractions of width and height) of the predicted
// transform against the true one: the pixel matrix M_k·M_T⁻¹ that samples the
// image at the template's pixel (see synth.Pose.Matrix).
func poseError(pred [3]float64, img, tpl synth.Pose, w, h int) (deg, shift float64) {
	tplInv, err := preprocess.Affine(tpl.Matrix(w, h)).Invert()
	if err != nil {
		panic(err) // a pose matrix is a rotation: never singular
	}
	truth := compose(img.Matrix(w, h), [2][3]float64(tplInv))
	got := preprocess.PixelAffine(pred[0], pred[1], pred[2], w, h)
	a := math.Atan2(got[1][0], got[0][0]) - math.Atan2(truth[1][0], truth[0][0])
	a = math.Remainder(a, 2*math.Pi)
	cx, cy := float64(w-1)/2, float64(h-1)/2
	dx := (got[0][0]-truth[0][0])*cx + (got[0][1]-truth[0][1])*cy + got[0][2] - truth[0][2]
	dy := (got[1][0]-truth[1][0])*cx + (got[1][1]-truth[1][1])*cy + got[1][2] - truth[1][2]
	return math.Abs(a) * 180 / math.Pi, math.Hypot(dx/float64(w), dy/float64(h))
}

func compose(a, b [2][3]float64) [2][3]float64 {
	var m [2][3]float64
	for i := range 2 {
		m[i][0] = a[i][0]*b[0][0] + a[i][1]*b[1][0]
		m[i][1] = a[i][0]*b[0][1] + a[i][1]*b[1][1]
		m[i][2] = a[i][0]*b[0][2] + a[i][1]*b[1][2] + a[i][2]
	}
	return m
}

func median(x []float64) float64 {
	y := slices.Clone(x)
	slices.Sort(y)
	if len(y)%2 == 1 {
		return y[len(y)/2]
	}
	return (y[len(y)/2-1] + y[len(y)/2]) / 2
}

// medianErrors predicts every image of s and returns median errors.
func medianErrors(t testing.TB, m *Model, s posedSet) (deg, shift float64) {
	t.Helper()
	preds, err := m.PredictBatch(s.images)
	if err != nil {
		t.Fatal(err)
	}
	var ds, ss []float64
	for i, p := range preds {
		d, sh := poseError(p, s.poses[i], s.tplPose, s.w, s.h)
		ds, ss = append(ds, d), append(ss, sh)
	}
	return median(ds), median(ss)
}

// TestWarpMatchesPreprocess checks the GoMLX spatial transformer against the
// daemon's warp (preprocess.Fill with preprocess.PixelAffine) on a non-square
// image: interior pixels must agree within 1e-4. Borders use the same
// replicate rule, so they are compared too (reported, looser bound).
func TestWarpMatchesPreprocess(t *testing.T) {
	const w, h = 64, 48
	sm, err := synth.Render(synth.Bracket, w, h, false, synth.Pose{}, synth.None, 3)
	if err != nil {
		t.Fatal(err)
	}
	img := tensorOf(t, sm.Image, 3)
	poses := [][3]float64{{0, 0, 0}, {0.1, -0.05, 0.3}, {-0.2, 0.15, -0.5}, {0.05, 0.02, 1.2}}
	backend, err := gocompute.New()
	if err != nil {
		t.Fatal(err)
	}
	e, err := graph.NewExec(backend, warpGraph)
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]float32, 0, len(poses)*len(img))
	flat := make([]float32, 0, 3*len(poses))
	for _, p := range poses {
		batch = append(batch, img...)
		flat = append(flat, float32(p[0]), float32(p[1]), float32(p[2]))
	}
	res, err := e.Exec(tensors.FromFlatDataAndDimensions(batch, len(poses), 3, h, w), tensors.FromFlatDataAndDimensions(flat, len(poses), 3))
	if err != nil {
		t.Fatal(err)
	}
	got := tensors.MustCopyFlatData[float32](res[0])
	n := 3 * w * h
	for i, p := range poses {
		a := preprocess.PixelAffine(p[0], p[1], p[2], w, h)
		want := make([]float32, n)
		if err := preprocess.Fill(want, sm.Image, preprocess.Spec{Width: w, Height: h, Channels: 3, Warp: &a}); err != nil {
			t.Fatal(err)
		}
		var inner, all float64
		for c := range 3 {
			for y := range h {
				for x := range w {
					j := c*w*h + y*w + x
					d := math.Abs(float64(got[i*n+j] - want[j]))
					all = math.Max(all, d)
					if y >= 2 && y < h-2 && x >= 2 && x < w-2 {
						inner = math.Max(inner, d)
					}
				}
			}
		}
		t.Logf("pose %v: max |GoMLX − preprocess| interior %.2g, all pixels %.2g", p, inner, all)
		if inner > 1e-4 {
			t.Errorf("pose %v: interior differs by %g", p, inner)
		}
		if all > 1e-3 {
			t.Errorf("pose %v: border differs by %g", p, all)
		}
	}
	// The identity warp must reproduce the image.
	for j := range n {
		if d := math.Abs(float64(got[j] - img[j])); d > 1e-5 {
			t.Fatalf("identity warp changed pixel %d by %g", j, d)
		}
	}
}

// TestInversePose checks that a pose and its inverse compose to the identity.
func TestInversePose(t *testing.T) {
	for _, c := range []struct {
		p    [3]float64
		h, w int
	}{{[3]float64{0.1, -0.2, 0.4}, 64, 64}, {[3]float64{-0.3, 0.05, -1}, 48, 112}} {
		inv := InversePose(c.p[0], c.p[1], c.p[2], c.h, c.w)
		m := compose(preprocess.PixelAffine(c.p[0], c.p[1], c.p[2], c.w, c.h), preprocess.PixelAffine(inv[0], inv[1], inv[2], c.w, c.h))
		id := [2][3]float64{{1, 0, 0}, {0, 1, 0}}
		for i := range 2 {
			for j := range 3 {
				if math.Abs(m[i][j]-id[i][j]) > 1e-9 {
					t.Fatalf("pose %v ∘ inverse %v = %v, want identity", c.p, inv, m)
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"size", func(c *Config) { c.Size = 100 }, "Size"},
		{"height", func(c *Config) { c.Height = 40 }, "Height"},
		{"width", func(c *Config) { c.Width = -16 }, "Width"},
		{"channels", func(c *Config) { c.Channels = 2 }, "Channels"},
		{"steps and epochs", func(c *Config) { c.Epochs = 3 }, "Epochs"},
		{"negative steps", func(c *Config) { c.Steps = -1 }, "Steps"},
		{"no steps", func(c *Config) { c.Steps = 0 }, "Steps or Epochs"},
		{"batch", func(c *Config) { c.Batch = 0 }, "Batch"},
		{"learning rate", func(c *Config) { c.LearningRate = math.NaN() }, "LearningRate"},
		{"rotation", func(c *Config) { c.MaxRotationDeg = -1 }, "MaxRotationDeg"},
		{"shift", func(c *Config) { c.MaxShiftFrac = 0.7 }, "MaxShiftFrac"},
		{"aux steps", func(c *Config) { c.AuxSteps = -2 }, "AuxSteps"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Errorf("Validate() = %v, want an error naming %s", err, c.field)
			}
		})
	}
	// Height and Width without Size are fine.
	if err := (Config{Height: 32, Width: 64, Channels: 1, Steps: 1, Batch: 1, LearningRate: 1e-3}).Validate(); err != nil {
		t.Errorf("height/width only: %v", err)
	}
}

func TestTrainRejectsBadInput(t *testing.T) {
	cfg := Config{Size: 32, Steps: 1, Batch: 2}
	ctx := context.Background()
	if _, err := Train(ctx, cfg, make([]float32, 10), nil, nil); err == nil || !strings.Contains(err.Error(), "template") {
		t.Errorf("short template: %v", err)
	}
	if _, err := Train(ctx, cfg, make([]float32, 32*32), [][]float32{make([]float32, 32*32), make([]float32, 3)}, nil); err == nil || !strings.Contains(err.Error(), "image 1") {
		t.Errorf("short image: %v", err)
	}
	if _, err := Train(ctx, Config{Size: 30}, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "Size") {
		t.Errorf("bad config: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Train(cctx, cfg, make([]float32, 32*32), nil, nil); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("cancelled: %v", err)
	}
}

// TestDeterministic trains twice with the same seed (same weights, bit for
// bit) and once with another seed (different weights).
func TestDeterministic(t *testing.T) {
	s := renderSet(t, synth.Gear, 32, 32, 1, 4, 30, 0.1, 2)
	train := func(seed uint64) *Model {
		m, err := Train(context.Background(), Config{Size: 32, Steps: 4, Batch: 4, Seed: seed}, s.template, s.images, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b, c := train(1), train(1), train(2)
	da, _ := flatten(a.Weights)
	db, _ := flatten(b.Weights)
	dc, _ := flatten(c.Weights)
	same := func(x, y [][]float32) bool {
		for i := range x {
			if !slices.Equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	if !same(da, db) || !slices.Equal(a.Losses, b.Losses) {
		t.Error("same seed gave different weights or losses")
	}
	if same(da, dc) {
		t.Error("different seeds gave the same weights")
	}
}

// TestTrainAlignsAndExports trains briefly at 64×64 and checks that the loss
// goes down, that the pose error on held-out parts drops clearly below that
// of the untrained (identity) net, and that align.onnx built from the trained
// weights gives Predict's output in ONNX Runtime.
func TestTrainAlignsAndExports(t *testing.T) {
	const size = 64
	train := renderSet(t, synth.Bracket, size, size, 1, 24, 20, 0.08, 11)
	test := renderSet(t, synth.Bracket, size, size, 1, 24, 20, 0.08, 12)
	test.template, test.tplPose = train.template, train.tplPose
	cfg := Config{Size: size, Steps: 150, Batch: 8, Seed: 3, LearningRate: 2e-3, MaxRotationDeg: 20, MaxShiftFrac: 0.08}
	var log strings.Builder
	start := time.Now()
	m, err := Train(context.Background(), cfg, train.template, train.images, &log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trained in %v:\n%s", time.Since(start).Round(time.Millisecond), log.String())
	if !strings.Contains(log.String(), "img/s") || !strings.Contains(log.String(), "ETA") {
		t.Errorf("progress lacks rate or ETA: %q", log.String())
	}

	k := max(1, len(m.Losses)/5)
	first, last := mean(m.Losses[:k]), mean(m.Losses[len(m.Losses)-k:])
	t.Logf("L_reg first epochs %.5f, last epochs %.5f", first, last)
	if !(last < 0.8*first) {
		t.Errorf("loss did not go down: %.5f → %.5f", first, last)
	}

	t.Logf("validation pose error per check: %.2f px", m.PoseErrors)
	if len(m.PoseErrors) != 1+cfg.Steps/checkEvery || m.Steps != cfg.Steps {
		t.Errorf("%d pose checks over %d steps, want %d over %d", len(m.PoseErrors), m.Steps, 1+cfg.Steps/checkEvery, cfg.Steps)
	} else if !(m.PoseError < 0.7*m.PoseErrors[0]) {
		t.Errorf("validation pose error %.2f px untrained → %.2f px: the regressor did not learn to align", m.PoseErrors[0], m.PoseError)
	}

	untrained := &Model{Weights: netdef.NewAlignWeights(3, 1), Channels: 1, Height: size, Width: size, Template: train.template}
	d0, s0 := medianErrors(t, untrained, test)
	d1, s1 := medianErrors(t, m, test)
	t.Logf("median pose error on %d held-out parts: before %.2f° %.2f%%, after %.2f° %.2f%%", len(test.images), d0, 100*s0, d1, 100*s1)
	if !(d1 < 0.6*d0) || !(s1 < 0.8*s0) {
		t.Errorf("alignment did not improve clearly: %.2f° %.2f%% → %.2f° %.2f%%", d0, 100*s0, d1, 100*s1)
	}

	batch, err := m.PredictBatch(test.images)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 15, 16, len(test.images) - 1} {
		tx, ty, th := m.Predict(test.images[i])
		if d := math.Max(math.Abs(tx-batch[i][0]), math.Max(math.Abs(ty-batch[i][1]), math.Abs(th-batch[i][2]))); d > 1e-5 {
			t.Errorf("image %d: PredictBatch %v, Predict (%g, %g, %g)", i, batch[i], tx, ty, th)
		}
	}

	t.Run("onnx", func(t *testing.T) { checkONNX(t, m, test.images[:4]) })
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// checkONNX runs align.onnx of m's weights in ONNX Runtime on images and
// compares with Predict.
func checkONNX(t *testing.T, m *Model, images [][]float32) {
	model, err := netdef.AlignGraph(netdef.AlignSpec{Channels: m.Channels, Height: m.Height, Width: m.Width}, m.Weights)
	if err != nil {
		t.Fatal(err)
	}
	rt := infertest.Runtime(t)
	sess, err := rt.NewSession(model, infer.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	in, err := sess.Input("image")
	if err != nil {
		t.Fatal(err)
	}
	tp, err := sess.Input("template")
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("transform")
	if err != nil {
		t.Fatal(err)
	}
	copy(tp, m.Template)
	for i, im := range images {
		copy(in, im)
		if err := sess.Run(); err != nil {
			t.Fatal(err)
		}
		tx, ty, th := m.Predict(im)
		want := [3]float64{tx, ty, th}
		for j := range 3 {
			if d := math.Abs(float64(out[j]) - want[j]); d > 1e-4 {
				t.Errorf("image %d output %d: onnx %g, Predict %g", i, j, out[j], want[j])
			}
		}
		if i == 0 {
			t.Logf("image 0: onnx %v, Predict %v", out, want)
		}
	}
}

// TestLongQuality is the quality bar (INSPECTD_LONG=1): bracket parts at
// 128×128 (IMM_LONG_SIZE), poses within ±30° and ±10 % shift, template = one
// good image, held-out parts: median rotation error ≤ 2° and median shift
// error ≤ 1.5 % of the image size. IMM_LONG_STEPS overrides the step count.
func TestLongQuality(t *testing.T) {
	if os.Getenv("INSPECTD_LONG") != "1" {
		t.Skip("set INSPECTD_LONG=1 to run the IMM quality bar (minutes)")
	}
	size, steps := 128, 1200
	if v := os.Getenv("IMM_LONG_SIZE"); v != "" {
		if _, err := fmt.Sscan(v, &size); err != nil {
			t.Fatal(err)
		}
	}
	if v := os.Getenv("IMM_LONG_STEPS"); v != "" {
		if _, err := fmt.Sscan(v, &steps); err != nil {
			t.Fatal(err)
		}
	}
	train := renderSet(t, synth.Bracket, size, size, 1, 64, 30, 0.1, 21)
	test := renderSet(t, synth.Bracket, size, size, 1, 64, 30, 0.1, 22)
	test.template, test.tplPose = train.template, train.tplPose
	t.Logf("template pose %+v", train.tplPose)
	cfg := Config{Size: size, Steps: steps, Batch: 16, Seed: 1}
	start := time.Now()
	m, err := Train(context.Background(), cfg, train.template, train.images, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	untrained := &Model{Weights: netdef.NewAlignWeights(1, 1), Channels: 1, Height: size, Width: size, Template: train.template}
	d0, s0 := medianErrors(t, untrained, test)
	d1, s1 := medianErrors(t, m, test)
	dt, st := medianErrors(t, m, posedSet{images: train.images, poses: train.poses, tplPose: train.tplPose, w: size, h: size})
	t.Logf("%d×%d, %d steps × %d in %v: held-out median error before %.2f° %.2f%%, after %.2f° %.2f%% (training images %.2f° %.2f%%)",
		size, size, steps, cfg.Batch, wall.Round(time.Second), d0, 100*s0, d1, 100*s1, dt, 100*st)
	if d1 > 2 || s1 > 0.015 {
		t.Errorf("quality bar missed: median %.2f° (≤ 2°), %.2f%% (≤ 1.5%%)", d1, 100*s1)
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestWarpGradient checks d mean((warp(I, p) − T)²)/dp from GoMLX's autodiff
// against central finite differences: the pose must receive the gradient
// the unsupervised loss relies on.
func TestWarpGradient(t *testing.T) {
	const size = 32
	s := renderSet(t, synth.Bracket, size, size, 1, 1, 20, 0.05, 5)
	backend, err := gocompute.New()
	if err != nil {
		t.Fatal(err)
	}
	lossAndGrad, err := graph.NewExec(backend, func(img, tpl, pose *graph.Node) (*graph.Node, *graph.Node) {
		l := graph.ReduceAllMean(graph.Square(graph.Sub(warp(img, pose), tpl)))
		return l, graph.Gradient(l, pose)[0]
	})
	if err != nil {
		t.Fatal(err)
	}
	img := tensors.FromFlatDataAndDimensions(s.images[0], 1, 1, size, size)
	tpl := tensors.FromFlatDataAndDimensions(s.template, 1, 1, size, size)
	eval := func(p [3]float64) (float64, [3]float64) {
		res, err := lossAndGrad.Exec(img, tpl, tensors.FromFlatDataAndDimensions([]float32{float32(p[0]), float32(p[1]), float32(p[2])}, 1, 3))
		if err != nil {
			t.Fatal(err)
		}
		g := tensors.MustCopyFlatData[float32](res[1])
		return float64(tensors.MustCopyFlatData[float32](res[0])[0]), [3]float64{float64(g[0]), float64(g[1]), float64(g[2])}
	}
	p := [3]float64{0.031, -0.047, 0.113} // off the pixel grid
	_, grad := eval(p)
	const h = 1e-3
	for i := range 3 {
		a, b := p, p
		a[i] += h
		b[i] -= h
		la, _ := eval(a)
		lb, _ := eval(b)
		fd := (la - lb) / (2 * h)
		t.Logf("∂L/∂p%d: autodiff %.5g, finite difference %.5g", i, grad[i], fd)
		if math.Abs(fd-grad[i]) > 0.05*math.Abs(fd)+1e-4 {
			t.Errorf("∂L/∂p%d: autodiff %g, finite difference %g", i, grad[i], fd)
		}
	}
}

// TestConvergenceSettles: a pose error that stops improving by a tenth
// for `patience` checks ends training early, with the learning rate
// decaying from there to a tenth at the new last step; one that keeps
// improving never does.
func TestConvergenceSettles(t *testing.T) {
	var p plateau
	for i, e := range []float64{10, 5, 3, 2.9, 2.95, 2.8} {
		if p.add(e) {
			t.Fatalf("plateau after check %d (%v)", i, e)
		}
	}
	if !p.add(2.8) {
		t.Fatal("no plateau after 4 checks without a 10 % gain")
	}
	var q plateau
	for e := 10.0; e > 0.01; e *= 0.85 {
		if q.add(e) {
			t.Fatalf("plateau while still improving (at %g)", e)
		}
	}

	sc := newSchedule(Config{Steps: 1200, Batch: 16}, 50)
	sc.settle(400)
	if sc.steps != 500 || sc.decayStart != 400 || sc.auxSteps != 400 {
		t.Errorf("settle(400) of 1200 steps: steps %d, decay from %d, aux until %d; want 500, 400, 400", sc.steps, sc.decayStart, sc.auxSteps)
	}
	if lr := learningRate(1, 399, sc.decayStart, sc.steps); lr != 1 {
		t.Errorf("rate before the decay %g, want 1", lr)
	}
	if lr := learningRate(1, 499, sc.decayStart, sc.steps); math.Abs(lr-0.1) > 1e-12 {
		t.Errorf("rate at the last step %g, want 0.1", lr)
	}
	short := newSchedule(Config{Steps: 1200, Batch: 16}, 50)
	short.settle(1150)
	if short.steps != 1200 {
		t.Errorf("settling at 1150 extended training to %d steps, want the configured 1200", short.steps)
	}
}

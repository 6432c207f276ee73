//go:build workstation

package alm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/inspectd/inspectd/models/train/gocompute"

	"github.com/inspectd/inspectd/models/netdef"
)

// Adam hyper-parameters other than the learning rate (PyTorch defaults).
const (
	adamBeta1 = 0.9
	adamBeta2 = 0.999
	adamEps   = 1e-8
)

// maxWarmupSteps bounds the linear learning-rate warm-up (a tenth of all
// steps, at most this many): Adam's first steps move every weight by about
// the learning rate, which at 1e-3 throws the reduction-initialised N_M far
// from the centres before it recovers.
const maxWarmupSteps = 100

// normEps keeps the gradient of ‖F_M‖ finite at F_M = 0 (it changes the
// norm by less than float32 rounding for any non-degenerate vector).
const normEps = 1e-20

// RNG streams derived from Config.Seed.
const (
	streamReduction = iota + 1
	streamSampling
	streamDGM
)

// Train trains N_M on the good, aligned training images (each CHW 3×h×w in
// [0,1]) as described in the package documentation and returns the model.
// fe computes F_Mixed for h×w images. progress, if not nil, receives one line
// per epoch (epoch, loss, locations/s, ETA). Train stops with ctx's error
// when ctx is cancelled.
func Train(ctx context.Context, cfg Config, images [][]float32, h, w int, fe Features, progress io.Writer) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h <= 0 || w <= 0 || h%16 != 0 || w%16 != 0 {
		return nil, fmt.Errorf("alm train: size %d×%d (h×w), want positive multiples of 16", h, w)
	}
	if len(images) == 0 {
		return nil, errors.New("alm train: no training images")
	}
	if fe == nil {
		return nil, errors.New("alm train: no feature extractor")
	}
	if progress == nil {
		progress = io.Discard
	}
	for i, img := range images {
		if len(img) != 3*h*w {
			return nil, fmt.Errorf("alm train: image %d has %d values, want 3·%d·%d = %d", i, len(img), h, w, 3*h*w)
		}
	}
	h4, w4 := h/4, w/4
	n := h4 * w4
	start := time.Now()

	// 1. Features of the good images, once, location-major.
	feats := make([][]float32, len(images))
	for i, img := range images {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := locationMajor(fe, img, n)
		if err != nil {
			return nil, fmt.Errorf("alm train: image %d: %w", i, err)
		}
		feats[i] = f
	}
	fmt.Fprintf(progress, "alm: features of %d images (%d×%d) in %s\n", len(images), h, w, time.Since(start).Round(time.Millisecond))

	// 2–3. Reduction and centres.
	t0 := time.Now()
	red, meanMap := buildReduction(cfg, feats, n, rand.New(rand.NewPCG(cfg.Seed, streamReduction)))
	centre := centres(cfg, red, meanMap, n)
	fmt.Fprintf(progress, "alm: %s reduction to D=%d and %s centres in %s\n", cfg.Reduction, cfg.D, cfg.Centre, time.Since(t0).Round(time.Millisecond))

	// 4. Initial N_M.
	net := initMapping(cfg, red, feats, rand.New(rand.NewPCG(cfg.Seed, streamReduction+100)))

	m := &Model{D: cfg.D, Height: h, Width: w, Reduction: cfg.Reduction, CentreMode: cfg.Centre, Centre: centreCHW(centre, cfg.D, n)}
	if cfg.Epochs == 0 {
		m.Mapping = net.export()
		return m, nil
	}

	// 5–6. Training.
	tr, err := newTrainer(cfg, net)
	if err != nil {
		return nil, err
	}
	defer tr.close()
	L := cfg.LocationsPerStep
	stepsPerEpoch := (len(images)*n + L - 1) / L
	totalSteps := stepsPerEpoch * cfg.Epochs
	tr.warmup = min(maxWarmupSteps, max(totalSteps/10, 1))
	var gen *defectGen
	var pool *dgmPool
	dgmRand := rand.New(rand.NewPCG(cfg.Seed, streamDGM))
	if cfg.DGM.Enabled {
		if gen, err = newDefectGen(cfg.DGM, h, w); err != nil {
			return nil, err
		}
	}
	sample := rand.New(rand.NewPCG(cfg.Seed, streamSampling))
	x := make([]float32, L*mixedChannels)
	c := make([]float32, L*cfg.D)
	mk := make([]float32, L)
	trainStart := time.Now()
	var trainTime time.Duration
	steps := 0
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		if gen != nil && epoch%cfg.DGM.RefreshEpochs == 0 {
			t := time.Now()
			if pool, err = newPool(ctx, gen, dgmRand, images, fe, cfg.DGM.PoolSize, n); err != nil {
				return nil, err
			}
			fmt.Fprintf(progress, "alm: DGM pool of %d images (%.1f%% defect locations) in %s\n", cfg.DGM.PoolSize, 100*pool.defectShare(), time.Since(t).Round(time.Millisecond))
		}
		epochStart := time.Now()
		var sumLoss, sumNormal, sumHinge float64
		for s := 0; s < stepsPerEpoch; s++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			fillBatch(sample, cfg, feats, pool, centre, n, x, c, mk)
			loss, normal, hinge, err := tr.step(x, c, mk)
			if err != nil {
				return nil, fmt.Errorf("alm train: epoch %d step %d: %w", epoch+1, s+1, err)
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, fmt.Errorf("alm train: epoch %d step %d: loss is %g", epoch+1, s+1, loss)
			}
			sumLoss += loss
			sumNormal += normal
			sumHinge += hinge
			steps++
		}
		el := time.Since(epochStart)
		trainTime += el
		k := float64(stepsPerEpoch)
		m.Losses = append(m.Losses, sumLoss/k)
		rate := float64(steps*L) / trainTime.Seconds()
		eta := time.Duration(float64(totalSteps-steps) * float64(L) / rate * float64(time.Second))
		fmt.Fprintf(progress, "alm: epoch %d/%d loss %.5f (normal %.5f, defect hinge %.5f) %.0f locations/s, %s, ETA %s\n",
			epoch+1, cfg.Epochs, sumLoss/k, sumNormal/k, sumHinge/k, rate, el.Round(time.Millisecond), eta.Round(time.Second))
	}
	m.Mapping = tr.net.export()
	m.LocationsPerSecond = float64(steps*L) / trainTime.Seconds()
	fmt.Fprintf(progress, "alm: trained in %s (%d steps of %d locations)\n", time.Since(trainStart).Round(time.Millisecond), steps, L)
	return m, nil
}

// locationMajor returns F_Mixed of img transposed to n×448.
func locationMajor(fe Features, img []float32, n int) ([]float32, error) {
	mixed, err := fe.Mixed(img)
	if err != nil {
		return nil, err
	}
	if len(mixed) != mixedChannels*n {
		return nil, fmt.Errorf("features have %d values, want %d·%d = %d", len(mixed), mixedChannels, n, mixedChannels*n)
	}
	out := make([]float32, len(mixed))
	for ch := 0; ch < mixedChannels; ch++ {
		src := mixed[ch*n : (ch+1)*n]
		for p, v := range src {
			out[p*mixedChannels+ch] = v
		}
	}
	return out, nil
}

// buildReduction returns the reduction and the per-location mean of F_Mixed
// (n×448, location-major, float64).
func buildReduction(cfg Config, feats [][]float32, n int, r *rand.Rand) (*reduction, []float64) {
	meanMap := make([]float64, n*mixedChannels)
	for _, f := range feats {
		for i, v := range f {
			meanMap[i] += float64(v)
		}
	}
	inv := 1 / float64(len(feats))
	mu := make([]float64, mixedChannels)
	for i := range meanMap {
		meanMap[i] *= inv
		mu[i%mixedChannels] += meanMap[i] / float64(n)
	}
	red := &reduction{mu: mu}
	switch cfg.Reduction {
	case ReductionPCA:
		total := len(feats) * n
		var samples [][]float32
		if total <= pcaSamples {
			for _, f := range feats {
				for p := 0; p < n; p++ {
					samples = append(samples, f[p*mixedChannels:(p+1)*mixedChannels])
				}
			}
		} else {
			for k := 0; k < pcaSamples; k++ {
				i, p := r.IntN(len(feats)), r.IntN(n)
				samples = append(samples, feats[i][p*mixedChannels:(p+1)*mixedChannels])
			}
		}
		red.p = pcaDirections(samples, mu, cfg.D)
	default:
		red.p = randomOrthogonal(r, cfg.D, mixedChannels)
	}
	if cfg.Centre == CentreGlobal {
		// The mean of P·(x − μ) over all locations would be the zero vector:
		// a global centre uses the uncentred projection P·x.
		red.mu = make([]float64, mixedChannels)
	}
	return red, meanMap
}

// centres returns F_C location-major (n×D) for CentreLocal, or the single
// global centre (D values) for CentreGlobal. By linearity, the mean of the
// reduced features is the reduction of the mean features.
func centres(cfg Config, red *reduction, meanMap []float64, n int) []float32 {
	x := make([]float32, mixedChannels)
	tmp := make([]float64, cfg.D)
	if cfg.Centre == CentreGlobal {
		for k := range x {
			var s float64
			for p := 0; p < n; p++ {
				s += meanMap[p*mixedChannels+k]
			}
			x[k] = float32(s / float64(n))
		}
		red.apply(tmp, x)
		out := make([]float32, cfg.D)
		for o, v := range tmp {
			out[o] = float32(v)
		}
		return out
	}
	out := make([]float32, n*cfg.D)
	for p := 0; p < n; p++ {
		for k := range x {
			x[k] = float32(meanMap[p*mixedChannels+k])
		}
		red.apply(tmp, x)
		for o, v := range tmp {
			out[p*cfg.D+o] = float32(v)
		}
	}
	return out
}

// centreCHW returns F_C as D×n (CHW), broadcasting a global centre.
func centreCHW(centre []float32, d, n int) []float32 {
	out := make([]float32, d*n)
	global := len(centre) == d
	for p := 0; p < n; p++ {
		for o := 0; o < d; o++ {
			if global {
				out[o*n+p] = centre[o]
			} else {
				out[o*n+p] = centre[p*d+o]
			}
		}
	}
	return out
}

// mapping is N_M during training: weights in [in, out] layout (the
// transpose of PyTorch's), biases of length out.
type mapping struct {
	w, b [][]float32
	in   []int
	d    int
}

// export returns the weights in netdef's (PyTorch) layout.
func (m *mapping) export() netdef.MappingWeights {
	var mw netdef.MappingWeights
	for l := range m.w {
		in := m.in[l]
		cw := netdef.ConvWeights{Out: m.d, In: in, Kernel: 1, Weight: make([]float32, m.d*in), Bias: append([]float32(nil), m.b[l]...)}
		for i := 0; i < in; i++ {
			for o := 0; o < m.d; o++ {
				cw.Weight[o*in+i] = m.w[l][i*m.d+o]
			}
		}
		mw.Layers = append(mw.Layers, cw)
	}
	return mw
}

// initMapping initialises N_M so that it computes the reduction: layer 0 is
// P with bias −P·μ + s, middle layers are the identity, and the last layer
// is the identity with bias −s. s exceeds the most negative reduced value
// over a sample of training locations (by 10 %), so the ReLUs pass
// everything through for the training data at the start.
func initMapping(cfg Config, red *reduction, feats [][]float32, r *rand.Rand) *mapping {
	d := cfg.D
	m := &mapping{d: d}
	var shift float64
	if cfg.MappingLayers > 1 {
		tmp := make([]float64, d)
		for k := 0; k < 2048; k++ {
			f := feats[r.IntN(len(feats))]
			p := r.IntN(len(f) / mixedChannels)
			red.apply(tmp, f[p*mixedChannels:(p+1)*mixedChannels])
			for _, v := range tmp {
				shift = math.Max(shift, -v)
			}
		}
		shift = 1.1*shift + 1e-3
	}
	pmu := make([]float64, d)
	for o := 0; o < d; o++ {
		for k := 0; k < mixedChannels; k++ {
			pmu[o] += red.p[o*mixedChannels+k] * red.mu[k]
		}
	}
	for l := 0; l < cfg.MappingLayers; l++ {
		in := d
		if l == 0 {
			in = mixedChannels
		}
		w := make([]float32, in*d)
		b := make([]float32, d)
		if l == 0 {
			for o := 0; o < d; o++ {
				for k := 0; k < mixedChannels; k++ {
					w[k*d+o] = float32(red.p[o*mixedChannels+k])
				}
				b[o] = float32(-pmu[o] + shift)
			}
		} else {
			for o := 0; o < d; o++ {
				w[o*d+o] = 1
			}
			if l == cfg.MappingLayers-1 {
				for o := range b {
					b[o] = float32(-shift)
				}
			}
		}
		m.w = append(m.w, w)
		m.b = append(m.b, b)
		m.in = append(m.in, in)
	}
	return m
}

// dgmPool holds augmented images' features (location-major) and defect cells.
type dgmPool struct {
	feats [][]float32
	masks [][]bool
}

func newPool(ctx context.Context, gen *defectGen, r *rand.Rand, images [][]float32, fe Features, size, n int) (*dgmPool, error) {
	p := &dgmPool{}
	for k := 0; k < size; k++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		i := r.IntN(len(images))
		other := images[(i+1+r.IntN(max(len(images)-1, 1)))%len(images)]
		img, mask := gen.augment(r, images[i], other)
		f, err := locationMajor(fe, img, n)
		if err != nil {
			return nil, fmt.Errorf("alm train: DGM image %d: %w", k, err)
		}
		p.feats = append(p.feats, f)
		p.masks = append(p.masks, mask)
	}
	return p, nil
}

// defectShare is the fraction of pool locations that are defect locations.
func (p *dgmPool) defectShare() float64 {
	var d, t int
	for _, m := range p.masks {
		for _, v := range m {
			if v {
				d++
			}
		}
		t += len(m)
	}
	return float64(d) / float64(max(t, 1))
}

// fillBatch samples len(mk) (image, location) pairs: from the DGM pool with
// probability cfg.DGM.Fraction (when there is a pool), else from the good
// images; x gets F_Mixed, c the centre and mk 1 for defect locations.
func fillBatch(r *rand.Rand, cfg Config, feats [][]float32, pool *dgmPool, centre []float32, n int, x, c, mk []float32) {
	d := cfg.D
	global := len(centre) == d
	for k := range mk {
		p := r.IntN(n)
		var src []float32
		mk[k] = 0
		if pool != nil && r.Float64() < cfg.DGM.Fraction {
			j := r.IntN(len(pool.feats))
			src = pool.feats[j]
			if pool.masks[j][p] {
				mk[k] = 1
			}
		} else {
			src = feats[r.IntN(len(feats))]
		}
		copy(x[k*mixedChannels:(k+1)*mixedChannels], src[p*mixedChannels:(p+1)*mixedChannels])
		if global {
			copy(c[k*d:(k+1)*d], centre)
		} else {
			copy(c[k*d:(k+1)*d], centre[p*d:(p+1)*d])
		}
	}
}

// trainer runs the GoMLX loss-and-gradient graph and Adam.
type trainer struct {
	backend compute.Backend
	exec    *graph.Exec
	net     *mapping
	lr      float64
	warmup  int // steps of linear learning-rate warm-up
	t       int
	m, v    [][]float32 // Adam moments, one per parameter (w0, b0, w1, b1, …)
	locs, d int
}

func newTrainer(cfg Config, net *mapping) (*trainer, error) {
	backend, err := gocompute.New()
	if err != nil {
		return nil, fmt.Errorf("alm train: GoMLX backend: %w", err)
	}
	exec, err := graph.NewExec(backend, lossGraph(cfg.MappingLayers, cfg.DGM.Delta))
	if err != nil {
		backend.Finalize()
		return nil, fmt.Errorf("alm train: GoMLX graph: %w", err)
	}
	tr := &trainer{backend: backend, exec: exec, net: net, lr: cfg.LearningRate, locs: cfg.LocationsPerStep, d: cfg.D}
	for l := range net.w {
		tr.m = append(tr.m, make([]float32, len(net.w[l])), make([]float32, len(net.b[l])))
		tr.v = append(tr.v, make([]float32, len(net.w[l])), make([]float32, len(net.b[l])))
	}
	return tr, nil
}

func (tr *trainer) close() {
	tr.exec.Finalize()
	tr.backend.Finalize()
}

// lossGraph returns the GoMLX graph function computing eq. 5 (eq. 3 when
// every mask flag is 0) on a batch and its gradient. Inputs: x [N,448],
// c [N,D], mask [N] (1 for defect locations), then w0 [448,D], b0 [D],
// w1 [D,D], b1 [D], … Outputs: loss, its normal part, its hinge part, then
// the gradients in parameter order.
func lossGraph(layers int, delta float64) func([]*graph.Node) []*graph.Node {
	return func(in []*graph.Node) []*graph.Node {
		x, c, mask := in[0], in[1], in[2]
		params := in[3:]
		fm := x
		for l := 0; l < layers; l++ {
			if l > 0 {
				fm = graph.MaxScalar(fm, 0)
			}
			fm = graph.Add(graph.MatMul(fm, params[2*l]), graph.InsertAxes(params[2*l+1], 0))
		}
		loss, normal, defect := mapLoss(fm, c, mask, delta)
		return append([]*graph.Node{loss, normal, defect}, graph.Gradient(loss, params...)...)
	}
}

// mapLoss is eq. 5 on a batch: F_M rows fm [N,D], centres c [N,D], mask [N]
// (1 for synthetic-defect locations). It returns the loss and its two parts:
// the mean over the batch of 0.5·(1 − cos) at normal locations and of
// max(0, δ − 0.5·(1 − cos)) at defect locations. With an all-zero mask it is
// eq. 3.
func mapLoss(fm, c, mask *graph.Node, delta float64) (loss, normal, defect *graph.Node) {
	dist := lossDistance(fm, c)
	hinge := graph.MaxScalar(graph.Neg(graph.AddScalar(dist, -delta)), 0)
	normal = graph.ReduceAllMean(graph.Mul(graph.OneMinus(mask), dist))
	defect = graph.ReduceAllMean(graph.Mul(mask, hinge))
	return graph.Add(normal, defect), normal, defect
}

// lossDistance is 0.5·(1 − cos(fm, c)) per row, with the cosine of
// netdef.LocalizeGraph: dot / (‖fm‖·‖c‖ + CosineEps).
func lossDistance(fm, c *graph.Node) *graph.Node {
	dot := graph.ReduceSum(graph.Mul(fm, c), 1)
	nf := graph.Sqrt(graph.AddScalar(graph.ReduceSum(graph.Mul(fm, fm), 1), normEps))
	nc := graph.Sqrt(graph.ReduceSum(graph.Mul(c, c), 1))
	cos := graph.Div(dot, graph.AddScalar(graph.Mul(nf, nc), netdef.CosineEps))
	return graph.MulScalar(graph.OneMinus(cos), 0.5)
}

// step runs one Adam step on the batch and returns the loss and its parts.
func (tr *trainer) step(x, c, mk []float32) (loss, normal, hinge float64, err error) {
	args := []any{
		tensors.FromFlatDataAndDimensions(x, tr.locs, mixedChannels),
		tensors.FromFlatDataAndDimensions(c, tr.locs, tr.d),
		tensors.FromFlatDataAndDimensions(mk, tr.locs),
	}
	var params [][]float32
	for l := range tr.net.w {
		params = append(params, tr.net.w[l], tr.net.b[l])
		args = append(args,
			tensors.FromFlatDataAndDimensions(tr.net.w[l], tr.net.in[l], tr.d),
			tensors.FromFlatDataAndDimensions(tr.net.b[l], tr.d))
	}
	outs, err := tr.exec.Exec(args...)
	for _, a := range args {
		a.(*tensors.Tensor).FinalizeAll()
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("GoMLX: %w", err)
	}
	defer func() {
		for _, o := range outs {
			o.FinalizeAll()
		}
	}()
	loss = float64(tensors.ToScalar[float32](outs[0]))
	normal = float64(tensors.ToScalar[float32](outs[1]))
	hinge = float64(tensors.ToScalar[float32](outs[2]))
	tr.t++
	bc1 := 1 - math.Pow(adamBeta1, float64(tr.t))
	bc2 := 1 - math.Pow(adamBeta2, float64(tr.t))
	lr := tr.lr * min(1, float64(tr.t)/float64(tr.warmup)) / bc1
	for i, p := range params {
		grad, err := tensors.CopyFlatData[float32](outs[3+i])
		if err != nil {
			return 0, 0, 0, fmt.Errorf("GoMLX gradient %d: %w", i, err)
		}
		m, v := tr.m[i], tr.v[i]
		for k, g := range grad {
			m[k] = adamBeta1*m[k] + (1-adamBeta1)*g
			v[k] = adamBeta2*v[k] + (1-adamBeta2)*g*g
			p[k] -= float32(lr * float64(m[k]) / (math.Sqrt(float64(v[k])/bc2) + adamEps))
		}
	}
	return loss, normal, hinge, nil
}

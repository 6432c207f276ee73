//go:build workstation

package imm

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/inspectd/inspectd/models/train/gocompute"

	"github.com/inspectd/inspectd/logging"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Model is a trained IMM regressor.
type Model struct {
	// Weights are the regressor weights in netdef layout; export them with
	// netdef.AlignGraph(netdef.AlignSpec{Channels, Height, Width}, Weights).
	Weights netdef.AlignWeights
	// Channels, Height, Width are the regressor input shape.
	Channels, Height, Width int
	// Template is the template image I_T (C×H×W, [0,1]) the model aligns to.
	Template []float32
	// Losses is the mean L_reg (paper eq. 2) of each epoch.
	Losses []float64
	// Steps is the number of steps trained (fewer than configured when the
	// pose error converged early), PoseErrors the validation pose error
	// (median corner displacement, regressor pixels) before training and at
	// each check, and PoseError the final one.
	Steps      int
	PoseErrors []float64
	PoseError  float64
	// ValidationLosses is L_reg on the validation poses at each check (the
	// convergence criterion).
	ValidationLosses []float64

	mu      sync.Mutex
	backend compute.Backend
	predict *graph.Exec
	params  []*tensors.Tensor
	tpl     *tensors.Tensor
}

// predictChunk is the batch size PredictBatch runs large requests in.
const predictChunk = 16

// Predict returns the transform (tx, ty, θ) that aligns image (C×H×W float32
// in [0,1], the model's shape) to the template, in the convention of
// preprocess.AffineMatrix. It panics when the image has the wrong length or the
// backend fails; use [Model.PredictBatch] to get an error instead.
func (m *Model) Predict(image []float32) (tx, ty, theta float64) {
	out, err := m.PredictBatch([][]float32{image})
	if err != nil {
		panic(err)
	}
	return out[0][0], out[0][1], out[0][2]
}

// PredictBatch returns (tx, ty, θ) for each image (see [Model.Predict]).
// Safe for concurrent use. The weights and template are read at the first
// prediction; later changes to the fields are not seen.
func (m *Model) PredictBatch(images [][]float32) ([][3]float64, error) {
	n := m.Channels * m.Height * m.Width
	if len(m.Template) != n {
		return nil, fmt.Errorf("imm predict: template has %d values, want %d (C×H×W = %d×%d×%d)", len(m.Template), n, m.Channels, m.Height, m.Width)
	}
	if len(images) == 0 {
		return nil, nil
	}
	for i, im := range images {
		if len(im) != n {
			return nil, fmt.Errorf("imm predict: image %d has %d values, want %d (C×H×W = %d×%d×%d)", i, len(im), n, m.Channels, m.Height, m.Width)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.predict == nil {
		if err := m.Weights.Validate(m.Channels); err != nil {
			return nil, fmt.Errorf("imm predict: %w", err)
		}
		if m.backend == nil {
			b, err := gocompute.New()
			if err != nil {
				return nil, fmt.Errorf("imm predict: go backend: %w", err)
			}
			m.backend = b
		}
		e, err := graph.NewExec(m.backend, predictGraph)
		if err != nil {
			return nil, fmt.Errorf("imm predict: %w", err)
		}
		m.predict = e
		m.params = weightTensors(m.Weights)
		m.tpl = tensors.FromFlatDataAndDimensions(append([]float32(nil), m.Template...), 1, m.Channels, m.Height, m.Width)
	}
	// Batches of predictChunk (the last one padded by repeating an image) or
	// of 1, so that at most two graph shapes are ever compiled.
	chunk := 1
	if len(images) >= predictChunk {
		chunk = predictChunk
	}
	out := make([][3]float64, 0, len(images))
	batch := make([]float32, chunk*n)
	for lo := 0; lo < len(images); lo += chunk {
		for j := range chunk {
			copy(batch[j*n:(j+1)*n], images[min(lo+j, len(images)-1)])
		}
		args := make([]any, 0, numParams+2)
		for _, p := range m.params {
			args = append(args, p)
		}
		args = append(args, tensors.FromFlatDataAndDimensions(append([]float32(nil), batch...), chunk, m.Channels, m.Height, m.Width), m.tpl)
		res, err := m.predict.Exec(args...)
		if err != nil {
			return nil, fmt.Errorf("imm predict: %w", err)
		}
		flat, err := tensors.CopyFlatData[float32](res[0])
		if err != nil {
			return nil, fmt.Errorf("imm predict: %w", err)
		}
		for j := 0; j < chunk && lo+j < len(images); j++ {
			out = append(out, [3]float64{float64(flat[3*j]), float64(flat[3*j+1]), float64(flat[3*j+2])})
		}
	}
	return out, nil
}

// Train trains the IMM regressor to align images to template. template and
// every image are C×H×W float32 in [0,1] at the regressor resolution (cfg's
// Channels, Height, Width). The template also serves as a good image. Each
// step draws cfg.Batch good images, warps each by a random pose within the
// configured range (the augmentation), predicts (tx, ty, θ), warps the
// augmented image back with the prediction and minimises L_reg = mean((I_M −
// I_T)²) with Adam, plus the decaying auxiliary term described on
// [Config.AuxWeight]: while it is active, a quarter of each batch are
// augmented copies of the template, whose correct transform is the inverse
// of the augmentation. progress (may be nil) gets one line per epoch, at
// most one a second on a terminal and one every 5 s elsewhere (a log), and
// the last, with the loss, images/s and the ETA.
func Train(ctx context.Context, cfg Config, template []float32, images [][]float32, progress io.Writer) (*Model, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pool, err := imagePool(cfg, template, images)
	if err != nil {
		return nil, err
	}
	sc := newSchedule(cfg, len(pool))
	backend, err := gocompute.New()
	if err != nil {
		return nil, fmt.Errorf("imm train: go backend: %w", err)
	}
	exec, err := graph.NewExec(backend, trainStep)
	if err != nil {
		return nil, fmt.Errorf("imm train: %w", err)
	}
	defer exec.Finalize()

	C, H, W := cfg.Channels, cfg.Height, cfg.Width
	w0 := netdef.NewAlignWeights(cfg.Seed, C)
	st := &trainState{
		cfg: cfg, sc: sc, pool: pool, exec: exec,
		params: weightTensors(w0), m1: zerosLike(w0), m2: zerosLike(w0),
		tpl: tensors.FromFlatDataAndDimensions(append([]float32(nil), template...), 1, C, H, W),
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x1a11)),
		b:   newBatch(cfg.Batch, C*H*W),
	}
	model := &Model{Channels: C, Height: H, Width: W, Template: append([]float32(nil), template...), backend: backend}
	val, err := newValidation(backend, cfg, template, cfg.Seed)
	if err != nil {
		return nil, err
	}
	val.model = &Model{Channels: C, Height: H, Width: W, Template: model.Template, Weights: w0, backend: backend}
	defer val.close()
	e0, l0, err := val.check(st.params)
	if err != nil {
		return nil, fmt.Errorf("imm train: %w", err)
	}
	model.PoseErrors, model.ValidationLosses = append(model.PoseErrors, e0), append(model.ValidationLosses, l0)
	var flat plateau
	rep := newReporter(progress, &st.sc, cfg.Batch, time.Now, logging.IsTerminal)
	s := 0
	for ; s < st.sc.steps; s++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("imm train: step %d of %d: %w", s, sc.steps, err)
		}
		wAux := sc.auxWeight(s)
		st.fillBatch(wAux)
		lreg, laux, err := st.step(s, wAux)
		if err != nil {
			return nil, fmt.Errorf("imm train: step %d: %w", s, err)
		}
		if math.IsNaN(lreg) || math.IsInf(lreg, 0) {
			return nil, fmt.Errorf("imm train: step %d: loss is %g (lower LearningRate)", s, lreg)
		}
		if loss, done := rep.add(s, lreg, laux, wAux); done {
			model.Losses = append(model.Losses, loss)
		}
		if (s+1)%checkEvery == 0 || s == st.sc.steps-1 {
			e, l, err := val.check(st.params)
			if err != nil {
				return nil, fmt.Errorf("imm train: step %d: %w", s+1, err)
			}
			model.PoseErrors, model.ValidationLosses = append(model.PoseErrors, e), append(model.ValidationLosses, l)
			if flat.add(l) && s+1 >= minStepsToSettle && s+1 < st.sc.decayStart {
				st.sc.settle(s + 1)
				fmt.Fprintf(cmp.Or[io.Writer](progress, io.Discard), "imm converged at step %d (validation L_reg %.5f, pose error %.2f px): settling for %d more steps instead of %d\n",
					s+1, l, e, st.sc.steps-s-1, cfg.Steps-s-1)
			}
		}
	}
	model.Steps = s
	if n := len(model.PoseErrors); n > 0 {
		model.PoseError = model.PoseErrors[n-1]
	}
	w, err := weightsFromTensors(st.params, C)
	if err != nil {
		return nil, fmt.Errorf("imm train: %w", err)
	}
	model.Weights = w
	return model, nil
}

// imagePool checks the sizes of the template and images and returns them
// as one pool, the template first (index 0).
func imagePool(cfg Config, template []float32, images [][]float32) ([][]float32, error) {
	C, H, W := cfg.Channels, cfg.Height, cfg.Width
	n := C * H * W
	if len(template) != n {
		return nil, fmt.Errorf("imm train: template has %d values, want %d (C×H×W = %d×%d×%d)", len(template), n, C, H, W)
	}
	pool := make([][]float32, 0, len(images)+1)
	pool = append(pool, template)
	for i, im := range images {
		if len(im) != n {
			return nil, fmt.Errorf("imm train: image %d has %d values, want %d (C×H×W = %d×%d×%d)", i, len(im), n, C, H, W)
		}
		pool = append(pool, im)
	}
	return pool, nil
}

// schedule is the length of training, the start of the learning rate's
// decay and the auxiliary term's decay.
type schedule struct {
	steps, stepsPerEpoch, epochs, auxSteps, decayStart int
	auxW                                               float64
}

// settle ends training early from step s: the learning rate decays over
// max(100, s/4) more steps (never past the configured end).
func (sc *schedule) settle(s int) {
	sc.decayStart = s
	sc.steps = min(sc.steps, s+max(100, s/4))
	sc.epochs = (sc.steps + sc.stepsPerEpoch - 1) / sc.stepsPerEpoch
	sc.auxSteps = min(sc.auxSteps, s)
}

func newSchedule(cfg Config, poolSize int) schedule {
	sc := schedule{stepsPerEpoch: (poolSize + cfg.Batch - 1) / cfg.Batch, steps: cfg.Steps, auxSteps: cfg.AuxSteps, auxW: max(cfg.AuxWeight, 0)}
	if cfg.Epochs > 0 {
		sc.steps = cfg.Epochs * sc.stepsPerEpoch
	}
	sc.epochs = (sc.steps + sc.stepsPerEpoch - 1) / sc.stepsPerEpoch
	if sc.auxSteps == 0 {
		sc.auxSteps = sc.steps / 2
	}
	sc.decayStart = sc.steps / 2
	return sc
}

// auxWeight is the auxiliary term's weight at step s: a linear decay to 0
// at auxSteps.
func (sc schedule) auxWeight(s int) float64 {
	if s >= sc.auxSteps {
		return 0
	}
	return sc.auxW * (1 - float64(s)/float64(sc.auxSteps))
}

// batch is the host-side data of one step.
type batch struct {
	src, aug, target, mask []float32
}

func newBatch(b, n int) *batch {
	return &batch{src: make([]float32, b*n), aug: make([]float32, b*3), target: make([]float32, b*3), mask: make([]float32, b)}
}

// trainState is the parameters, Adam moments and data of a training run.
type trainState struct {
	cfg    Config
	sc     schedule
	pool   [][]float32
	exec   *graph.Exec
	params []*tensors.Tensor
	m1, m2 []*tensors.Tensor
	tpl    *tensors.Tensor
	rng    *rand.Rand
	b      *batch
}

// fillBatch draws cfg.Batch images with random poses; while the auxiliary
// term is active, a quarter of them are copies of the template, with the
// inverse of their pose as the target.
func (st *trainState) fillBatch(wAux float64) {
	cfg, b := st.cfg, st.b
	n := cfg.Channels * cfg.Height * cfg.Width
	nTpl := 0
	if wAux > 0 {
		nTpl = max(1, cfg.Batch/4)
	}
	for i := range cfg.Batch {
		k := 0
		if i >= nTpl {
			k = st.rng.IntN(len(st.pool))
		}
		copy(b.src[i*n:(i+1)*n], st.pool[k])
		var p [3]float64
		if !cfg.NoAugment {
			p = randomPose(st.rng, cfg.MaxRotationDeg, cfg.MaxShiftFrac)
		}
		b.aug[3*i], b.aug[3*i+1], b.aug[3*i+2] = float32(p[0]), float32(p[1]), float32(p[2])
		b.mask[i] = 0
		if k == 0 {
			t := InversePose(p[0], p[1], p[2], cfg.Height, cfg.Width)
			b.target[3*i], b.target[3*i+1], b.target[3*i+2] = float32(t[0]), float32(t[1]), float32(t[2])
			b.mask[i] = 1
		}
	}
}

// step runs one Adam step on the current batch and returns L_reg and the
// auxiliary loss.
func (st *trainState) step(s int, wAux float64) (lreg, laux float64, err error) {
	cfg, b := st.cfg, st.b
	B, C, H, W := cfg.Batch, cfg.Channels, cfg.Height, cfg.Width
	t := float64(s + 1)
	lrT := learningRate(cfg.LearningRate, s, st.sc.decayStart, st.sc.steps) * math.Sqrt(1-math.Pow(adamBeta2, t)) / (1 - math.Pow(adamBeta1, t))
	args := make([]any, 0, 3*numParams+7)
	for _, group := range [][]*tensors.Tensor{st.params, st.m1, st.m2} {
		for _, x := range group {
			args = append(args, x)
		}
	}
	args = append(args,
		tensors.FromScalar(float32(lrT)), tensors.FromScalar(float32(wAux)),
		tensors.FromFlatDataAndDimensions(append([]float32(nil), b.src...), B, C, H, W),
		tensors.FromFlatDataAndDimensions(append([]float32(nil), b.aug...), B, 3),
		st.tpl,
		tensors.FromFlatDataAndDimensions(append([]float32(nil), b.target...), B, 3),
		tensors.FromFlatDataAndDimensions(append([]float32(nil), b.mask...), B))
	res, err := st.exec.Exec(args...)
	if err != nil {
		return 0, 0, err
	}
	st.params, st.m1, st.m2 = res[:numParams], res[numParams:2*numParams], res[2*numParams:3*numParams]
	if lreg, err = scalar(res[3*numParams]); err != nil {
		return 0, 0, err
	}
	if laux, err = scalar(res[3*numParams+1]); err != nil {
		return 0, 0, err
	}
	return lreg, laux, nil
}

// Least time between two progress lines: on a terminal, and in a file or
// a pipe (a log, which a line a second would flood on long runs).
const (
	terminalReportInterval = time.Second
	plainReportInterval    = 5 * time.Second
)

// reporter averages the losses per epoch and prints at most one progress
// line per interval (and the last).
type reporter struct {
	progress         io.Writer
	sc               *schedule
	batch            int
	now              func() time.Time
	interval         time.Duration
	start, lastPrint time.Time
	epoch            int
	reg, aux         float64
	n                int
}

// newReporter starts the clock now of a reporter to progress (may be nil),
// which terminal tells whether is a terminal.
func newReporter(progress io.Writer, sc *schedule, batch int, now func() time.Time, terminal func(io.Writer) bool) *reporter {
	r := &reporter{progress: progress, sc: sc, batch: batch, now: now, interval: plainReportInterval, start: now()}
	if progress != nil && terminal(progress) {
		r.interval = terminalReportInterval
	}
	return r
}

// add records step s's losses; at the end of an epoch it returns the
// epoch's mean L_reg and true.
func (r *reporter) add(s int, lreg, laux, wAux float64) (float64, bool) {
	r.reg += lreg
	r.aux += laux
	r.n++
	if r.n != r.sc.stepsPerEpoch && s != r.sc.steps-1 {
		return 0, false
	}
	r.epoch++
	mean := r.reg / float64(r.n)
	now := r.now()
	if r.progress != nil && (now.Sub(r.lastPrint) >= r.interval || s == r.sc.steps-1) {
		r.lastPrint = now
		el := now.Sub(r.start)
		rate := float64((s+1)*r.batch) / el.Seconds()
		eta := time.Duration(float64(el) / float64(s+1) * float64(r.sc.steps-s-1)).Round(time.Second)
		fmt.Fprintf(r.progress, "imm epoch %d/%d step %d/%d L_reg %.5f aux %.5f (w %.2f) %.1f img/s ETA %s\n",
			r.epoch, r.sc.epochs, s+1, r.sc.steps, mean, r.aux/float64(r.n), wAux, rate, eta)
	}
	r.reg, r.aux, r.n = 0, 0, 0
	return mean, true
}

// learningRate is the schedule: constant until decayStart (half of
// training, or where the pose error converged), then a linear decay to a
// tenth of the rate at the last step, which settles the final sub-pixel
// alignment.
func learningRate(lr float64, step, decayStart, steps int) float64 {
	if step < decayStart || steps-decayStart <= 1 {
		return lr
	}
	f := float64(step-decayStart) / float64(steps-decayStart-1)
	return lr * (1 - 0.9*f)
}

// randomPose draws an augmentation (tx, ty, θ) in AffineMatrix units:
// rotation uniform in ±maxDeg degrees, shift uniform in ±maxShift of the
// image size (normalised coordinates span 2, hence the factor 2).
func randomPose(r *rand.Rand, maxDeg, maxShift float64) [3]float64 {
	th := (2*r.Float64() - 1) * maxDeg * math.Pi / 180
	tx := (2*r.Float64() - 1) * maxShift * 2
	ty := (2*r.Float64() - 1) * maxShift * 2
	return [3]float64{tx, ty, th}
}

// InversePose returns the transform (tx', ty', θ') whose
// preprocess.AffineMatrix is the inverse of that of (tx, ty, θ) for an image of
// the given size: warping by one and then by the other is the identity.
func InversePose(tx, ty, theta float64, height, width int) [3]float64 {
	inv := preprocess.Transform{Tx: tx, Ty: ty, Theta: theta}.Inverse(width, height)
	return [3]float64{inv.Tx, inv.Ty, inv.Theta}
}

func scalar(t *tensors.Tensor) (float64, error) {
	v, err := tensors.CopyFlatData[float32](t)
	if err != nil {
		return 0, err
	}
	return float64(v[0]), nil
}

// flatten lists the weight slices in graph parameter order, with their shapes.
func flatten(w netdef.AlignWeights) (data [][]float32, dims [][]int) {
	for _, c := range append(w.Features[:], w.Regress[:]...) {
		data = append(data, c.Weight, c.Bias)
		dims = append(dims, []int{c.Out, c.In, c.Kernel, c.Kernel}, []int{c.Out})
	}
	for _, d := range []netdef.DenseWeights{w.Hidden, w.Out} {
		data = append(data, d.Weight, d.Bias)
		dims = append(dims, []int{d.Out, d.In}, []int{d.Out})
	}
	return data, dims
}

func weightTensors(w netdef.AlignWeights) []*tensors.Tensor {
	data, dims := flatten(w)
	out := make([]*tensors.Tensor, len(data))
	for i := range data {
		out[i] = tensors.FromFlatDataAndDimensions(append([]float32(nil), data[i]...), dims[i]...)
	}
	return out
}

func zerosLike(w netdef.AlignWeights) []*tensors.Tensor {
	data, dims := flatten(w)
	out := make([]*tensors.Tensor, len(data))
	for i := range data {
		out[i] = tensors.FromFlatDataAndDimensions(make([]float32, len(data[i])), dims[i]...)
	}
	return out
}

// weightsFromTensors copies trained tensors back into netdef layout.
func weightsFromTensors(ts []*tensors.Tensor, channels int) (netdef.AlignWeights, error) {
	w := netdef.NewAlignWeights(0, channels) // shapes only; every value is overwritten
	data, _ := flatten(w)
	if len(ts) != len(data) {
		return w, fmt.Errorf("%d weight tensors, want %d", len(ts), len(data))
	}
	for i, t := range ts {
		v, err := tensors.CopyFlatData[float32](t)
		if err != nil {
			return w, fmt.Errorf("weight tensor %d: %w", i, err)
		}
		if len(v) != len(data[i]) {
			return w, fmt.Errorf("weight tensor %d has %d values, want %d", i, len(v), len(data[i]))
		}
		copy(data[i], v)
	}
	return w, w.Validate(channels)
}

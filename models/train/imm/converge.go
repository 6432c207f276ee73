//go:build workstation

package imm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/inspectd/inspectd/models/preprocess"
)

// Convergence check: every checkEvery steps the regressor aligns a fixed
// validation set whose answers are known — copies of the template under
// seeded poses within the configured range. L_reg on that set (aligned
// image against template) decides convergence; the median corner
// displacement against the known poses is reported. When the best L_reg
// has not improved by a tenth for patience checks (after minSteps),
// training settles: the learning rate decays over a last quarter of the
// steps done so far instead of running the full schedule.
const (
	checkEvery       = 50
	patience         = 4
	minStepsToSettle = 300
	validationSize   = predictChunk
)

// validation is the fixed posed set, its known transforms, and the warp
// that aligns it with a prediction.
type validation struct {
	images   [][]float32
	targets  [][3]float64
	model    *Model
	template []float32
	warp     *graph.Exec
	shape    [3]int
}

func newValidation(be compute.Backend, cfg Config, template []float32, seed uint64) (*validation, error) {
	C, H, W := cfg.Channels, cfg.Height, cfg.Width
	n := C * H * W
	r := rand.New(rand.NewPCG(seed, 0x7a11d))
	src := make([]float32, validationSize*n)
	poses := make([]float32, validationSize*3)
	v := &validation{}
	for i := range validationSize {
		copy(src[i*n:(i+1)*n], template)
		p := randomPose(r, cfg.MaxRotationDeg, cfg.MaxShiftFrac)
		poses[3*i], poses[3*i+1], poses[3*i+2] = float32(p[0]), float32(p[1]), float32(p[2])
		v.targets = append(v.targets, InversePose(p[0], p[1], p[2], H, W))
	}
	exec, err := graph.NewExec(be, warpGraph)
	if err != nil {
		return nil, fmt.Errorf("imm validation set: %w", err)
	}
	v.warp, v.template, v.shape = exec, template, [3]int{C, H, W}
	warped, err := exec.Exec(
		tensors.FromFlatDataAndDimensions(src, validationSize, C, H, W),
		tensors.FromFlatDataAndDimensions(poses, validationSize, 3))
	if err != nil {
		return nil, fmt.Errorf("imm validation set: %w", err)
	}
	flat, err := tensors.CopyFlatData[float32](warped[0])
	if err != nil {
		return nil, fmt.Errorf("imm validation set: %w", err)
	}
	for i := range validationSize {
		v.images = append(v.images, append([]float32(nil), flat[i*n:(i+1)*n]...))
	}
	return v, nil
}

// close releases the warp.
func (v *validation) close() { v.warp.Finalize() }

// check aligns the validation set with params and returns the pose error
// (median corner displacement against the known transforms, regressor
// pixels) and L_reg on the set: the mean squared difference between the
// aligned images and the template. Convergence is judged on L_reg — the
// objective itself, blind to symmetries: a round part has no rotation to
// find, and a pose error that cannot fall would stop training before the
// shifts are learnt — and the pose error is what the log shows.
func (v *validation) check(params []*tensors.Tensor) (poseErr, lreg float64, err error) {
	pred, err := v.predict(params)
	if err != nil {
		return 0, 0, err
	}
	C, H, W := v.shape[0], v.shape[1], v.shape[2]
	n := C * H * W
	src := make([]float32, 0, len(v.images)*n)
	poses := make([]float32, 0, len(v.images)*3)
	for i, img := range v.images {
		src = append(src, img...)
		poses = append(poses, float32(pred[i][0]), float32(pred[i][1]), float32(pred[i][2]))
	}
	out, err := v.warp.Exec(tensors.FromFlatDataAndDimensions(src, len(v.images), C, H, W),
		tensors.FromFlatDataAndDimensions(poses, len(v.images), 3))
	if err != nil {
		return 0, 0, fmt.Errorf("imm validation: %w", err)
	}
	flat, err := tensors.CopyFlatData[float32](out[0])
	if err != nil {
		return 0, 0, fmt.Errorf("imm validation: %w", err)
	}
	var sum float64
	for i, x := range flat {
		d := float64(x - v.template[i%n])
		sum += d * d
	}
	return medianCornerError(pred, v.targets, v.model.Width, v.model.Height), sum / float64(len(flat)), nil
}

// predict returns the regressor's transforms of the validation images.
func (v *validation) predict(params []*tensors.Tensor) ([][3]float64, error) {
	m := v.model
	if m.predict == nil { // compile once (with the initial weights)
		if _, err := m.PredictBatch(v.images); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	m.params = params
	m.mu.Unlock()
	return m.PredictBatch(v.images)
}

// medianCornerError is the median over pairs of the mean displacement of
// the four image corners (in pixels of a width×height image) between two
// transforms; the median, because a regressor still far from converged
// fails on the largest poses first and one outlier should not hide the
// progress on the rest.
func medianCornerError(pred, want [][3]float64, width, height int) float64 {
	errs := make([]float64, len(pred))
	for i := range pred {
		var sum float64
		a := preprocess.AffineMatrix(pred[i][0], pred[i][1], pred[i][2], width, height)
		b := preprocess.AffineMatrix(want[i][0], want[i][1], want[i][2], width, height)
		for _, c := range [4][2]float64{{-1, -1}, {1, -1}, {-1, 1}, {1, 1}} {
			dx := (a[0][0]-b[0][0])*c[0] + (a[0][1]-b[0][1])*c[1] + a[0][2] - b[0][2]
			dy := (a[1][0]-b[1][0])*c[0] + (a[1][1]-b[1][1])*c[1] + a[1][2] - b[1][2]
			sum += math.Hypot(dx*float64(width)/2, dy*float64(height)/2) / 4
		}
		errs[i] = sum
	}
	slices.Sort(errs)
	if n := len(errs); n%2 == 0 {
		return (errs[n/2-1] + errs[n/2]) / 2
	}
	return errs[len(errs)/2]
}

// plateau tracks the validation errors and says when training has
// converged.
type plateau struct {
	best      float64
	sinceBest int
}

// add records an error and reports whether the best has not improved by
// 10 % for patience checks.
func (p *plateau) add(e float64) bool {
	if p.best == 0 || e < 0.9*p.best {
		p.best, p.sinceBest = e, 0
		return false
	}
	p.best = math.Min(p.best, e)
	p.sinceBest++
	return p.sinceBest >= patience
}

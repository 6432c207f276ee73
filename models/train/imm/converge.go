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
// seeded poses within the configured range — and the median corner
// displacement is the pose error. When the best error has not improved by
// a tenth for patience checks (after minSteps), training settles: the
// learning rate decays over a last quarter of the steps done so far
// instead of running the full schedule.
const (
	checkEvery       = 50
	patience         = 4
	minStepsToSettle = 300
	validationSize   = predictChunk
)

// validation is the fixed posed set and its known transforms.
type validation struct {
	images  [][]float32
	targets [][3]float64
	model   *Model
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
	defer exec.Finalize()
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

// poseError returns the mean displacement, in regressor pixels, of the
// four image corners between the predicted and the known transforms.
func (v *validation) poseError(params []*tensors.Tensor) (float64, error) {
	m := v.model
	if m.predict == nil { // compile once (with the initial weights)
		if _, err := m.PredictBatch(v.images); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	m.params = params
	m.mu.Unlock()
	pred, err := m.PredictBatch(v.images)
	if err != nil {
		return 0, err
	}
	return medianCornerError(pred, v.targets, m.Width, m.Height), nil
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

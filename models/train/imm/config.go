//go:build workstation

// Package imm trains the image matching module (IMM) of the paper (section
// 2.1, eq. 1–2): the alignment regressor of [netdef.AlignWeights], a shared
// feature net N_P applied to an image and to the template, and a regression
// net N_R that outputs the transform (tx, ty, θ) of [preprocess.AffineMatrix].
//
// Training is unsupervised as in the paper: the predicted transform warps the
// image with a differentiable, Gather-based bilinear sampler (the spatial
// transformer), and the loss is L_reg = mean((I_M − I_T)²). Good images are
// augmented with random rotations and translations. Because the augmentation
// of the template itself has a known answer, an auxiliary supervised term on
// (tx, ty, θ) for template-derived samples speeds up the start of training;
// its weight decays linearly to zero at [Config.AuxSteps], after which the
// paper's loss is the only objective (see [Config.AuxWeight]).
//
// The warp samples with the conventions of the daemon's preprocess.Fill
// given netdef.PixelAffine (pixel centres, bilinear, each neighbour clamped
// into the image, i.e. replicated borders): on the same image and transform
// the two agree to float32 rounding (~2e-6), borders included.
//
// The graph runs on GoMLX's pure-Go backend; convolutions are written as
// im2col (strided slices) + matrix multiplication, several times faster than
// the backend's direct convolution loop. The trained weights use the layouts
// of [netdef.AlignGraph] (conv [Out, In, 3, 3], dense [Out, In]) so they
// export 1:1 to align.onnx.
//
// The package is built only with the "workstation" tag: the edge binary must
// not link GoMLX.
package imm

import (
	"errors"
	"fmt"
)

// Defaults used by [Config.WithDefaults] for zero fields.
const (
	DefaultSize           = 128
	DefaultChannels       = 1
	DefaultSteps          = 2000
	DefaultBatch          = 16
	DefaultLearningRate   = 1e-3
	DefaultMaxRotationDeg = 30
	DefaultMaxShiftFrac   = 0.1
	DefaultAuxWeight      = 1
)

// Config sets up IMM training. Zero fields take the defaults of
// [Config.WithDefaults]; [Train] applies them before validating.
type Config struct {
	// Size is the side of the square regressor input (default 128). Height and
	// Width, when set, override it per axis. All must be multiples of 16.
	Size int
	// Height and Width of the regressor input; 0 means Size.
	Height, Width int
	// Channels is 1 (grey, default) or 3 (RGB planes).
	Channels int
	// Steps is the number of optimisation steps (batches). When Epochs is set
	// instead, Steps = Epochs·⌈(len(images)+1)/Batch⌉ (the template counts as
	// one more good image). Default 2000 when neither is set.
	Steps int
	// Epochs is an alternative to Steps; setting both is an error.
	Epochs int
	// Batch is the number of augmented images per step (default 16).
	Batch int
	// LearningRate of Adam (β1 0.9, β2 0.999, ε 1e-8). The paper uses 2e-4
	// for 500 epochs; the default 1e-3 reaches the same loss in far fewer
	// steps on our synthetic parts (measured; see the package tests). The
	// rate is constant for the first half of the steps, then decays linearly
	// to a tenth at the last step.
	LearningRate float64
	// MaxRotationDeg and MaxShiftFrac bound the random augmentation: rotation
	// uniform in ±MaxRotationDeg degrees, shift uniform in ±MaxShiftFrac of
	// the image width (x) and height (y). Defaults 30 and 0.1; a negative
	// value is an error and NoAugment turns augmentation off.
	MaxRotationDeg, MaxShiftFrac float64
	// NoAugment disables augmentation (the images are used as they are).
	NoAugment bool
	// AuxWeight weights the auxiliary supervised loss on (tx, ty, θ) for
	// augmented copies of the template (default 1; negative disables it).
	// Its weight decays linearly to zero at AuxSteps.
	AuxWeight float64
	// AuxSteps is the step at which the auxiliary weight reaches zero
	// (default: half of the steps).
	AuxSteps int
	// Seed makes training deterministic: same data, config and seed give the
	// same weights.
	Seed uint64
}

// WithDefaults returns c with zero fields replaced by the defaults. Steps is
// left 0 when Epochs is set (Train resolves it from the data size).
func (c Config) WithDefaults() Config {
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Height == 0 {
		c.Height = c.Size
	}
	if c.Width == 0 {
		c.Width = c.Size
	}
	if c.Channels == 0 {
		c.Channels = DefaultChannels
	}
	if c.Steps == 0 && c.Epochs == 0 {
		c.Steps = DefaultSteps
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.LearningRate == 0 {
		c.LearningRate = DefaultLearningRate
	}
	if c.MaxRotationDeg == 0 {
		c.MaxRotationDeg = DefaultMaxRotationDeg
	}
	if c.MaxShiftFrac == 0 {
		c.MaxShiftFrac = DefaultMaxShiftFrac
	}
	if c.AuxWeight == 0 {
		c.AuxWeight = DefaultAuxWeight
	}
	return c
}

// Validate checks a configuration after [Config.WithDefaults]; the error
// names the offending field.
func (c Config) Validate() error {
	var errs []error
	side := func(name string, v int) {
		if v <= 0 || v%16 != 0 {
			errs = append(errs, fmt.Errorf("imm config: %s = %d, want a positive multiple of 16", name, v))
		}
	}
	if c.Size != 0 || (c.Height == 0 || c.Width == 0) {
		side("Size", c.Size)
	}
	side("Height", c.Height)
	side("Width", c.Width)
	if c.Channels != 1 && c.Channels != 3 {
		errs = append(errs, fmt.Errorf("imm config: Channels = %d, want 1 or 3", c.Channels))
	}
	switch {
	case c.Steps != 0 && c.Epochs != 0:
		errs = append(errs, fmt.Errorf("imm config: Steps = %d and Epochs = %d, set only one", c.Steps, c.Epochs))
	case c.Steps < 0:
		errs = append(errs, fmt.Errorf("imm config: Steps = %d, want > 0", c.Steps))
	case c.Epochs < 0:
		errs = append(errs, fmt.Errorf("imm config: Epochs = %d, want > 0", c.Epochs))
	case c.Steps == 0 && c.Epochs == 0:
		errs = append(errs, errors.New("imm config: Steps or Epochs must be > 0"))
	}
	if c.Batch <= 0 {
		errs = append(errs, fmt.Errorf("imm config: Batch = %d, want > 0", c.Batch))
	}
	if !(c.LearningRate > 0 && c.LearningRate < 1) {
		errs = append(errs, fmt.Errorf("imm config: LearningRate = %g, want in (0, 1)", c.LearningRate))
	}
	if !(c.MaxRotationDeg >= 0 && c.MaxRotationDeg <= 180) {
		errs = append(errs, fmt.Errorf("imm config: MaxRotationDeg = %g, want in [0, 180]", c.MaxRotationDeg))
	}
	if !(c.MaxShiftFrac >= 0 && c.MaxShiftFrac <= 0.5) {
		errs = append(errs, fmt.Errorf("imm config: MaxShiftFrac = %g, want in [0, 0.5]", c.MaxShiftFrac))
	}
	if c.AuxSteps < 0 {
		errs = append(errs, fmt.Errorf("imm config: AuxSteps = %d, want ≥ 0", c.AuxSteps))
	}
	return errors.Join(errs...)
}

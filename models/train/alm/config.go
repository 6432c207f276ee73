//go:build workstation

package alm

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
)

// Reductions: the fixed dimensionality reduction of F_Mixed to D channels.
const (
	// ReductionRandomOrthogonal is a random D×448 matrix with orthonormal
	// rows, drawn from Config.Seed.
	ReductionRandomOrthogonal = "random_orthogonal"
	// ReductionPCA projects on the top-D principal directions of F_Mixed
	// (covariance of a random sample of training locations).
	ReductionPCA = "pca"
)

// Centre kinds.
const (
	// CentreLocal is one centre vector per feature-map location (the paper's local OCC).
	CentreLocal = "local"
	// CentreGlobal is one centre vector for every location (the paper's ablation).
	CentreGlobal = "global"
)

// DGM region shapes.
const (
	// ShapeRectangle is a rotated rectangle.
	ShapeRectangle = "rectangle"
	// ShapeEllipse is a rotated ellipse.
	ShapeEllipse = "ellipse"
	// ShapeBlob is an irregular region: thresholded multi-octave value noise
	// (Perlin-like) inside an elliptic envelope.
	ShapeBlob = "blob"
)

// DGM modes: what is done to the pixels of the region.
const (
	// ModeDarken multiplies the region by a random factor in [0.2, 0.7].
	ModeDarken = "darken"
	// ModeLighten moves the region a random fraction in [0.3, 0.8] towards white.
	ModeLighten = "lighten"
	// ModeTexture replaces the region by texture: an image of SourceDir when
	// given, otherwise a procedural texture or a patch of another training image.
	ModeTexture = "texture"
)

// DGMConfig configures the defect generation module (paper section 2.3).
type DGMConfig struct {
	// Enabled switches DGM on (eq. 5); off trains with eq. 3 only.
	Enabled bool
	// Fraction in (0, 1) is the share of sampled locations drawn from
	// augmented images, i.e. the training set behaves as if that fraction of
	// its images carried a synthetic defect.
	Fraction float64
	// PoolSize is the number of augmented images kept (with their features).
	PoolSize int
	// RefreshEpochs regenerates the pool (new defects, features recomputed)
	// every that many epochs.
	RefreshEpochs int
	// Shapes lists the region shapes to draw from (ShapeRectangle, ShapeEllipse, ShapeBlob).
	Shapes []string
	// Modes lists the alterations to draw from (ModeDarken, ModeLighten, ModeTexture).
	Modes []string
	// SoftEdges feathers the region's border (a few pixels of alpha blending)
	// instead of a hard edge.
	SoftEdges bool
	// SourceDir optionally names a folder of PNG/JPEG images used as texture
	// source for ModeTexture (the paper uses VOC). Empty: procedural textures
	// and patches of other training images.
	SourceDir string
	// Delta is δ of eq. 5, the distance beyond which a synthetic-defect
	// location no longer contributes (paper: 0.1).
	Delta float64
	// MinSize, MaxSize bound the region's extent as fractions of the shorter
	// image side, 0 < MinSize ≤ MaxSize ≤ 1.
	MinSize, MaxSize float64
}

// Config configures [Train].
type Config struct {
	// D is the channel count of F_M and F_C (paper: 128 or 256).
	D int
	// MappingLayers is the number of 1×1 convolutions of N_M (≥ 1).
	MappingLayers int
	// Reduction is ReductionRandomOrthogonal or ReductionPCA. The default is
	// ReductionPCA: on MVTec AD bottle (256×256, DGM on, 2 epochs) it gave an
	// image AUROC of 0.9913 against 0.9897 for a random orthogonal
	// projection, and on synthetic plates a better untrained start (0.94 vs
	// 0.91). PCA costs a few seconds for the covariance and its eigen
	// decomposition; random orthogonal costs nothing.
	Reduction string
	// Centre is CentreLocal (default) or CentreGlobal (ablation).
	Centre string
	// Epochs is the number of epochs; one epoch is as many sampled locations
	// as the training set has locations (images × H/4 × W/4).
	Epochs int
	// LearningRate of Adam (paper: 1e-3).
	LearningRate float64
	// LocationsPerStep is the number of random (image, location) pairs per
	// Adam step.
	LocationsPerStep int
	// Seed makes training deterministic (reduction, initialisation,
	// sampling, synthetic defects).
	Seed uint64
	// DGM configures the defect generation module.
	DGM DGMConfig
}

// DefaultConfig returns the recommended configuration: D = 128, two layers,
// PCA reduction, local centres, 4 epochs of 4096-location Adam steps at
// lr 1e-3, and DGM on with δ = 0.1.
//
// Cost on the 2-core workstation (pure-Go GoMLX backend): about 7 000–9 000
// training locations/s at D = 128 with two layers, so one epoch of 200
// images at 256×256 (819 200 locations, 200 steps) takes 90–120 s; with
// feature extraction (≈ 25–170 ms an image, depending on load) and the DGM
// pool, 4 epochs stay within about 10 minutes. On MVTec AD bottle, 2 epochs
// already reach an image AUROC of 0.99.
func DefaultConfig() Config {
	return Config{
		D:                128,
		MappingLayers:    2,
		Reduction:        ReductionPCA,
		Centre:           CentreLocal,
		Epochs:           4,
		LearningRate:     1e-3,
		LocationsPerStep: 4096,
		Seed:             1,
		DGM: DGMConfig{
			Enabled:       true,
			Fraction:      0.5,
			PoolSize:      64,
			RefreshEpochs: 2,
			Shapes:        []string{ShapeRectangle, ShapeEllipse, ShapeBlob},
			Modes:         []string{ModeDarken, ModeLighten, ModeTexture},
			SoftEdges:     true,
			Delta:         0.1,
			MinSize:       0.05,
			MaxSize:       0.25,
		},
	}
}

// Validate reports every invalid field, each error naming it.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("alm config: %s %s", field, fmt.Sprintf(format, args...)))
	}
	if c.D <= 0 {
		bad("D", "= %d, want > 0", c.D)
	}
	if c.MappingLayers <= 0 {
		bad("MappingLayers", "= %d, want ≥ 1", c.MappingLayers)
	}
	if c.Reduction != ReductionRandomOrthogonal && c.Reduction != ReductionPCA {
		bad("Reduction", "= %q, want %q or %q", c.Reduction, ReductionRandomOrthogonal, ReductionPCA)
	}
	if c.Reduction == ReductionRandomOrthogonal && c.D > mixedChannels {
		bad("D", "= %d, a random orthogonal reduction needs D ≤ %d", c.D, mixedChannels)
	}
	if c.Reduction == ReductionPCA && c.D > mixedChannels {
		bad("D", "= %d, PCA needs D ≤ %d", c.D, mixedChannels)
	}
	if c.Centre != CentreLocal && c.Centre != CentreGlobal {
		bad("Centre", "= %q, want %q or %q", c.Centre, CentreLocal, CentreGlobal)
	}
	if c.Epochs < 0 {
		bad("Epochs", "= %d, want ≥ 0", c.Epochs)
	}
	if !(c.LearningRate > 0) || math.IsInf(c.LearningRate, 0) {
		bad("LearningRate", "= %g, want a finite value > 0", c.LearningRate)
	}
	if c.LocationsPerStep <= 0 {
		bad("LocationsPerStep", "= %d, want > 0", c.LocationsPerStep)
	}
	if c.DGM.Enabled {
		d := c.DGM
		if !(d.Fraction > 0 && d.Fraction < 1) {
			bad("DGM.Fraction", "= %g, want 0 < Fraction < 1", d.Fraction)
		}
		if d.PoolSize <= 0 {
			bad("DGM.PoolSize", "= %d, want > 0", d.PoolSize)
		}
		if d.RefreshEpochs <= 0 {
			bad("DGM.RefreshEpochs", "= %d, want > 0", d.RefreshEpochs)
		}
		checkList := func(field string, got, allowed []string) {
			if len(got) == 0 {
				bad(field, "is empty, want some of %q", allowed)
			}
			for _, s := range got {
				if !slices.Contains(allowed, s) {
					bad(field, "has %q, want some of %q", s, allowed)
				}
			}
		}
		checkList("DGM.Shapes", d.Shapes, []string{ShapeRectangle, ShapeEllipse, ShapeBlob})
		checkList("DGM.Modes", d.Modes, []string{ModeDarken, ModeLighten, ModeTexture})
		if !(d.Delta > 0 && d.Delta <= 1) {
			bad("DGM.Delta", "= %g, want 0 < Delta ≤ 1", d.Delta)
		}
		if !(d.MinSize > 0 && d.MinSize <= d.MaxSize && d.MaxSize <= 1) {
			bad("DGM.MinSize/MaxSize", "= %g/%g, want 0 < MinSize ≤ MaxSize ≤ 1", d.MinSize, d.MaxSize)
		}
		if d.SourceDir != "" {
			if st, err := os.Stat(d.SourceDir); err != nil {
				bad("DGM.SourceDir", "unusable: %v", err)
			} else if !st.IsDir() {
				bad("DGM.SourceDir", "%q is not a directory", d.SourceDir)
			}
		}
	}
	return errors.Join(errs...)
}

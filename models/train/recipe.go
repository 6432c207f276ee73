//go:build workstation

package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/train/memory"
	"github.com/inspectd/inspectd/tomlcheck"
)

// RecipeVersion is the training recipe format this package reads.
const RecipeVersion = 1

// Recipe holds every training setting except the data paths. It is a
// strict TOML file (models/train/recipe.example.toml documents each key);
// omitted keys keep DefaultRecipe's values.
type Recipe struct {
	RecipeVersion int `toml:"recipe_version"`
	// Product names what the model inspects; recorded in the bundle.
	Product string `toml:"product"`
	// Seed fixes every random choice: the same data, recipe and seed give
	// the same bundle.
	Seed int64 `toml:"seed"`
	// Threads for inference sessions and training.
	Threads int `toml:"threads"`
	// HoldoutFraction of the good images is kept out of training and used
	// to calibrate the thresholds and verify the exported bundle.
	HoldoutFraction float64 `toml:"holdout_fraction"`

	Input       RecipeInput       `toml:"input"`
	Align       RecipeAlign       `toml:"align"`
	ALM         RecipeALM         `toml:"alm"`
	Memory      RecipeMemory      `toml:"memory"`
	DGM         RecipeDGM         `toml:"dgm"`
	Calibration RecipeCalibration `toml:"calibration"`

	file string
}

// RecipeInput is the model input.
type RecipeInput struct {
	// Shape is "auto" (the input follows the good images' median aspect
	// within the pixel budget Height × Width; see chooseInputShape) or
	// "fixed" (Height × Width as they are). A recipe file that sets height
	// or width without shape gets "fixed".
	Shape string `toml:"shape"`
	// Height and Width of the model input, multiples of 16; with Shape
	// "auto", their product is the pixel budget.
	Height int `toml:"height"`
	Width  int `toml:"width"`
	// Colour is "rgb" or "grey".
	Colour string `toml:"colour"`
	// ROI crops every image before anything else; zero size = whole image.
	ROI RecipeROI `toml:"roi"`
	// MixedSizes is what training does with good images whose size
	// differs from the majority's: "refuse" them, or "stretch" every image
	// to the model input (sets of pre-cropped parts of varying size).
	MixedSizes string `toml:"mixed_sizes"`
}

// RecipeROI is a rectangle in image pixels.
type RecipeROI struct {
	X      int `toml:"x"`
	Y      int `toml:"y"`
	Width  int `toml:"width"`
	Height int `toml:"height"`
}

// RecipeAlign configures the image matching module.
type RecipeAlign struct {
	// Method is "auto" (measure the good images' pose spread against the
	// template and train the image matching module only where parts move,
	// keeping it only when it is clearly better than none), "imm" (always
	// train and keep it) or "none" (fixtured parts: align nothing).
	Method string `toml:"method"`
	// Template is the file name (in the good-image folder) of the
	// template; empty takes the medoid of the training images.
	Template string `toml:"template"`
	// Size is the side of the regressor's square input.
	Size int `toml:"size"`
	// Channels is 1 (grey) or 3 (RGB) for the regressor.
	Channels int `toml:"channels"`
	// Steps of Adam with Batch images each, at LearningRate.
	Steps        int     `toml:"steps"`
	Batch        int     `toml:"batch"`
	LearningRate float64 `toml:"learning_rate"`
	// MaxRotationDeg and MaxShiftFrac bound the random poses used to
	// augment the good images: the poses the line produces.
	MaxRotationDeg float64 `toml:"max_rotation_deg"`
	MaxShiftFrac   float64 `toml:"max_shift_frac"`
	// Refine is "ecc" (refine the regressor's transform against the
	// template, models/ecc), "ecc-search" (the same from several turns of
	// it, the best kept) or "none".
	Refine string `toml:"refine"`
}

// RecipeALM configures the anomaly localisation module.
type RecipeALM struct {
	// Method is "memory" (a small memory of good features per location,
	// configured by [memory]) or "centres" (the paper: the mapping net N_M
	// trained with synthetic defects and one centre per location).
	Method string `toml:"method"`
	// D is the mapped feature width.
	D int `toml:"d"`
	// MappingLayers is the depth of N_M (1×1 convolutions).
	MappingLayers int `toml:"mapping_layers"`
	// Reduction that defines the centres: "random_orthogonal" or "pca".
	Reduction string `toml:"reduction"`
	// Centre is "local" (per location; the paper) or "global" (ablation).
	Centre string `toml:"centre"`
	// Epochs, LearningRate and LocationsPerStep of N_M's training.
	Epochs           int     `toml:"epochs"`
	LearningRate     float64 `toml:"learning_rate"`
	LocationsPerStep int     `toml:"locations_per_step"`
	// BlurSigma of the heatmap's Gaussian, in pixels.
	BlurSigma float64 `toml:"blur_sigma"`
}

// RecipeMemory configures the local memory (alm.method = "memory").
type RecipeMemory struct {
	// Layers are the ResNet-18 stages whose features the memory holds:
	// [1, 2, 3], [2, 3] or [3].
	Layers []int `toml:"layers"`
	// Stride is the input pixels per cell of the grid the features are
	// compared on: 4, 8 or 16.
	Stride int `toml:"stride"`
	// D is the number of PCA directions the features are projected on, or
	// 0 to keep every channel of the layers.
	D int `toml:"d"`
	// Entries is the number of memory entries per location.
	Entries int `toml:"entries"`
	// GlobalEntries is the number of entries every location shares, chosen
	// among the features of all locations (0: none).
	GlobalEntries int `toml:"global_entries"`
	// Radius (grid cells) around a location whose training features are
	// candidates for its entries.
	Radius int `toml:"radius"`
	// Average is "grid" (3×3 averages on the grid) or "each-layer"
	// (each layer averaged at its own resolution, PatchCore's patches).
	Average string `toml:"average"`
	// GlobalPrecision of the global entries: "float32" or "int8" (a
	// quarter of the memory, an integer product).
	GlobalPrecision string `toml:"global_precision"`
}

// RecipeDGM configures the defect generation module (outlier exposure).
type RecipeDGM struct {
	// Enabled switches synthetic defects on (false is the paper's ablation).
	Enabled bool `toml:"enabled"`
	// Fraction of training images that receive a synthetic defect.
	Fraction float64 `toml:"fraction"`
	// PoolSize defective variants, re-drawn every RefreshEpochs epochs.
	PoolSize      int `toml:"pool_size"`
	RefreshEpochs int `toml:"refresh_epochs"`
	// Shapes of the defect regions: "rectangle", "ellipse", "blob".
	Shapes []string `toml:"shapes"`
	// Modes of painting: "darken", "lighten", "texture".
	Modes []string `toml:"modes"`
	// SoftEdges blends the region's border.
	SoftEdges bool `toml:"soft_edges"`
	// SourceDir is an optional folder of images pasted as texture; empty
	// uses procedural textures and patches of other training images.
	SourceDir string `toml:"source_dir"`
	// Delta is the hinge margin δ of eq. 5.
	Delta float64 `toml:"delta"`
}

// RecipeCalibration says how the thresholds are set from held-out good
// images: threshold = min(1, Margin × the Quantile of their scores).
type RecipeCalibration struct {
	// ImageQuantile of held-out image scores (1 = the maximum).
	ImageQuantile float64 `toml:"image_quantile"`
	// ImageMargin multiplies that quantile.
	ImageMargin float64 `toml:"image_margin"`
	// PixelQuantile of held-out heatmap values for defect regions.
	PixelQuantile float64 `toml:"pixel_quantile"`
	// PixelMargin multiplies that quantile.
	PixelMargin float64 `toml:"pixel_margin"`
	// Folds (local memory only): every training image is also scored by a
	// memory built without its fold, adding its score to the held-out ones;
	// 0 or 1 turns this off.
	Folds int `toml:"folds"`
}

// DefaultRecipe returns the defaults: the only place they are defined.
func DefaultRecipe() Recipe {
	return Recipe{
		RecipeVersion:   RecipeVersion,
		Product:         "part",
		Seed:            1,
		Threads:         2,
		HoldoutFraction: 0.1,
		Input:           RecipeInput{Shape: ShapeAuto, Height: 256, Width: 256, Colour: "rgb", MixedSizes: "refuse"},
		Align: RecipeAlign{Method: "auto", Size: 128, Channels: 1, Steps: 800, Batch: 16, LearningRate: 1e-3,
			MaxRotationDeg: 30, MaxShiftFrac: 0.1, Refine: bundle.RefineSearch},
		ALM: RecipeALM{Method: "memory", D: 256, MappingLayers: 1, Reduction: "pca", Centre: "local",
			Epochs: 2, LearningRate: 1e-3, LocationsPerStep: 4096, BlurSigma: 4},
		Memory: RecipeMemory{Layers: []int{2, 3}, Stride: 8, D: 0, Entries: 0, GlobalEntries: netdef.DefaultSharedEntries, Radius: 2, Average: bundle.AverageEachLayer, GlobalPrecision: bundle.PrecisionInt8},
		DGM: RecipeDGM{Enabled: true, Fraction: 0.5, PoolSize: 64, RefreshEpochs: 5,
			Shapes: []string{"rectangle", "ellipse", "blob"}, Modes: []string{"darken", "lighten", "texture"},
			SoftEdges: true, Delta: 0.1},
		Calibration: RecipeCalibration{ImageQuantile: 0.98, ImageMargin: 1, PixelQuantile: 0.999, PixelMargin: 1.1, Folds: 5},
	}
}

// LoadRecipe reads a recipe file; "" returns the defaults.
func LoadRecipe(path string) (*Recipe, error) {
	if path == "" {
		r := DefaultRecipe()
		return &r, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read recipe: %w", err)
	}
	return ParseRecipe(path, data)
}

// ParseRecipe decodes and validates recipe text, reporting every problem
// with its key and line (see config.DecodeStrict).
func ParseRecipe(name string, data []byte) (*Recipe, error) {
	r := DefaultRecipe()
	r.RecipeVersion = 0
	c, md, err := config.DecodeStrict(name, data, &r, "models/train/recipe.example.toml")
	if err != nil {
		return nil, err
	}
	if !md.IsDefined("recipe_version") {
		c.ProblemAt("recipe_version", fmt.Sprintf("required but missing; add `recipe_version = %d` at the top", RecipeVersion))
	} else if r.RecipeVersion != RecipeVersion {
		c.Errorf("recipe_version", "version %d is not supported; this inspectd reads recipe_version %d", r.RecipeVersion, RecipeVersion)
	}
	r.file = name
	r.Input.keepStatedSize(md)
	if r.DGM.SourceDir != "" && !filepath.IsAbs(r.DGM.SourceDir) {
		r.DGM.SourceDir = filepath.Join(filepath.Dir(name), r.DGM.SourceDir)
	}
	r.validate(c)
	if err := c.Err(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks a recipe built in code as ParseRecipe checks a file
// (without line numbers). Run calls it before any work.
func (r *Recipe) Validate() error {
	name := r.file
	if name == "" {
		name = "recipe"
	}
	c := tomlcheck.NewChecker(name, nil)
	r.validate(c)
	return c.Err()
}

// openRange checks lo < val < hi for keys whose bounds the trainer
// excludes; NaN and ±Inf fail.
func openRange(c *config.Checker, name string, val, lo, hi float64, hint string) {
	if !(val > lo && val < hi) {
		c.Errorf(name, "%s is out of range; allowed above %s and below %s%s", fmtG(val), fmtG(lo), fmtG(hi), hint)
	}
}

func fmtG(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// validate checks every value the trainer requires, so that a recipe that
// passes never fails (or trains silently wrong) after hours of work. The
// trainers' own checks (alm.Config.Validate, imm.Config.Validate) must
// accept every recipe that passes here; TestRecipeBoundsMatchTrainers
// keeps the two in step.
func (r *Recipe) validate(c *config.Checker) {
	c.Required("product", r.Product, "name the product, e.g. \"bottle\"")
	c.IntRange("threads", r.Threads, 1, 256, "")
	c.FloatRange("holdout_fraction", r.HoldoutFraction, 0.02, 0.5, "")

	in := c.In("input")
	for _, d := range []struct {
		key string
		v   int
	}{{"height", r.Input.Height}, {"width", r.Input.Width}} {
		if d.v < 32 || d.v > 2048 || d.v%16 != 0 {
			in.Errorf(d.key, "%d: want a multiple of 16 from 32 to 2048", d.v)
		}
	}
	in.OneOf("shape", r.Input.Shape, ShapeAuto, ShapeFixed)
	in.OneOf("colour", r.Input.Colour, "rgb", "grey")
	in.OneOf("mixed_sizes", r.Input.MixedSizes, "refuse", "stretch")
	roi := in.In("roi")
	roi.IntRange("x", r.Input.ROI.X, 0, 1<<15, "pixels")
	roi.IntRange("y", r.Input.ROI.Y, 0, 1<<15, "pixels")
	roi.IntRange("width", r.Input.ROI.Width, 0, 1<<15, "pixels (0 = whole image)")
	roi.IntRange("height", r.Input.ROI.Height, 0, 1<<15, "pixels (0 = whole image)")
	if (r.Input.ROI.Width == 0) != (r.Input.ROI.Height == 0) {
		roi.Errorf("width", "width %d and height %d must both be 0 (whole image) or both be set", r.Input.ROI.Width, r.Input.ROI.Height)
	}

	al := c.In("align")
	al.OneOf("method", r.Align.Method, "auto", "imm", "none")
	if r.Align.Size < 32 || r.Align.Size > 512 || r.Align.Size%16 != 0 {
		al.Errorf("size", "%d: want a multiple of 16 from 32 to 512", r.Align.Size)
	}
	if r.Align.Channels != 1 && r.Align.Channels != 3 {
		al.Errorf("channels", "%d: want 1 (grey) or 3 (RGB)", r.Align.Channels)
	}
	al.IntRange("steps", r.Align.Steps, 1, 1_000_000, "")
	al.IntRange("batch", r.Align.Batch, 1, 1024, "images")
	al.FloatRange("learning_rate", r.Align.LearningRate, 1e-6, 1, "")
	if r.Align.LearningRate == 1 {
		al.Errorf("learning_rate", "1 is out of range; allowed 1e-06 to below 1")
	}
	al.FloatRange("max_rotation_deg", r.Align.MaxRotationDeg, 0, 180, "degrees")
	al.FloatRange("max_shift_frac", r.Align.MaxShiftFrac, 0, 0.5, "of the image size")
	al.OneOf("refine", r.Align.Refine, bundle.RefineECC, bundle.RefineSearch, bundle.RefineNone)

	alm := c.In("alm")
	alm.OneOf("method", r.ALM.Method, "memory", "centres")
	alm.IntRange("d", r.ALM.D, 8, 448, "channels")
	alm.IntRange("mapping_layers", r.ALM.MappingLayers, 1, 8, "")
	alm.OneOf("reduction", r.ALM.Reduction, "random_orthogonal", "pca")
	alm.OneOf("centre", r.ALM.Centre, "local", "global")
	alm.IntRange("epochs", r.ALM.Epochs, 1, 100_000, "")
	alm.FloatRange("learning_rate", r.ALM.LearningRate, 1e-6, 1, "")
	alm.IntRange("locations_per_step", r.ALM.LocationsPerStep, 64, 1<<20, "")
	alm.FloatRange("blur_sigma", r.ALM.BlurSigma, 0.5, 16, "pixels")
	if rad := int(math.Ceil(3 * r.ALM.BlurSigma)); r.ALM.BlurSigma >= 0.5 && r.ALM.BlurSigma <= 16 &&
		(rad >= r.Input.Height || rad >= r.Input.Width) {
		alm.Errorf("blur_sigma", "%s: the blur radius ⌈3σ⌉ = %d px must be smaller than the input (%d×%d); lower blur_sigma or enlarge input.height/width",
			fmtG(r.ALM.BlurSigma), rad, r.Input.Width, r.Input.Height)
	}

	mem := c.In("memory")
	channels, err := netdef.MemoryChannels(r.Memory.Layers)
	if err != nil || len(r.Memory.Layers) == 0 {
		mem.Errorf("layers", "%v: want [1, 2, 3], [2, 3] or [3] (the ResNet-18 stages from the first to layer3)", r.Memory.Layers)
		channels = netdef.MixedChannels
	}
	if r.Memory.D != 0 {
		mem.IntRange("d", r.Memory.D, 8, channels, fmt.Sprintf("PCA directions (or 0: all %d channels of layers %v)", channels, r.Memory.Layers))
	}
	if !slices.Contains(netdef.MemoryStrides, r.Memory.Stride) {
		mem.Errorf("stride", "%d: want 4, 8 or 16 input pixels per cell", r.Memory.Stride)
	}
	mem.IntRange("entries", r.Memory.Entries, 0, 1024, "per location")
	mem.IntRange("global_entries", r.Memory.GlobalEntries, 0, memory.MaxGlobal, "shared by every location")
	if r.Memory.Entries == 0 && r.Memory.GlobalEntries == 0 {
		mem.Errorf("entries", "0 with global_entries = 0: the memory would hold nothing; set entries or global_entries above 0")
	}
	mem.OneOf("average", r.Memory.Average, bundle.AverageGrid, bundle.AverageEachLayer)
	mem.OneOf("global_precision", r.Memory.GlobalPrecision, bundle.PrecisionFloat32, bundle.PrecisionInt8)

	mem.IntRange("radius", r.Memory.Radius, 0, 16, "grid cells")
	// One ONNX file holds the whole memory; protobuf caps a file at 2 GiB.
	d := r.Memory.D
	if d == 0 {
		d = channels
	}
	gh, gw := netdef.MemorySpec{Height: r.Input.Height, Width: r.Input.Width, Layers: r.Memory.Layers, Stride: r.Memory.Stride}.Grid()
	if err == nil && len(r.Memory.Layers) > 0 && slices.Contains(netdef.MemoryStrides, r.Memory.Stride) && r.ALM.Method == "memory" {
		globalBytes := int64(4)
		if r.Memory.GlobalPrecision == bundle.PrecisionInt8 {
			globalBytes = 1
		}
		if bytes := (int64(gh)*int64(gw)*int64(r.Memory.Entries)*4 + int64(r.Memory.GlobalEntries)*globalBytes) * int64(d); bytes > 1<<30 {
			mem.Errorf("entries", "%d entries of %d values at %d×%d locations (and %d global ones) need %d MiB; the limit is 1024 MiB: lower memory.entries, memory.d or the input size",
				r.Memory.Entries, d, gw, gh, r.Memory.GlobalEntries, bytes>>20)
		}
	}

	dgm := c.In("dgm")
	if r.DGM.Enabled {
		openRange(dgm, "fraction", r.DGM.Fraction, 0, 1, " while dgm.enabled = true (set dgm.enabled = false to train without synthetic defects)")
	} else {
		dgm.FloatRange("fraction", r.DGM.Fraction, 0, 1, "")
	}
	dgm.IntRange("pool_size", r.DGM.PoolSize, 1, 100_000, "images")
	dgm.IntRange("refresh_epochs", r.DGM.RefreshEpochs, 1, 100_000, "epochs")
	for _, s := range r.DGM.Shapes {
		dgm.OneOf("shapes", s, "rectangle", "ellipse", "blob")
	}
	for _, m := range r.DGM.Modes {
		dgm.OneOf("modes", m, "darken", "lighten", "texture")
	}
	if r.DGM.Enabled && (len(r.DGM.Shapes) == 0 || len(r.DGM.Modes) == 0) {
		dgm.Errorf("shapes", "shapes and modes must not be empty while dgm.enabled = true")
	}
	if r.DGM.SourceDir != "" {
		dgm.ExistingDir("source_dir", r.DGM.SourceDir)
	}
	dgm.FloatRange("delta", r.DGM.Delta, 0.001, 1, "")

	cal := c.In("calibration")
	cal.FloatRange("image_quantile", r.Calibration.ImageQuantile, 0.5, 1, "")
	cal.FloatRange("image_margin", r.Calibration.ImageMargin, 1, 10, "")
	cal.FloatRange("pixel_quantile", r.Calibration.PixelQuantile, 0.5, 1, "")
	cal.FloatRange("pixel_margin", r.Calibration.PixelMargin, 1, 10, "")
	cal.IntRange("folds", r.Calibration.Folds, 0, 20, "(0 or 1: held-out images only)")
}

// Package bundle defines the model bundle: the directory that training
// writes and the daemon loads. It holds manifest.toml, the ONNX graphs
// (align.onnx, localize.onnx) and the alignment template image.
//
// Load verifies everything before a bundle is used: the manifest's format
// version and values, the SHA-256 of every file, and the input and output
// shapes of each graph against the manifest. A bundle that is truncated,
// tampered with or of the wrong shape is refused with an error naming the
// file and what is wrong. Write creates a bundle atomically: it is written
// to a temporary sibling directory and renamed into place.
package bundle

import (
	"time"
)

// FormatVersion is the manifest format this package reads and writes.
const FormatVersion = 1

// ManifestName is the manifest's file name inside a bundle.
const ManifestName = "manifest.toml"

// Standard file names inside a bundle.
const (
	AlignGraphName    = "align.onnx"
	LocalizeGraphName = "localize.onnx"
	TemplateName      = "template.png"
)

// Graph input and output names, shared with models/netdef.
const (
	InputImage      = "image"
	InputTemplate   = "template"
	OutputHeatmap   = "heatmap"
	OutputScore     = "score"
	OutputTransform = "transform"
)

// Alignment methods.
const (
	AlignNone = "none" // parts are fixtured; frames are only resized
	AlignIMM  = "imm"  // the learned image matching module (align.onnx)
	AlignECC  = "ecc"  // classical ECC registration against the template
)

// Manifest describes a bundle. Its TOML form is manifest.toml.
type Manifest struct {
	// FormatVersion must equal FormatVersion.
	FormatVersion int `toml:"format_version"`
	// Product names what the model inspects, e.g. "bottle".
	Product string `toml:"product"`
	// Created is when training finished.
	Created time.Time `toml:"created"`
	// CreatedBy names the program and version that wrote the bundle.
	CreatedBy string `toml:"created_by"`

	Input       Input       `toml:"input"`
	Align       Align       `toml:"align"`
	Localize    Localize    `toml:"localize"`
	Backbone    Backbone    `toml:"backbone"`
	Calibration Calibration `toml:"calibration"`
	Training    Training    `toml:"training"`

	// Files maps every file of the bundle (except the manifest) to its
	// lower-case hex SHA-256.
	Files map[string]string `toml:"files"`
}

// Input describes the model input: the region of interest is resized to
// Height×Width. The localisation graph receives RGB values in [0,1] and
// applies the normalisation (Mean, Std) itself; they are recorded so that
// other runtimes can reproduce it.
type Input struct {
	Height int `toml:"height"`
	Width  int `toml:"width"`
	// ColourOrder of the training images: "rgb" or "grey" (grey images are
	// replicated to three channels for the backbone).
	ColourOrder string    `toml:"colour_order"`
	Mean        []float64 `toml:"mean"`
	Std         []float64 `toml:"std"`
}

// Align describes the alignment stage.
type Align struct {
	// Method is AlignNone, AlignIMM or AlignECC.
	Method string `toml:"method"`
	// Graph is the IMM regressor (AlignIMM only).
	Graph string `toml:"graph"`
	// Template is the template image at Height×Width (AlignIMM, AlignECC).
	Template string `toml:"template"`
	// Height, Width and Channels of the regressor's inputs (1 grey, 3 RGB).
	Height   int `toml:"height"`
	Width    int `toml:"width"`
	Channels int `toml:"channels"`
	// TemplateSeed is the seed that chose the template among the good
	// images, or -1 when it was chosen explicitly.
	TemplateSeed int64 `toml:"template_seed"`
	// TemplateSource is the training image the template came from.
	TemplateSource string `toml:"template_source"`
}

// Localize describes the anomaly localisation graph.
type Localize struct {
	Graph string `toml:"graph"`
	// D is the channel count of the mapped features and centres.
	D int `toml:"d"`
	// Reduction is how the centres were reduced to D channels, e.g.
	// "random_orthogonal" or "pca".
	Reduction string `toml:"reduction"`
	// Centre is "local" (one centre per location) or "global".
	Centre string `toml:"centre"`
	// BlurSigma of the Gaussian applied to the heatmap, in pixels.
	BlurSigma float64 `toml:"blur_sigma"`
}

// Backbone identifies the frozen feature extractor baked into localize.onnx.
type Backbone struct {
	Name        string `toml:"name"`
	Fingerprint string `toml:"fingerprint"`
	Source      string `toml:"source"`
}

// Calibration holds the thresholds set from held-out good images (and,
// when given, labelled defects), with the statistics they came from.
type Calibration struct {
	// ImageThreshold on the image score (max of the heatmap), in (0,1].
	ImageThreshold float64 `toml:"image_threshold"`
	// PixelThreshold on heatmap values for defect regions, in (0,1].
	PixelThreshold float64 `toml:"pixel_threshold"`
	// Rule says how the thresholds were derived.
	Rule string `toml:"rule"`
	// GoodScores summarises the held-out good image scores.
	GoodScores ScoreStats `toml:"good_scores"`
	// F1OptimalThreshold is set when labelled defects were given (0 if not).
	F1OptimalThreshold float64 `toml:"f1_optimal_threshold"`
}

// ScoreStats summarises a score distribution.
type ScoreStats struct {
	Count int     `toml:"count"`
	Min   float64 `toml:"min"`
	Max   float64 `toml:"max"`
	Mean  float64 `toml:"mean"`
	Std   float64 `toml:"std"`
	P99   float64 `toml:"p99"`
}

// Training summarises the data and settings training used.
type Training struct {
	GoodImages    int    `toml:"good_images"`
	HoldoutImages int    `toml:"holdout_images"`
	Seed          int64  `toml:"seed"`
	RecipeSHA256  string `toml:"recipe_sha256"`
	Notes         string `toml:"notes"`
}

// ImageNetMean returns the per-channel RGB mean of ImageNet normalisation,
// used by the ResNet-18 backbone.
func ImageNetMean() []float64 { return []float64{0.485, 0.456, 0.406} }

// ImageNetStd returns the per-channel RGB standard deviation of ImageNet
// normalisation.
func ImageNetStd() []float64 { return []float64{0.229, 0.224, 0.225} }

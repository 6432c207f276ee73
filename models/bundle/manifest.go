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
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/inspectd/inspectd/tomlcheck"
)

// FormatVersion is the manifest format this package reads and writes.
const FormatVersion = 1

// ManifestName is the manifest's file name inside a bundle.
const ManifestName = "manifest.toml"

// Standard file names inside a bundle.
const (
	AlignGraphName    = "align.onnx"
	LocalizeGraphName = "localize.onnx"
	// LocalizeCentres and LocalizeMemory are the values of localize.method.
	LocalizeCentres = "centres"
	LocalizeMemory  = "memory"
	TemplateName    = "template.png"
)

// Values of localize.average and localize.global_precision (and of the
// recipe's memory.average and memory.global_precision).
const (
	// AverageGrid averages the memory's features over 3×3 cells of the grid.
	AverageGrid = "grid"
	// AverageEachLayer averages each layer over 3×3 of its own cells
	// before resizing to the grid, as PatchCore's patches are built.
	AverageEachLayer = "each-layer"
	// PrecisionFloat32 keeps the global entries in float32.
	PrecisionFloat32 = "float32"
	// PrecisionInt8 keeps them in int8 and compares uint8 features.
	PrecisionInt8 = "int8"
)

// MaxGlobalEntries is the most shared (global) entries a memory may hold.
const MaxGlobalEntries = 16384

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

// Refinements of an IMM alignment (Align.Refine).
const (
	RefineNone = "none" // the regressor's transform as it is (also what "" means)
	RefineECC  = "ecc"  // a few ECC steps from it against the template (models/ecc)
	// RefineSearch also starts from turns of it up to ±45° and refines the
	// best (ecc.Refiner.Search): for regressors that miss by a wide turn.
	RefineSearch = "ecc-search"
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
	// images, or -1 when it was chosen explicitly or as their medoid (the
	// most typical image; inspectd since the local memory).
	TemplateSeed int64 `toml:"template_seed"`
	// TemplateSource is the training image the template came from.
	TemplateSource string `toml:"template_source"`
	// Refine is RefineECC or RefineSearch when the regressor's transform
	// is refined against the template, else RefineNone or empty
	// (bundles before it). Training aligned the good images the same way,
	// so the memory matches what the daemon computes.
	Refine string `toml:"refine,omitempty"`
}

// Localize describes the anomaly localisation graph.
type Localize struct {
	Graph string `toml:"graph"`
	// Method is LocalizeCentres (the paper's mapping net and one centre per
	// location; also what an empty value means, as bundles before the
	// local memory were written) or LocalizeMemory.
	Method string `toml:"method,omitempty"`
	// Entries (memory entries per location) and Radius (cells around a
	// location its entries were chosen from) describe a LocalizeMemory graph.
	Entries int `toml:"entries,omitempty"`
	Radius  int `toml:"radius,omitempty"`
	// GlobalEntries of a LocalizeMemory graph are shared by every location
	// (0, as bundles before them were written: none).
	GlobalEntries int `toml:"global_entries,omitempty"`
	// Layers are the ResNet-18 stages a LocalizeMemory graph compares:
	// [1 2 3] (also what an empty value means), [2 3] or [3]; the grid is
	// that of the first (1/4, 1/8 or 1/16 of the input).
	Layers []int `toml:"layers,omitempty"`
	// Stride is the input pixels per cell of a LocalizeMemory graph's
	// grid: 4, 8 or 16; 0 (as bundles before it were written) means the
	// first layer's own.
	Stride int `toml:"stride,omitempty"`
	// Average is how a LocalizeMemory graph's features are averaged over
	// 3×3 cells: AverageGrid (also what an empty value means) once on
	// the grid, AverageEachLayer each layer at its own resolution.
	Average string `toml:"average,omitempty"`
	// GlobalPrecision of a LocalizeMemory graph's global entries:
	// PrecisionFloat32 (also what an empty value means) or PrecisionInt8.
	GlobalPrecision string `toml:"global_precision,omitempty"`
	// D is the channel count of the mapped features and centres (or of the
	// projected features and memory entries).
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
	// PixelMinDefectArea is the decision.min_defect_area, in frame pixels,
	// the pixel threshold was calibrated for: the daemon's decision (NG by
	// score, or by a defect region of at least this area above the pixel
	// threshold) was applied to the calibration good images with it. A
	// larger min_defect_area only rejects fewer parts; a smaller one may
	// reject more than GoodRejects says. 0 in bundles trained before it
	// was recorded.
	PixelMinDefectArea int `toml:"pixel_min_defect_area"`
	// GoodRejects is the number of calibration good images (of
	// GoodScores.Count) that decision rejects at these thresholds, and
	// GoodRejectsByRegion those of them rejected by a region alone (their
	// score at or under the image threshold).
	GoodRejects         int `toml:"good_rejects"`
	GoodRejectsByRegion int `toml:"good_rejects_by_region"`
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

// manifestError is a manifest that does not decode or whose values are
// wrong: a *tomlcheck.SyntaxError or tomlcheck.Problems, each problem
// rendered as "manifest.toml:line: key: message".
type manifestError struct{ err error }

func (e *manifestError) Error() string {
	var ps tomlcheck.Problems
	if errors.As(e.err, &ps) {
		lines := make([]string, len(ps))
		for i, p := range ps {
			lines[i] = p.String()
		}
		return "model bundle: " + strings.Join(lines, "; ")
	}
	return "model bundle: " + e.err.Error()
}

func (e *manifestError) Unwrap() error        { return e.err }
func (e *manifestError) Is(target error) bool { return target == ErrInvalid }

// parseManifest decodes manifest.toml strictly and checks its values,
// reporting every problem with its key and line.
func parseManifest(path string, raw []byte) (*Manifest, error) {
	var m Manifest
	c, md, err := tomlcheck.Decode(path, raw, &m, "models/bundle/manifest.go (or the bundle was written by a newer inspectd)")
	if err != nil {
		return nil, &manifestError{err}
	}
	if len(md.Undecoded()) > 0 {
		// An unknown key means a newer format: its values are not checked.
		return nil, &manifestError{c.Err()}
	}
	if !md.IsDefined("format_version") {
		c.Errorf("format_version", "missing; every manifest starts with format_version = %d (is this a manifest written by `inspectd train`?)", FormatVersion)
		return nil, &manifestError{c.Err()}
	}
	if m.FormatVersion != FormatVersion {
		c.Errorf("format_version", "format_version %d is not supported; this inspectd reads format_version %d", m.FormatVersion, FormatVersion)
		return nil, &manifestError{c.Err()}
	}
	m.check(c)
	if err := c.Err(); err != nil {
		return nil, &manifestError{err}
	}
	return &m, nil
}

// check reports every wrong value of m to c.
func (m *Manifest) check(c *tomlcheck.Checker) {
	c.Required("product", m.Product, "name the product the model inspects")
	in := c.In("input")
	if m.Input.Height < 16 || m.Input.Height%16 != 0 || m.Input.Width < 16 || m.Input.Width%16 != 0 {
		in.Errorf("height", "height %d and width %d must be positive multiples of 16", m.Input.Height, m.Input.Width)
	}
	in.OneOf("colour_order", m.Input.ColourOrder, "rgb", "grey")
	if len(m.Input.Mean) != 3 || len(m.Input.Std) != 3 {
		in.Errorf("mean", "input.mean and input.std need 3 values each, got %d and %d", len(m.Input.Mean), len(m.Input.Std))
	}
	for _, s := range m.Input.Std {
		if !(s > 0) || math.IsInf(s, 0) {
			in.Errorf("std", "%v must be positive and finite", s)
		}
	}
	al := c.In("align")
	switch m.Align.Method {
	case AlignNone:
		if m.Align.Graph != "" {
			al.Errorf("graph", "set, but align.method is %q", AlignNone)
		}
		if m.Align.Refine != "" && m.Align.Refine != RefineNone {
			al.Errorf("refine", "%q, but align.method is %q (nothing to refine)", m.Align.Refine, AlignNone)
		}
	case AlignECC:
		al.Errorf("method", "%q is not implemented by this inspectd yet; use a bundle trained with align %q or %q", AlignECC, AlignIMM, AlignNone)
	case AlignIMM:
		if m.Align.Graph == "" {
			al.Errorf("graph", "required for align.method %q", AlignIMM)
		}
		if m.Align.Template == "" {
			al.Errorf("template", "required for align.method %q", m.Align.Method)
		}
		if m.Align.Height < 16 || m.Align.Height%16 != 0 || m.Align.Width < 16 || m.Align.Width%16 != 0 {
			al.Errorf("height", "height %d and width %d must be positive multiples of 16", m.Align.Height, m.Align.Width)
		}
		if m.Align.Channels != 1 && m.Align.Channels != 3 {
			al.Errorf("channels", "%d, want 1 (grey) or 3 (RGB)", m.Align.Channels)
		}
		switch m.Align.Refine {
		case "", RefineNone:
		case RefineECC, RefineSearch:
		default:
			al.Errorf("refine", "%q, want %q, %q or %q", m.Align.Refine, RefineNone, RefineECC, RefineSearch)
		}
	default:
		al.Errorf("method", "%q, want %q, %q or %q", m.Align.Method, AlignNone, AlignIMM, AlignECC)
	}
	loc := c.In("localize")
	if m.Localize.Graph == "" {
		loc.Errorf("graph", "required")
	}
	loc.IntRange("d", m.Localize.D, 1, 4096, "channels")
	switch m.Localize.Method {
	case "", LocalizeCentres:
		loc.OneOf("centre", m.Localize.Centre, "local", "global")
	case LocalizeMemory:
		loc.IntRange("entries", m.Localize.Entries, 0, 4096, "per location")
		loc.IntRange("radius", m.Localize.Radius, 0, 64, "cells")
		loc.IntRange("global_entries", m.Localize.GlobalEntries, 0, MaxGlobalEntries, "shared by every location")
		if m.Localize.Entries == 0 && m.Localize.GlobalEntries == 0 {
			loc.Errorf("entries", "0 and no global_entries either, want entries of either kind")
		}
		switch m.Localize.Average {
		case "", AverageGrid, AverageEachLayer:
		default:
			loc.Errorf("average", "%q, want %q or %q", m.Localize.Average, AverageGrid, AverageEachLayer)
		}
		switch m.Localize.GlobalPrecision {
		case "", PrecisionFloat32, PrecisionInt8:
		default:
			loc.Errorf("global_precision", "%q, want %q or %q", m.Localize.GlobalPrecision, PrecisionFloat32, PrecisionInt8)
		}
		if l := fmt.Sprint(m.Localize.Layers); len(m.Localize.Layers) > 0 && l != "[1 2 3]" && l != "[2 3]" && l != "[3]" {
			loc.Errorf("layers", "%v, want [1, 2, 3], [2, 3] or [3]", m.Localize.Layers)
		}
		if st := m.Localize.Stride; st != 0 && st != 4 && st != 8 && st != 16 {
			loc.Errorf("stride", "%d, want 4, 8 or 16 input pixels per cell", st)
		}
	default:
		loc.Errorf("method", "%q, want %q or %q", m.Localize.Method, LocalizeCentres, LocalizeMemory)
	}
	if s := m.Localize.BlurSigma; s != 0 {
		loc.FloatRange("blur_sigma", s, 0.1, 32, "pixels (or 0 for the default, 4)")
	}
	if m.Backbone.Fingerprint == "" {
		c.In("backbone").Errorf("fingerprint", "required (identifies the frozen feature extractor)")
	}
	cal := c.In("calibration")
	for _, t := range []struct {
		key string
		v   float64
	}{{"image_threshold", m.Calibration.ImageThreshold}, {"pixel_threshold", m.Calibration.PixelThreshold}} {
		if !(t.v > 0 && t.v <= 1) {
			cal.Errorf(t.key, "%v, want a value in (0, 1]", t.v)
		}
	}
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !plainName(name) {
			c.Errorf("files", "%q is not a plain file name inside the bundle", name)
		}
		if sum := m.Files[name]; len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			c.Errorf("files", "%q: %q is not a lower-case hex SHA-256", name, sum)
		}
	}
	for _, ref := range []struct{ key, name string }{
		{"localize.graph", m.Localize.Graph}, {"align.graph", m.Align.Graph}, {"align.template", m.Align.Template},
	} {
		if _, ok := m.Files[ref.name]; ref.name != "" && !ok {
			c.ProblemAt(ref.key, fmt.Sprintf("%q has no checksum in [files]", ref.name))
		}
	}
}

// GridStride is the input pixels per cell of the localisation graph's
// feature grid: Stride, or the first layer's when unset (4 for layer1,
// and for the centre method, which compares F_Mixed at 1/4).
func (l Localize) GridStride() int {
	if l.Stride > 0 {
		return l.Stride
	}
	if l.Method == LocalizeMemory && len(l.Layers) > 0 {
		return 4 << (l.Layers[0] - 1)
	}
	return 4
}

// OutsideMargin is how far, in model input pixels, the heatmap is
// suppressed around pixels the alignment pulled from outside the frame's
// ROI (preprocess.SuppressOutside): the replicated border reaches a cell's
// 3×3 feature average (1.5 cells) and then the blur (2σ).
func (l Localize) OutsideMargin() int {
	sigma := l.BlurSigma
	if !(sigma > 0) {
		sigma = 4
	}
	return int(math.Ceil(1.5*float64(l.GridStride()) + 2*sigma))
}

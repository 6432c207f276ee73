//go:build workstation

package train

import (
	"fmt"
	"image"
	"math"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/ecc"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Rules of align.method = "auto": whether the good parts move enough for
// the image matching module to be worth training, and whether the trained
// module is worth keeping.
const (
	// FixturedCells is the largest pose spread, in cells of the memory's
	// grid (memory.stride model-input pixels: 8 at 256²), at which the
	// parts count as fixtured. A part that lies within one cell of the
	// template's pose (8 px, or 2.5° at a 256² input's corners) presents
	// the features of the same 3×3-cell patches wherever it lies; the
	// memory's nearest-entry score already absorbs that, and a learned
	// alignment can only add its own error (bottle: 25.2 px on the
	// validation poses against 26.2 px for no alignment at all).
	FixturedCells = 1.0
	// FixturedQuantile is the share of the good images whose spread must
	// lie within FixturedCells: the 90th percentile, so that one image the
	// correlation mismeasures (a nearly symmetric part settling on a wrong
	// turn) does not cost minutes of training, while a set in which more
	// than one part in ten moves still trains the module.
	FixturedQuantile = 0.9
	// MinPoseCorrelation is the least correlation with the template, at the
	// pose measured, of an image whose pose counts: a part that matches the
	// template reaches it at its own pose (median 0.99 on bottle and its
	// moved copy, 0.91 and 0.88 on metal_plate and its moved copy), a
	// texture does not at any pose (magnetic tiles: median 0.57, 90th
	// percentile 0.69 — one tile's pores do not lie where another's do).
	MinPoseCorrelation = 0.8
	// MinMeasuredShare is the share of the good images whose pose must
	// count (MinPoseCorrelation) for the spread to mean anything.
	MinMeasuredShare = 0.5
	// KeepIMMRatio: align.method = "auto" keeps a trained module only when
	// its pose error on the validation poses is below this fraction of the
	// untrained (identity) module's — clearly better than no alignment,
	// not a module that learned nothing and resamples every part.
	KeepIMMRatio = 0.5
	// coverageShare: the good images cover the configured pose range when
	// their measured poses reach at least this share of
	// align.max_rotation_deg (or max_shift_frac).
	coverageShare = 0.5
)

// PoseSpread is how far the good training images' parts lie from the
// template's pose, measured by the classical alignment the daemon refines
// with (models/ecc: a search over turns, then Gauss–Newton steps of the
// correlation) starting from the identity.
type PoseSpread struct {
	// Images is the number of images measured (the template excluded).
	Images int
	// Measured is how many of them correlate with the template at their
	// measured pose by at least MinPoseCorrelation: images whose pose the
	// correlation could establish. The figures below are theirs.
	Measured int
	// MedianPx, QuantilePx and MaxPx are the median, FixturedQuantile
	// quantile and maximum of the mean displacement of the four
	// model-input corners (pixels) under each measured pose.
	MedianPx, QuantilePx, MaxPx float64
	// CellPx is one cell of the memory's grid in model-input pixels.
	CellPx float64
	// QuantileRotationDeg and QuantileShiftFrac are the FixturedQuantile
	// quantiles of |θ| (degrees) and of the larger shift along x or y
	// (fraction of the image size, as align.max_shift_frac).
	QuantileRotationDeg, QuantileShiftFrac float64
}

// Fixtured says whether the parts lie within FixturedCells of the
// template's pose in at least FixturedQuantile of the images.
func (s PoseSpread) Fixtured() bool {
	return s.QuantilePx <= FixturedCells*s.CellPx
}

// Measurable says whether enough images correlate with the template for
// the spread to describe the parts' poses.
func (s PoseSpread) Measurable() bool {
	return s.Images > 0 && float64(s.Measured) >= MinMeasuredShare*float64(s.Images)
}

// String is the spread as training reports it.
func (s PoseSpread) String() string {
	return fmt.Sprintf("pose spread of %d good images against the template (ecc-search from its pose): corner displacement median %.1f px, %d%% within %.1f px (%.2f cells of %g px), max %.1f px; %d%% within %.1f° and %.3f of the image size; %d of %d match the template at their pose (correlation ≥ %g) and are counted",
		s.Images, s.MedianPx, int(math.Round(100*FixturedQuantile)), s.QuantilePx, s.QuantilePx/s.CellPx, s.CellPx, s.MaxPx,
		int(math.Round(100*FixturedQuantile)), s.QuantileRotationDeg, s.QuantileShiftFrac, s.Measured, s.Images, MinPoseCorrelation)
}

// measurePoseSpread measures every training image's pose against the
// template with ecc.Refiner.Search from the identity. inputs are the
// images at the align input (channels planes of size×size), crops their
// crop sizes, tplIndex the template's index among them (skipped; -1 for a
// template from elsewhere), and width×height the model input the spread is
// expressed on. A few milliseconds an image.
func measurePoseSpread(inputs [][]float32, crops []image.Point, tpl []float32, tplIndex, channels, size, width, height int, cellPx float64) PoseSpread {
	var refiner ecc.Refiner
	var disp, turns, shifts []float64
	s := PoseSpread{CellPx: cellPx}
	for i, in := range inputs {
		if i == tplIndex {
			continue
		}
		pose, res := refiner.Search(in, tpl, channels, size, size, crops[i].X, crops[i].Y, preprocess.Transform{})
		s.Images++
		if !(res.After >= MinPoseCorrelation) {
			continue
		}
		s.Measured++
		disp = append(disp, cornerDisplacement(pose, width, height))
		turns = append(turns, math.Abs(pose.Degrees()))
		shifts = append(shifts, max(math.Abs(pose.Tx), math.Abs(pose.Ty))/2)
	}
	if s.Measured == 0 {
		return s
	}
	s.MedianPx = quantile(disp, 0.5)
	s.QuantilePx = quantile(disp, FixturedQuantile)
	s.MaxPx = slices.Max(disp)
	s.QuantileRotationDeg = quantile(turns, FixturedQuantile)
	s.QuantileShiftFrac = quantile(shifts, FixturedQuantile)
	return s
}

// cornerDisplacement is the mean distance (pixels) the four corners of a
// width×height image move under t.
func cornerDisplacement(t preprocess.Transform, width, height int) float64 {
	a := t.Pixel(width, height)
	var sum float64
	for _, c := range [4][2]float64{{0, 0}, {float64(width - 1), 0}, {0, float64(height - 1)}, {float64(width - 1), float64(height - 1)}} {
		x, y := a.Apply(c[0], c[1])
		sum += math.Hypot(x-c[0], y-c[1]) / 4
	}
	return sum
}

// skipReason says why align.method = "auto" trains no image matching
// module for this spread, or "" when the parts move and it should.
func skipReason(s PoseSpread) string {
	if !s.Measurable() {
		return fmt.Sprintf("only %d of %d good images match the template at any pose tried (correlation ≥ %g: a texture, or parts unlike one another, with no pose to find): no image matching module is trained and the bundle aligns nothing (align.method = \"imm\" trains it anyway)",
			s.Measured, s.Images, MinPoseCorrelation)
	}
	if s.Fixtured() {
		return fmt.Sprintf("the parts are fixtured: %d%% of the good images lie within %.1f px (%.2f cells of the memory's %g px grid; limit %g) and %.1f° of the template's pose: no image matching module is trained and the bundle aligns nothing (align.method = \"imm\" trains it anyway)",
			int(math.Round(100*FixturedQuantile)), s.QuantilePx, s.QuantilePx/s.CellPx, s.CellPx, FixturedCells, s.QuantileRotationDeg)
	}
	return ""
}

// coverageWarning says what the good images' poses leave untested of the
// configured range (align.max_rotation_deg, align.max_shift_frac), and what
// a user must do about it; "" when they cover it. aligned says whether the
// bundle will align (an IMM was kept).
func coverageWarning(s PoseSpread, al RecipeAlign, aligned bool) string {
	if s.Images == 0 || !s.Measurable() {
		return ""
	}
	var short, beyond []string
	if al.MaxRotationDeg > 0 && s.QuantileRotationDeg < coverageShare*al.MaxRotationDeg {
		short = append(short, fmt.Sprintf("turns up to %.1f° of the ±%g° of align.max_rotation_deg", s.QuantileRotationDeg, al.MaxRotationDeg))
	}
	if al.MaxShiftFrac > 0 && s.QuantileShiftFrac < coverageShare*al.MaxShiftFrac {
		short = append(short, fmt.Sprintf("shifts up to %.3f of the ±%g of align.max_shift_frac", s.QuantileShiftFrac, al.MaxShiftFrac))
	}
	if s.QuantileRotationDeg > al.MaxRotationDeg {
		beyond = append(beyond, fmt.Sprintf("turns up to %.1f°, beyond align.max_rotation_deg = %g", s.QuantileRotationDeg, al.MaxRotationDeg))
	}
	if s.QuantileShiftFrac > al.MaxShiftFrac {
		beyond = append(beyond, fmt.Sprintf("shifts up to %.3f, beyond align.max_shift_frac = %g", s.QuantileShiftFrac, al.MaxShiftFrac))
	}
	var parts []string
	q := int(math.Round(100 * FixturedQuantile))
	if len(short) > 0 {
		what := fmt.Sprintf("%d%% of the good images show %s", q, strings.Join(short, " and "))
		if aligned {
			what += ": the image matching module learned the rest of the range from turned copies only, and nothing tested this bundle on parts moved that far; add good parts at those poses to the training images (and defective ones to the test set) before the line presents them"
		} else {
			what += ": this bundle aligns nothing, so a part the line presents moved by more than a memory cell scores as a defect (a bundle trained on fixtured parts rejects moved ones); if the line can move parts, add good parts at the poses it produces to the training images — training then measures the spread and trains the image matching module — or set align.method = \"imm\""
		}
		parts = append(parts, what)
	}
	if len(beyond) > 0 {
		parts = append(parts, fmt.Sprintf("%d%% of the good images show %s: raise them to the poses the line produces, or the module never learns to align those parts", q, strings.Join(beyond, " and ")))
	}
	return strings.Join(parts, "; ")
}

// immNotBetter says why a trained module whose validation pose error is
// not below KeepIMMRatio × the untrained one's is dropped under
// align.method = "auto", or "" when it is kept.
func immNotBetter(poseError, untrained float64) string {
	if poseError < KeepIMMRatio*untrained {
		return ""
	}
	return fmt.Sprintf("the trained image matching module is not clearly better than none: pose error %.2f px on the validation poses against %.2f px untrained (kept only below %g×): the bundle aligns nothing (align.method = \"imm\" keeps it)",
		poseError, untrained, KeepIMMRatio)
}

// noteAlign appends a sentence to the manifest's training notes.
func (t *trainer) noteAlign(why string) {
	t.man.Training.Notes = strings.TrimSpace(t.man.Training.Notes + " " + why)
}

// measureSpread measures the training images' pose spread against the
// template (tplSource names it among the training images) on the model
// input the manifest describes.
func (t *trainer) measureSpread(inputs [][]float32, tpl []float32, tplSource string) PoseSpread {
	tplIndex := slices.IndexFunc(t.trainSet, func(g goodImage) bool { return g.name == tplSource })
	crops := make([]image.Point, len(t.trainSet))
	for i, g := range t.trainSet {
		crop := t.roi
		if crop.Empty() {
			crop = g.img.Bounds()
		}
		crops[i] = crop.Size()
	}
	al := t.r.Align
	return measurePoseSpread(inputs, crops, tpl, tplIndex, al.Channels, al.Size, t.man.Input.Width, t.man.Input.Height, float64(t.r.Memory.Stride))
}

// skipAlignment leaves the bundle without alignment under
// align.method = "auto", saying why (with the measured spread) in the
// progress, the result and the manifest's training notes, and warns about
// the poses that leaves uncovered.
func (t *trainer) skipAlignment(why string, spread PoseSpread) {
	fmt.Fprintf(t.progress, "align        %s\n", why)
	t.res.AlignSkipped = why
	t.noteAlign(why + " (" + spread.String() + ").")
	t.man.Align = bundle.Align{Method: bundle.AlignNone, TemplateSeed: -1}
	delete(t.files, bundle.AlignGraphName)
	delete(t.files, bundle.TemplateName)
	clear(t.transforms)
	t.warnCoverage(spread)
}

// warnCoverage prints, records and notes coverageWarning for the bundle
// as it now aligns.
func (t *trainer) warnCoverage(spread PoseSpread) {
	w := coverageWarning(spread, t.r.Align, t.man.Align.Method != bundle.AlignNone)
	if w == "" {
		return
	}
	fmt.Fprintf(t.progress, "align        warning: %s\n", w)
	t.res.AlignWarning = w
	t.noteAlign("Warning: " + w + ".")
}

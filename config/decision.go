package config

// Decision turns a heatmap into a verdict.
type Decision struct {
	// Threshold on the image score (0..1) above which a part is NG;
	// 0 uses the threshold calibrated into the model bundle.
	Threshold float64 `toml:"threshold"`
	// PixelThreshold on heatmap values (0..1) that marks defect regions;
	// 0 uses the bundle's calibrated pixel threshold.
	PixelThreshold float64 `toml:"pixel_threshold"`
	// MinDefectArea is the smallest defect region, in pixels of the
	// original camera frame, that makes a part NG; smaller regions are
	// dropped from the result.
	MinDefectArea int `toml:"min_defect_area"`
	// MaxRegions caps the defect regions reported per part.
	MaxRegions int `toml:"max_regions"`
	// MaxOutsideFraction is the largest fraction of the model input the
	// alignment may pull from outside the ROI (where nothing is inspected)
	// before the part is an ERROR (out_of_frame) instead of a verdict.
	MaxOutsideFraction float64 `toml:"max_outside_fraction"`
}

// DefaultMaxOutsideFraction is decision.max_outside_fraction's default,
// also what `inspectd eval` applies.
const DefaultMaxOutsideFraction = 0.5

func (d *Decision) defaults() {
	*d = Decision{MaxRegions: 16, MaxOutsideFraction: DefaultMaxOutsideFraction}
}

func (d *Decision) validate(v *Checker) {
	v.FloatRange("threshold", d.Threshold, 0, 1, "(0 = calibrated value from the bundle)")
	v.FloatRange("pixel_threshold", d.PixelThreshold, 0, 1, "(0 = calibrated value from the bundle)")
	v.IntRange("min_defect_area", d.MinDefectArea, 0, 1<<24, "pixels")
	v.IntRange("max_regions", d.MaxRegions, 1, 1000, "")
	v.FloatRange("max_outside_fraction", d.MaxOutsideFraction, 0, 1, "of the model input")
}

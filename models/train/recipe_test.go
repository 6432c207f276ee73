//go:build workstation

package train

import (
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/config"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestRecipeExampleMatchesDefaults(t *testing.T) {
	r, err := LoadRecipe("recipe.example.toml")
	if err != nil {
		t.Fatalf("example recipe is invalid:\n%v", err)
	}
	want := DefaultRecipe()
	want.file = "recipe.example.toml"
	if !reflect.DeepEqual(*r, want) {
		t.Errorf("example differs from DefaultRecipe:\n got %+v\nwant %+v", *r, want)
	}
	if d, err := LoadRecipe(""); err != nil || !reflect.DeepEqual(*d, DefaultRecipe()) {
		t.Errorf("LoadRecipe(\"\") = %+v, %v; want the defaults", d, err)
	}
}

func TestInvalidRecipes(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.toml")
	if len(files) < 5 {
		t.Fatalf("only %d invalid recipes", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadRecipe(f)
			if err == nil {
				t.Fatal("LoadRecipe succeeded")
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("not ErrInvalid: %v", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -tags workstation ./models/train -run TestInvalidRecipes -update)", err)
			}
			if got != string(want) {
				t.Errorf("--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}

// TestRecipeBoundsMatchTrainers: every recipe that passes the recipe check
// is accepted by the IMM and ALM trainers, so nothing the trainers require
// fails after the data is loaded. Each case sets one key to the edge of
// its allowed range.
func TestRecipeBoundsMatchTrainers(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(r *Recipe)
	}{
		{"defaults", func(*Recipe) {}},
		{"align lr low", func(r *Recipe) { r.Align.LearningRate = 1e-6 }},
		{"align lr just below 1", func(r *Recipe) { r.Align.LearningRate = 0.999 }},
		{"no motion", func(r *Recipe) { r.Align.MaxRotationDeg, r.Align.MaxShiftFrac = 0, 0 }},
		{"max motion", func(r *Recipe) { r.Align.MaxRotationDeg, r.Align.MaxShiftFrac = 180, 0.5 }},
		{"alm lr 1", func(r *Recipe) { r.ALM.LearningRate = 1 }},
		{"d max", func(r *Recipe) { r.ALM.D = 448 }},
		{"d max random", func(r *Recipe) { r.ALM.D, r.ALM.Reduction = 448, "random_orthogonal" }},
		{"dgm fraction small", func(r *Recipe) { r.DGM.Fraction = 1e-3 }},
		{"dgm fraction large", func(r *Recipe) { r.DGM.Fraction = 0.999 }},
		{"dgm off fraction 0", func(r *Recipe) { r.DGM.Enabled, r.DGM.Fraction = false, 0 }},
		{"delta 1", func(r *Recipe) { r.DGM.Delta = 1 }},
		{"one shape one mode", func(r *Recipe) { r.DGM.Shapes, r.DGM.Modes = []string{"blob"}, []string{"texture"} }},
		{"small input big blur", func(r *Recipe) { r.Input.Height, r.Input.Width, r.ALM.BlurSigma = 32, 32, 10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := DefaultRecipe()
			tc.set(&r)
			if err := r.Validate(); err != nil {
				t.Fatalf("recipe check refuses the edge value: %v", err)
			}
			if err := immConfig(&r).Validate(); err != nil {
				t.Errorf("recipe passes but the IMM trainer refuses it: %v", err)
			}
			if err := almConfig(&r).Validate(); err != nil {
				t.Errorf("recipe passes but the ALM trainer refuses it: %v", err)
			}
		})
	}
	// And the other way: values the trainers refuse fail the recipe check
	// with the key's name.
	for _, tc := range []struct {
		set  func(r *Recipe)
		want string
	}{
		{func(r *Recipe) { r.DGM.Fraction = 0 }, "dgm.fraction: 0 is out of range"},
		{func(r *Recipe) { r.DGM.Fraction = 1 }, "dgm.fraction: 1 is out of range"},
		{func(r *Recipe) { r.Align.LearningRate = 1 }, "align.learning_rate: 1 is out of range"},
		{func(r *Recipe) { r.ALM.LearningRate = math.NaN() }, "alm.learning_rate: NaN is not a finite number"},
		{func(r *Recipe) { r.HoldoutFraction = math.NaN() }, "holdout_fraction: NaN is not a finite number"},
		{func(r *Recipe) { r.Calibration.ImageQuantile = math.NaN() }, "calibration.image_quantile: NaN"},
		{func(r *Recipe) { r.Calibration.ImageMargin = math.NaN() }, "calibration.image_margin: NaN"},
		{func(r *Recipe) { r.Input.Height, r.ALM.BlurSigma = 32, 11 }, "alm.blur_sigma: 11: the blur radius ⌈3σ⌉ = 33 px"},
		{func(r *Recipe) { r.Memory.Layers = []int{1, 2} }, "memory.layers: [1 2]: want [1, 2, 3], [2, 3] or [3]"},
		{func(r *Recipe) { r.Memory.Layers = nil }, "memory.layers: []: want [1, 2, 3], [2, 3] or [3]"},
		{func(r *Recipe) { r.Memory.Stride = 6 }, "memory.stride: 6: want 4, 8 or 16 input pixels per cell"},
		{func(r *Recipe) { r.Memory.Layers, r.Memory.D = []int{2, 3}, 400 }, "memory.d: 400 is out of range; allowed 8 to 384 PCA directions (or 0: all 384 channels of layers [2 3])"},
		{func(r *Recipe) {
			r.Input.Height, r.Input.Width, r.Memory.Stride, r.Memory.Entries = 2048, 2048, 4, 1024
		},
			"memory.entries: 1024 entries of 384 values at 512×512 locations (and 6144 global ones) need 393218 MiB; the limit is 1024 MiB"},
		{func(r *Recipe) { r.Memory.GlobalEntries = -1 }, "memory.global_entries: -1 is out of range; allowed 0 to 16384 shared by every location"},
		{func(r *Recipe) { r.Memory.GlobalEntries = 0 }, "memory.entries: 0 with global_entries = 0: the memory would hold nothing"},
		{func(r *Recipe) { r.Memory.Average = "mean" }, `memory.average: "mean" is not allowed; use one of "grid", "each-layer"`},
		{func(r *Recipe) { r.Memory.GlobalPrecision = "fp16" }, `memory.global_precision: "fp16" is not allowed; use one of "float32", "int8"`},
		{func(r *Recipe) { r.Input.MixedSizes = "crop" }, `input.mixed_sizes: "crop"`},
		{func(r *Recipe) { r.Align.Refine = "lk" }, `align.refine: "lk" is not allowed; use one of "ecc", "ecc-search", "none"`},
	} {
		r := DefaultRecipe()
		tc.set(&r)
		err := r.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrInvalid) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
}

// TestMedoid: the medoid is the vector nearest all others, not the mean
// nor the first.
func TestMedoid(t *testing.T) {
	xs := [][]float32{{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0.6, 0.5}}
	if got := medoid(xs); got != 4 {
		t.Errorf("medoid = %d (%v), want 4 (0.6, 0.5)", got, xs[got])
	}
}

// TestCalibrate: the image threshold is squash(margin × quantile) of the
// scores (distances for the memory), the pixel threshold likewise of the
// pixel values but never above the image threshold.
func TestCalibrate(t *testing.T) {
	c := RecipeCalibration{ImageQuantile: 0.5, ImageMargin: 1.12, PixelQuantile: 1, PixelMargin: 1.1}
	squash := func(b float64) float64 { return b / (b + 2) }
	got := calibrate(c, []float64{1, 2, 3, 4, 5}, []float64{0.5, 1, 9}, squash, "5 test scores")
	if want := squash(1.12 * 3); math.Abs(got.ImageThreshold-want) > 1e-12 {
		t.Errorf("image threshold %v, want squash(1.12 × median 3) = %v", got.ImageThreshold, want)
	}
	if got.PixelThreshold != got.ImageThreshold {
		t.Errorf("pixel threshold %v, want it capped at the image threshold %v (1.1 × 9 lies above)", got.PixelThreshold, got.ImageThreshold)
	}
	if got.GoodScores.Count != 5 || math.Abs(got.GoodScores.Max-squash(5)) > 1e-12 || !strings.Contains(got.Rule, "5 test scores") {
		t.Errorf("stats %+v, rule %q", got.GoodScores, got.Rule)
	}
	low := calibrate(c, []float64{1, 2, 3, 4, 5}, []float64{0.1, 0.2}, squash, "x")
	if want := squash(1.1 * 0.2); math.Abs(low.PixelThreshold-want) > 1e-12 {
		t.Errorf("pixel threshold %v, want squash(1.1 × 0.2) = %v", low.PixelThreshold, want)
	}
}

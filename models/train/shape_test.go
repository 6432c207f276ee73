//go:build workstation

package train

import (
	"context"
	"errors"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/synth"
)

// sizesOf returns n copies of a width × height image size.
func sizesOf(n, width, height int) []image.Point {
	s := make([]image.Point, n)
	for i := range s {
		s[i] = image.Pt(width, height)
	}
	return s
}

// TestChooseInputShape: square sets stay square, long parts keep their
// aspect within the pixel budget, "fixed" changes nothing.
func TestChooseInputShape(t *testing.T) {
	auto := RecipeInput{Shape: ShapeAuto, Height: 256, Width: 256}
	fixed := RecipeInput{Shape: ShapeFixed, Height: 256, Width: 256}
	// Sizes that vary around square as magnetic tiles do (median 1.15).
	tiles := []image.Point{{240, 289}, {494, 361}, {511, 321}, {199, 319}, {201, 269}, {300, 345}, {361, 366}, {300, 330}, {291, 348}}
	for _, tc := range []struct {
		name          string
		in            RecipeInput
		sizes         []image.Point
		height, width int
		square        bool
		capped        bool
		// autoHeight, autoWidth: "fixed" reports what "auto" would train.
		autoHeight, autoWidth int
	}{
		{"square set stays square", auto, sizesOf(5, 900, 900), 256, 256, true, false, 0, 0},
		{"within the tolerance stays square", auto, sizesOf(3, 1000, 1190), 256, 256, true, false, 0, 0},
		{"mixed sizes around square stay square", auto, tiles, 256, 256, true, false, 0, 0},
		{"tall 1:2.5 part", auto, sizesOf(4, 500, 1250), 400, 160, false, false, 0, 0},
		{"the hold-out's 500 × 1,260", auto, sizesOf(4, 500, 1260), 400, 160, false, false, 0, 0},
		{"wide 2.5:1 part", auto, sizesOf(4, 1250, 500), 160, 400, false, false, 0, 0},
		{"just beyond the tolerance", auto, sizesOf(2, 800, 1000), 288, 224, false, false, 0, 0},
		{"beyond 4:1 is capped", auto, sizesOf(3, 100, 1000), 512, 128, false, true, 0, 0},
		{"wide beyond 4:1 is capped", auto, sizesOf(3, 1000, 100), 128, 512, false, true, 0, 0},
		{"the budget, not 256², sets the pixels", RecipeInput{Shape: ShapeAuto, Height: 640, Width: 256}, sizesOf(2, 500, 1250), 640, 256, false, false, 0, 0},
		{"non-square budget on square parts", RecipeInput{Shape: ShapeAuto, Height: 320, Width: 256}, sizesOf(2, 64, 64), 288, 288, true, false, 0, 0},
		{"small budget keeps the 32-pixel minimum", RecipeInput{Shape: ShapeAuto, Height: 32, Width: 32}, sizesOf(2, 100, 250), 48, 32, false, false, 0, 0},
		{"fixed keeps the recipe's size", fixed, sizesOf(4, 500, 1250), 256, 256, false, false, 400, 160},
		{"fixed non-square", RecipeInput{Shape: ShapeFixed, Height: 640, Width: 256}, sizesOf(4, 900, 900), 640, 256, false, false, 400, 400},
		{"fixed as auto would choose", fixed, sizesOf(4, 900, 900), 256, 256, false, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseInputShape(tc.in, tc.sizes)
			if err != nil {
				t.Fatal(err)
			}
			if got.Height != tc.height || got.Width != tc.width || got.Square != tc.square || got.Capped != tc.capped {
				t.Errorf("chooseInputShape = %d × %d (square %v, capped %v), want %d × %d (square %v, capped %v)",
					got.Height, got.Width, got.Square, got.Capped, tc.height, tc.width, tc.square, tc.capped)
			}
			if got.AutoHeight != tc.autoHeight || got.AutoWidth != tc.autoWidth {
				t.Errorf("auto would train %d × %d, want %d × %d", got.AutoHeight, got.AutoWidth, tc.autoHeight, tc.autoWidth)
			}
			if got.Budget != tc.in.Height*tc.in.Width {
				t.Errorf("budget %d, want %d", got.Budget, tc.in.Height*tc.in.Width)
			}
		})
	}
}

// TestChooseInputShapeConstraints: for every aspect, both sides are
// multiples of 16 within 32..2048, the pixels stay near the budget and
// the input's aspect follows the images' (capped at MaxAspect) as closely
// as 16-pixel steps allow.
func TestChooseInputShapeConstraints(t *testing.T) {
	for _, budget := range [][2]int{{256, 256}, {320, 320}, {512, 384}} {
		in := RecipeInput{Shape: ShapeAuto, Height: budget[0], Width: budget[1]}
		pixels := float64(budget[0] * budget[1])
		for aspect := 0.15; aspect < 7; aspect *= 1.07 {
			got, err := chooseInputShape(in, sizesOf(3, 1000, int(math.Round(1000*aspect))))
			if err != nil {
				t.Fatal(err)
			}
			h, w := got.Height, got.Width
			if h%16 != 0 || w%16 != 0 || h < 32 || w < 32 || h > 2048 || w > 2048 {
				t.Fatalf("aspect %.3f, budget %v: %d × %d is not multiples of 16 within 32..2048", aspect, budget, h, w)
			}
			if area := float64(h * w); math.Abs(math.Log(area/pixels)) > 0.12 {
				t.Errorf("aspect %.3f, budget %v: %d × %d = %.0f pixels, more than 12 %% off the budget %.0f", aspect, budget, h, w, area, pixels)
			}
			want := math.Min(math.Max(got.Aspect, 1/MaxAspect), MaxAspect)
			if math.Max(want, 1/want) <= SquareTolerance {
				want = 1
			}
			// Rounding each side by up to 8 pixels moves the ratio by
			// at most that much over the shorter side, twice.
			if tol := 2 * 8.0 / float64(min(h, w)); math.Abs(math.Log(float64(h)/float64(w)/want)) > tol {
				t.Errorf("aspect %.3f, budget %v: %d × %d has aspect %.3f, want %.3f", aspect, budget, h, w, float64(h)/float64(w), want)
			}
		}
	}
}

func TestChooseInputShapeErrors(t *testing.T) {
	for _, tc := range []struct {
		in    RecipeInput
		sizes []image.Point
		want  string
	}{
		{RecipeInput{Shape: ShapeAuto, Height: 256, Width: 256}, nil, "no good images to take the aspect from"},
		{RecipeInput{Shape: ShapeAuto, Height: 256, Width: 256}, []image.Point{{10, 10}, {0, 5}}, "good image 1 is 0×5 pixels; cannot take its aspect"},
		{RecipeInput{Shape: "square", Height: 256, Width: 256}, sizesOf(1, 10, 10), `input.shape "square": want "auto" or "fixed"`},
	} {
		if _, err := chooseInputShape(tc.in, tc.sizes); err == nil || err.Error() != tc.want {
			t.Errorf("chooseInputShape(%+v, %v) = %v, want %q", tc.in, tc.sizes, err, tc.want)
		}
	}
}

// TestMedianAspect: the median, and for an even count the geometric mean
// of the middle two, so that a set and its transpose get reciprocals.
func TestMedianAspect(t *testing.T) {
	if got := medianAspect([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd count: %v, want 2", got)
	}
	if got := medianAspect([]float64{4, 0.5, 1, 8}); math.Abs(got-2) > 1e-12 {
		t.Errorf("even count: %v, want √(1×4) = 2", got)
	}
	if a, b := medianAspect([]float64{0.5, 2, 3, 0.25}), medianAspect([]float64{2, 0.5, 1.0 / 3, 4}); math.Abs(a*b-1) > 1e-12 {
		t.Errorf("transposed set: %v and %v are not reciprocal", a, b)
	}
}

// TestInputShapeString: the progress line says what was chosen and why.
func TestInputShapeString(t *testing.T) {
	for _, tc := range []struct {
		s    inputShape
		want string
	}{
		{inputShape{Height: 400, Width: 160, Shape: ShapeAuto, Aspect: 2.52, Budget: 65536},
			`400 × 160 (height × width) follows the good images' median aspect (height:width) 2.52:1 (input.shape = "auto", budget 65,536 pixels)`},
		{inputShape{Height: 256, Width: 256, Shape: ShapeAuto, Aspect: 1.148, Budget: 65536, Square: true},
			`256 × 256 (height × width): the good images' median aspect (height:width) 1.15:1 is within 1.2 of square (input.shape = "auto", budget 65,536 pixels)`},
		{inputShape{Height: 128, Width: 512, Shape: ShapeAuto, Aspect: 0.1, Budget: 65536, Capped: true},
			`128 × 512 (height × width): the good images' median aspect (height:width) 1:10.00, capped at 4:1 (input.shape = "auto", budget 65,536 pixels)`},
		{inputShape{Height: 256, Width: 256, Shape: ShapeFixed, Aspect: 2.5, Budget: 65536, AutoHeight: 400, AutoWidth: 160},
			`256 × 256 (height × width) as input.height and input.width say (input.shape = "fixed"; the good images' median aspect (height:width) 2.50:1: "auto" would train 400 × 160)`},
		{inputShape{Height: 256, Width: 256, Shape: ShapeFixed, Aspect: 1.1, Budget: 65536},
			`256 × 256 (height × width) as input.height and input.width say (input.shape = "fixed"; the good images' median aspect (height:width) 1.10:1)`},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("String() =\n  %s\nwant\n  %s", got, tc.want)
		}
	}
	if got := groupThousands(1234567); got != "1,234,567" {
		t.Errorf("groupThousands = %q", got)
	}
}

// TestRecipeInputShape: "auto" is the default, a file that states a size
// without input.shape keeps it, and a wrong shape is refused by key.
func TestRecipeInputShape(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{"recipe_version = 1\n", ShapeAuto},
		{"recipe_version = 1\n[input]\nheight = 640\nwidth = 256\n", ShapeFixed},
		{"recipe_version = 1\n[input]\nwidth = 320\n", ShapeFixed},
		{"recipe_version = 1\n[input]\nshape = \"auto\"\nheight = 320\nwidth = 320\n", ShapeAuto},
		{"recipe_version = 1\n[input]\nshape = \"fixed\"\n", ShapeFixed},
		{"recipe_version = 1\n[input]\nmixed_sizes = \"stretch\"\n", ShapeAuto},
	} {
		r, err := ParseRecipe("r.toml", []byte(tc.text))
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if r.Input.Shape != tc.want {
			t.Errorf("%q: input.shape = %q, want %q", tc.text, r.Input.Shape, tc.want)
		}
	}
	_, err := ParseRecipe("r.toml", []byte("recipe_version = 1\n[input]\nshape = \"square\"\n"))
	if want := `r.toml:3: input.shape: "square" is not allowed; use one of "auto", "fixed"`; err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, config.ErrInvalid) {
		t.Errorf("ParseRecipe(shape = \"square\") = %v, want %q", err, want)
	}
	r := DefaultRecipe()
	r.Input.Shape = ""
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), `input.shape: "" is not allowed; use one of "auto", "fixed"`) {
		t.Errorf("Validate(shape = \"\") = %v", err)
	}
}

// TestChooseInputRefusesWhatTheRecipeWould: a chosen shape passes the
// recipe's own checks or training stops, naming the key and the way out.
func TestChooseInputRefusesWhatTheRecipeWould(t *testing.T) {
	r := DefaultRecipe()
	r.Input.Height, r.Input.Width, r.ALM.BlurSigma = 64, 64, 11 // radius 33 fits 64, not the 32 a 4:1 part gets
	tall := goodImage{name: "tall.png", img: image.NewGray(image.Rect(0, 0, 100, 400))}
	tr := &trainer{r: &r, goods: []goodImage{tall, tall}, progress: io.Discard}
	err := tr.chooseInput()
	for _, want := range []string{"the input 128 × 32 (height × width) chosen for the good images' aspect 4.00:1 does not suit the recipe",
		`set input.shape = "fixed"`, "alm.blur_sigma: 11: the blur radius ⌈3σ⌉ = 33 px must be smaller than the input (32×128)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("chooseInput() = %v, want %q", err, want)
		}
	}
	if tr.r != &r || r.Input.Height != 64 {
		t.Errorf("a refused choice changed the recipe: %+v", tr.r.Input)
	}
}

// TestRunFollowsTheImagesAspect trains on tall synthetic parts with the
// default input.shape = "auto" and checks that the bundle's input follows
// their aspect, that the daemon's engine scores it as training did
// (verification) and that its TensorFlow Lite twins export.
func TestRunFollowsTheImagesAspect(t *testing.T) {
	root := filepath.Join(t.TempDir(), "synth")
	if err := synth.Generate(context.Background(), root, synth.Options{Seed: 3, Objects: []string{"plate"}, Width: 64, Height: 160,
		TrainGood: 10, TestGood: 2, TestPerDefect: 1, MaxRotationDeg: 5, MaxShiftFrac: 0.05}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "bundle")
	r := tinyRecipe()
	r.Align.Method = bundle.AlignNone
	r.Input.Height, r.Input.Width = 96, 96 // the budget: 9,216 pixels
	var progress strings.Builder
	res, err := Run(context.Background(), Options{GoodDir: filepath.Join(root, "plate", "train", "good"), Backbone: backbonePath(t), Out: out,
		Recipe: r, Backend: testBackend(t), Progress: &progress, TFLite: true})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	b, err := bundle.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	// √(9216 × 2.5) = 151.8 → 144, √(9216 / 2.5) = 60.7 → 64.
	if in := b.Manifest.Input; in.Height != 144 || in.Width != 64 {
		t.Errorf("manifest input %d × %d (height × width), want 144 × 64 for parts of aspect 2.5", in.Height, in.Width)
	}
	if want := `input        144 × 64 (height × width) follows the good images' median aspect (height:width) 2.50:1 (input.shape = "auto", budget 9,216 pixels)`; !strings.Contains(progress.String(), want) {
		t.Errorf("progress does not say the chosen input %q:\n%s", want, progress.String())
	}
	if res.MaxVerify > VerifyTolerance {
		t.Errorf("the engine scores the non-square bundle %g off training", res.MaxVerify)
	}
	for _, name := range []string{bundle.LocalizeTFLiteName} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("TFLite twin: %v", err)
		}
	}
	if r.Input.Height != 96 || r.Input.Width != 96 {
		t.Errorf("Run changed the caller's recipe to %d × %d", r.Input.Height, r.Input.Width)
	}
}

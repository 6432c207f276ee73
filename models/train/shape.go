//go:build workstation

package train

import (
	"errors"
	"fmt"
	"image"
	"math"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// The values of input.shape.
const (
	// ShapeAuto gives the model input the good images' median aspect
	// (height over width, of their ROI) within the pixel budget
	// input.height × input.width: a tall part keeps its thin defects thin
	// instead of being squashed into a square.
	ShapeAuto = "auto"
	// ShapeFixed uses input.height × input.width as they are.
	ShapeFixed = "fixed"
)

// SquareTolerance is the largest median aspect (long side over short)
// that input.shape = "auto" still trains square: sets of nearly square
// parts, and sets whose sizes vary around square (magnetic tiles, median
// 1.15), keep the square input they always had.
const SquareTolerance = 1.2

// MaxAspect caps the aspect (long side over short) input.shape = "auto"
// gives the model input: beyond it the short side would hold too few grid
// cells (128 pixels, 16 cells at the default budget and 8-pixel cells)
// for the 3×3 feature averages and the blur to describe the part; longer
// parts want an ROI per section or tiles.
const MaxAspect = 4.0

// shapeMultiple is what both input sides must be multiples of: ResNet-18's
// layer3, the deepest stage any memory or localisation graph reads, has
// one cell per 16 input pixels (netdef.checkSize, memory.Config.Validate),
// and every memory stride (4, 8, 16) divides it.
const shapeMultiple = 16

// minInputSide and maxInputSide are input.height's and input.width's
// bounds (RecipeInput's validation).
const (
	minInputSide = 32
	maxInputSide = 2048
)

// inputShape is the model input training chose, and why.
type inputShape struct {
	Height, Width int
	// Shape is the recipe's input.shape.
	Shape string
	// Aspect is the good images' median height over width (ROI applied).
	Aspect float64
	// Budget is input.height × input.width: the pixels the recipe affords.
	Budget int
	// Square: the aspect lies within SquareTolerance of square; Capped: it
	// lies beyond MaxAspect and was capped.
	Square, Capped bool
	// AutoHeight and AutoWidth, with input.shape = "fixed", are what
	// "auto" would choose when that differs from the fixed size (else 0).
	AutoHeight, AutoWidth int
}

// chooseInputShape picks the model input for good images of the given
// sizes (ROI applied): input.height × input.width as they are with
// input.shape = "fixed"; with "auto", the sides whose ratio follows the
// images' median aspect (square within SquareTolerance, at most
// MaxAspect) and whose product stays near the budget input.height ×
// input.width, each rounded to a multiple of 16 within 32..2048.
func chooseInputShape(in RecipeInput, sizes []image.Point) (inputShape, error) {
	if len(sizes) == 0 {
		return inputShape{}, errors.New("no good images to take the aspect from")
	}
	aspects := make([]float64, len(sizes))
	for i, s := range sizes {
		if s.X <= 0 || s.Y <= 0 {
			return inputShape{}, fmt.Errorf("good image %d is %d×%d pixels; cannot take its aspect", i, s.X, s.Y)
		}
		aspects[i] = float64(s.Y) / float64(s.X)
	}
	shape := inputShape{Height: in.Height, Width: in.Width, Shape: in.Shape, Aspect: medianAspect(aspects), Budget: in.Height * in.Width}
	switch in.Shape {
	case ShapeFixed:
		auto := in
		auto.Shape = ShapeAuto
		if a, err := chooseInputShape(auto, sizes); err == nil && (a.Height != in.Height || a.Width != in.Width) {
			shape.AutoHeight, shape.AutoWidth = a.Height, a.Width
		}
		return shape, nil
	case ShapeAuto:
	default:
		return inputShape{}, fmt.Errorf("input.shape %q: want %q or %q", in.Shape, ShapeAuto, ShapeFixed)
	}
	aspect := shape.Aspect
	long := math.Max(aspect, 1/aspect)
	switch {
	case long <= SquareTolerance:
		shape.Square = true
		aspect = 1
	case long > MaxAspect:
		shape.Capped = true
		aspect = math.Pow(MaxAspect, math.Copysign(1, math.Log(aspect)))
	}
	budget := float64(shape.Budget)
	shape.Height = roundSide(math.Sqrt(budget * aspect))
	shape.Width = roundSide(math.Sqrt(budget / aspect))
	return shape, nil
}

// medianAspect is the median of aspects (the geometric mean of the two
// middle values for an even count, so that a set and its transpose get
// reciprocal medians).
func medianAspect(aspects []float64) float64 {
	s := slices.Clone(aspects)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return math.Sqrt(s[n/2-1] * s[n/2])
}

// roundSide rounds a side length to the nearest multiple of shapeMultiple
// within minInputSide..maxInputSide.
func roundSide(v float64) int {
	side := int(math.Round(v/shapeMultiple)) * shapeMultiple
	return min(max(side, minInputSide), maxInputSide)
}

// formatAspect writes a height-over-width ratio as "2.52:1" (tall) or
// "1:2.52" (wide).
func formatAspect(a float64) string {
	if a >= 1 {
		return fmt.Sprintf("%.2f:1", a)
	}
	return fmt.Sprintf("1:%.2f", 1/a)
}

// String is the progress line's account of the choice (after "input").
func (s inputShape) String() string {
	size := fmt.Sprintf("%d × %d (height × width)", s.Height, s.Width)
	aspect := fmt.Sprintf("the good images' median aspect (height:width) %s", formatAspect(s.Aspect))
	budget := fmt.Sprintf("budget %s pixels", groupThousands(s.Budget))
	switch {
	case s.Shape == ShapeFixed && s.AutoHeight != 0:
		return fmt.Sprintf("%s as input.height and input.width say (input.shape = %q; %s: %q would train %d × %d)",
			size, ShapeFixed, aspect, ShapeAuto, s.AutoHeight, s.AutoWidth)
	case s.Shape == ShapeFixed:
		return fmt.Sprintf("%s as input.height and input.width say (input.shape = %q; %s)", size, ShapeFixed, aspect)
	case s.Square:
		return fmt.Sprintf("%s: %s is within %g of square (input.shape = %q, %s)", size, aspect, SquareTolerance, ShapeAuto, budget)
	case s.Capped:
		return fmt.Sprintf("%s: %s, capped at %g:1 (input.shape = %q, %s)", size, aspect, MaxAspect, ShapeAuto, budget)
	default:
		return fmt.Sprintf("%s follows %s (input.shape = %q, %s)", size, aspect, ShapeAuto, budget)
	}
}

// groupThousands writes n with commas between groups of three digits.
func groupThousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// keepStatedSize makes a recipe file that sets input.height or
// input.width but not input.shape train at exactly that size
// (input.shape = "fixed"): a stated size is a request for it, and
// recipes written before input.shape existed keep their meaning.
func (in *RecipeInput) keepStatedSize(md toml.MetaData) {
	if !md.IsDefined("input", "shape") && (md.IsDefined("input", "height") || md.IsDefined("input", "width")) {
		in.Shape = ShapeFixed
	}
}

// chooseInput picks the model input from the good images (their ROI) and
// from then on trains with a copy of the recipe holding it; the copy must
// pass the recipe's checks as a written size would.
func (t *trainer) chooseInput() error {
	sizes := make([]image.Point, len(t.goods))
	for i, g := range t.goods {
		crop := t.roi
		if crop.Empty() {
			crop = g.img.Bounds()
		}
		sizes[i] = crop.Size()
	}
	shape, err := chooseInputShape(t.r.Input, sizes)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	chosen := *t.r
	chosen.Input.Height, chosen.Input.Width = shape.Height, shape.Width
	if err := chosen.Validate(); err != nil {
		return fmt.Errorf("train: the input %d × %d (height × width) chosen for the good images' aspect %s does not suit the recipe; set input.shape = %q with the size you want:\n%w",
			shape.Height, shape.Width, formatAspect(shape.Aspect), ShapeFixed, err)
	}
	t.r = &chosen
	fmt.Fprintf(t.progress, "input        %s\n", shape)
	return nil
}

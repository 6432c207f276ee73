package preprocess

import (
	"image"
	"image/color"
	"testing"
)

// TestBGRMatchesRGBA: a BGR frame and the same picture as RGBA give the
// same tensor, at the same size and through the block-averaging path.
func TestBGRMatchesRGBA(t *testing.T) {
	r := image.Rect(0, 0, 97, 61)
	bgr, rgba := NewBGR(r), image.NewRGBA(r)
	for y := range r.Dy() {
		for x := range r.Dx() {
			c := color.RGBA{R: uint8(x * 7), G: uint8(y * 11), B: uint8(x*y + 3), A: 255}
			bgr.Set(x, y, c)
			rgba.Set(x, y, c)
		}
	}
	for _, size := range []int{97, 32} {
		spec := Spec{Width: size, Height: size, Channels: 3}
		a, b := make([]float32, spec.Len()), make([]float32, spec.Len())
		if err := Fill(a, bgr, spec); err != nil {
			t.Fatal(err)
		}
		if err := Fill(b, rgba, spec); err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("size %d: value %d is %g from BGR, %g from RGBA", size, i, a[i], b[i])
			}
		}
	}
}

package preprocess

import (
	"image"
	"image/color"
)

// BGR is an 8-bit colour image stored as blue, green, red byte triplets,
// the layout cameras and OpenCV deliver. It implements image.Image, and
// [Preparer.Fill] reads it directly, so a captured frame reaches the model
// without a conversion copy.
type BGR struct {
	// Pix holds the pixels, 3 bytes each; the pixel at (x, y) starts at
	// Pix[(y-Rect.Min.Y)*Stride + (x-Rect.Min.X)*3].
	Pix    []uint8
	Stride int
	Rect   image.Rectangle
}

// NewBGR returns a black BGR image of the given bounds.
func NewBGR(r image.Rectangle) *BGR {
	return &BGR{Pix: make([]uint8, 3*r.Dx()*r.Dy()), Stride: 3 * r.Dx(), Rect: r}
}

// ColorModel returns the RGBA model.
func (p *BGR) ColorModel() color.Model { return color.RGBAModel }

// Bounds returns the image bounds.
func (p *BGR) Bounds() image.Rectangle { return p.Rect }

// PixOffset returns the index in Pix of the first byte of pixel (x, y).
func (p *BGR) PixOffset(x, y int) int {
	return (y-p.Rect.Min.Y)*p.Stride + (x-p.Rect.Min.X)*3
}

// At returns the colour of pixel (x, y); outside the bounds it is
// transparent black, as for the standard library's images.
func (p *BGR) At(x, y int) color.Color {
	if !(image.Point{x, y}.In(p.Rect)) {
		return color.RGBA{}
	}
	i := p.PixOffset(x, y)
	return color.RGBA{R: p.Pix[i+2], G: p.Pix[i+1], B: p.Pix[i], A: 255}
}

// Set sets pixel (x, y) to c; outside the bounds it does nothing.
func (p *BGR) Set(x, y int, c color.Color) {
	if !(image.Point{x, y}.In(p.Rect)) {
		return
	}
	r := color.RGBAModel.Convert(c).(color.RGBA)
	i := p.PixOffset(x, y)
	p.Pix[i], p.Pix[i+1], p.Pix[i+2] = r.B, r.G, r.R
}

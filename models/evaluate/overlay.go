package evaluate

import (
	"fmt"
	"image"
	"image/color"
	"math"

	"github.com/inspectd/inspectd/models/preprocess"
)

// OverlayGap is the width in pixels of the separator between the four
// panels of an overlay image.
const OverlayGap = 4

// Grey levels of the overlay background and of the "no mask" panel.
const (
	overlayBackgroundGrey = 40
	noMaskBackgroundGrey  = 96
	noMaskInkGrey         = 220
)

// grey returns an opaque grey colour.
func grey(v uint8) color.RGBA { return color.RGBA{v, v, v, 255} }

// heatScale returns the heatmap value shown at the top of the colour map
// for a category: the larger of its threshold and its highest image score,
// so that one colour means one score across the category's overlays and
// heatmaps below the threshold never look saturated.
func (c *CategoryReport) heatScale() float64 {
	hi := math.Max(c.Threshold, c.MaxScore)
	if !(hi > 0) || hi > 1 {
		hi = 1
	}
	return hi
}

// renderOverlay draws the four panels of one candidate side by side at the
// heatmap size: the original image resized, the aligned image, the heatmap
// (colour map from 0 to hi), and the ground-truth mask in the aligned frame
// (or a grey "NO MASK" panel when the category has none). The image and
// mask are decoded again from disk.
func (c *CategoryReport) renderOverlay(cand candidate, hi float64) (*image.RGBA, error) {
	w, h := c.heatW, c.heatH
	img, mask, err := cand.res.Sample.Load()
	if err != nil {
		return nil, err
	}
	out := image.NewRGBA(image.Rect(0, 0, 4*w+3*OverlayGap, h))
	for i := 0; i < len(out.Pix); i += 4 {
		out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = overlayBackgroundGrey, overlayBackgroundGrey, overlayBackgroundGrey, 255
	}
	buf := make([]float32, 3*w*h)
	spec := preprocess.Spec{Width: w, Height: h, Channels: 3}
	if err := preprocess.Fill(buf, img, spec); err != nil {
		return nil, fmt.Errorf("overlay of %s: %w", cand.res.Sample.Path, err)
	}
	blitCHW(out, 0, buf, w, h)
	tr := cand.res.Transform
	if tr != (preprocess.Transform{}) {
		b := img.Bounds()
		warp := tr.Pixel(b.Dx(), b.Dy())
		spec.Warp = &warp
	}
	if err := preprocess.Fill(buf, img, spec); err != nil {
		return nil, fmt.Errorf("overlay of %s: %w", cand.res.Sample.Path, err)
	}
	blitCHW(out, w+OverlayGap, buf, w, h)

	x0 := 2 * (w + OverlayGap)
	for y := range h {
		for x := range w {
			v := float64(cand.heat[y*w+x]) / 65535
			out.SetRGBA(x0+x, y, jet(v/hi))
		}
	}

	x0 = 3 * (w + OverlayGap)
	if mask == nil {
		fillRect(out, image.Rect(x0, 0, x0+w, h), grey(noMaskBackgroundGrey))
		drawNoMask(out, image.Rect(x0, 0, x0+w, h))
		return out, nil
	}
	var mr maskRenderer
	m, err := mr.render(mask, tr, w, h)
	if err != nil {
		return nil, fmt.Errorf("overlay: mask of %s: %w", cand.res.Sample.Path, err)
	}
	for y := range h {
		for x := range w {
			c := color.RGBA{0, 0, 0, 255}
			if m != nil && m[y*w+x] {
				c = color.RGBA{255, 255, 255, 255}
			}
			out.SetRGBA(x0+x, y, c)
		}
	}
	return out, nil
}

// blitCHW copies a planar RGB tensor in [0,1] into dst at column x0.
func blitCHW(dst *image.RGBA, x0 int, t []float32, w, h int) {
	plane := w * h
	for y := range h {
		for x := range w {
			i := y*w + x
			dst.SetRGBA(x0+x, y, color.RGBA{u8(t[i]), u8(t[plane+i]), u8(t[2*plane+i]), 255})
		}
	}
}

// u8 converts a [0,1] value to a byte, clamping.
func u8(v float32) uint8 {
	return uint8(math.Round(float64(min(max(v, 0), 1)) * 255))
}

// jet maps t in [0,1] (clamped) to the classic jet colour map: dark blue,
// blue, cyan, yellow, red, dark red.
func jet(t float64) color.RGBA {
	t = math.Min(math.Max(t, 0), 1)
	ch := func(c float64) uint8 {
		return uint8(math.Round(math.Min(math.Max(1.5-math.Abs(4*t-c), 0), 1) * 255))
	}
	return color.RGBA{ch(3), ch(2), ch(1), 255}
}

// fillRect paints r with c.
func fillRect(dst *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			dst.SetRGBA(x, y, c)
		}
	}
}

// glyph returns a 5×7 bitmap of the letters of "NO MASK" (others blank).
func glyph(r rune) [7]string {
	switch r {
	case 'N':
		return [7]string{"10001", "11001", "10101", "10011", "10001", "10001", "10001"}
	case 'O':
		return [7]string{"01110", "10001", "10001", "10001", "10001", "10001", "01110"}
	case 'M':
		return [7]string{"10001", "11011", "10101", "10101", "10001", "10001", "10001"}
	case 'A':
		return [7]string{"01110", "10001", "10001", "11111", "10001", "10001", "10001"}
	case 'S':
		return [7]string{"01111", "10000", "10000", "01110", "00001", "00001", "11110"}
	case 'K':
		return [7]string{"10001", "10010", "10100", "11000", "10100", "10010", "10001"}
	}
	return [7]string{}
}

// drawNoMask marks a blank panel: a diagonal cross, and the words
// "NO MASK" centred when the panel is wide enough to hold them.
func drawNoMask(dst *image.RGBA, r image.Rectangle) {
	w, h := r.Dx(), r.Dy()
	for i := range max(w, h) {
		x := r.Min.X + i*w/max(w, h)
		y := r.Min.Y + i*h/max(w, h)
		dst.SetRGBA(x, y, grey(noMaskInkGrey))
		dst.SetRGBA(r.Max.X-1-(x-r.Min.X), y, grey(noMaskInkGrey))
	}
	const text = "NO MASK"
	textW := 6*len(text) - 1     // 5 px glyphs, 1 px spacing
	scale := min(w*2/3/textW, 4) // about two thirds of the panel's width
	if scale < 1 || 9*scale > h {
		return
	}
	x0 := r.Min.X + (w-textW*scale)/2
	y0 := r.Min.Y + (h-7*scale)/2
	fillRect(dst, image.Rect(x0-scale, y0-scale, x0+(textW+1)*scale, y0+8*scale), grey(noMaskBackgroundGrey))
	for k, ch := range text {
		g := glyph(ch)
		for gy, row := range g {
			for gx, bit := range row {
				if bit != '1' {
					continue
				}
				px, py := x0+(6*k+gx)*scale, y0+gy*scale
				fillRect(dst, image.Rect(px, py, px+scale, py+scale), grey(noMaskInkGrey))
			}
		}
	}
}

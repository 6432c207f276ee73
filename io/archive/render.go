package archive

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"math"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// The colour (R, G, B) that outlines the defect regions in the overlay:
// magenta does not occur in the heatmap's colour map.
const (
	boxR = 255
	boxG = 0
	boxB = 255
)

// renderer converts frames to RGBA and encodes the JPEGs, reusing its
// buffers between results (one frame's RGBA copy and the encoded files).
type renderer struct {
	rgba *image.RGBA
	out  [2]jpegBuffer // frame, overlay
	lut  *[256]blend
}

// jpegBuffer is a bytes.Buffer with a no-op Flush, which image/jpeg writes
// to directly instead of through a fresh bufio.Writer.
type jpegBuffer struct{ bytes.Buffer }

// Flush does nothing.
func (*jpegBuffer) Flush() error { return nil }

// blend is the colour-map entry for one heatmap level: a pixel becomes
// (pixel·keep + add) / 256 per channel.
type blend struct {
	keep uint32
	add  [3]uint32
}

// frame converts src into the renderer's RGBA buffer and encodes it.
func (rd *renderer) frame(src image.Image, quality int) ([]byte, error) {
	if src.Bounds().Empty() {
		return nil, errors.New("the frame is empty")
	}
	img := rd.toRGBA(src)
	rd.out[0].Reset()
	if err := jpeg.Encode(&rd.out[0], img, &jpeg.Options{Quality: quality}); err != nil {
		return nil, err
	}
	return rd.out[0].Bytes(), nil
}

// overlay blends the heatmap of s over the ROI of the frame converted by the
// last call to frame (in place), outlines the regions (frame coordinates)
// and encodes the result.
func (rd *renderer) overlay(s *inspection.Snapshot, regions []inspection.Region, hi float64, quality int) ([]byte, error) {
	img := rd.rgba
	if img == nil {
		return nil, errors.New("no frame")
	}
	if err := blendHeatmap(img, s.ROI, s.Transform, s.Heatmap, hi, rd.colours()); err != nil {
		return nil, err
	}
	drawBoxes(img, regions)
	rd.out[1].Reset()
	if err := jpeg.Encode(&rd.out[1], img, &jpeg.Options{Quality: quality}); err != nil {
		return nil, err
	}
	return rd.out[1].Bytes(), nil
}

// toRGBA copies src into the reused RGBA buffer, with src's bounds.
func (rd *renderer) toRGBA(src image.Image) *image.RGBA {
	b := src.Bounds()
	n := 4 * b.Dx() * b.Dy()
	if rd.rgba == nil || cap(rd.rgba.Pix) < n {
		rd.rgba = &image.RGBA{Pix: make([]uint8, n)}
	}
	dst := rd.rgba
	dst.Pix, dst.Stride, dst.Rect = dst.Pix[:n], 4*b.Dx(), b
	switch s := src.(type) {
	case *preprocess.BGR:
		bgrToRGBA(dst, s)
	case *image.RGBA:
		w := 4 * b.Dx()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			copy(dst.Pix[(y-b.Min.Y)*dst.Stride:][:w], s.Pix[s.PixOffset(b.Min.X, y):][:w])
		}
	default:
		draw.Draw(dst, b, src, b.Min, draw.Src)
	}
	return dst
}

// bgrToRGBA converts src into dst, which has the same bounds.
func bgrToRGBA(dst *image.RGBA, src *preprocess.BGR) {
	b := src.Rect
	w := b.Dx()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		s := src.Pix[src.PixOffset(b.Min.X, y):][: 3*w : 3*w]
		d := dst.Pix[(y-b.Min.Y)*dst.Stride:][: 4*w : 4*w]
		for len(s) >= 3 && len(d) >= 4 {
			d[0], d[1], d[2], d[3] = s[2], s[1], s[0], 255
			s, d = s[3:], d[4:]
		}
	}
}

// blendHeatmap colours the pixels of roi (frame coordinates; empty means the
// whole frame) by the heatmap value that the model computed for them.
//
// The engine prepared the model input with preprocess.Fill on the ROI crop
// (cw×ch) with Warp = t.Pixel(cw, ch): heatmap pixel (x, y) (W×H) was
// sampled at crop grid point g = ((x+0.5)·cw/W − 0.5, (y+0.5)·ch/H − 0.5),
// warped to crop pixel p = Warp·g. Here every crop pixel p is mapped back:
// g = Warp⁻¹·p, x = (g.x+0.5)·W/cw − 0.5, and the heatmap is sampled there
// bilinearly. Pixels whose x or y falls outside the heatmap (the model never
// saw them, e.g. corners rotated out of view) are left unchanged.
func blendHeatmap(img *image.RGBA, roi image.Rectangle, t preprocess.Transform, hm *preprocess.Heatmap, hi float64, lut *[256]blend) error {
	W, H := hm.Width, hm.Height
	if W <= 0 || H <= 0 || len(hm.Values) != W*H {
		return fmt.Errorf("heatmap %dx%d has %d values", W, H, len(hm.Values))
	}
	if roi.Empty() {
		roi = img.Rect
	}
	cw, ch := roi.Dx(), roi.Dy()
	inv, err := t.Pixel(cw, ch).Invert()
	if err != nil {
		return fmt.Errorf("alignment %+v: %w", t, err)
	}
	sx, sy := float64(cw)/float64(W), float64(ch)/float64(H)
	// m maps crop pixels to heatmap pixels.
	m := preprocess.Affine{
		{inv[0][0] / sx, inv[0][1] / sx, (inv[0][2]+0.5)/sx - 0.5},
		{inv[1][0] / sy, inv[1][1] / sy, (inv[1][2]+0.5)/sy - 0.5},
	}
	area := roi.Intersect(img.Rect)
	if area.Empty() {
		return nil
	}
	maxU, maxV := float64(W)-0.5, float64(H)-0.5
	scale := float32(255 / hi)
	vals := hm.Values
	for y := area.Min.Y; y < area.Max.Y; y++ {
		u, v := m.Apply(float64(area.Min.X-roi.Min.X), float64(y-roi.Min.Y))
		row := img.Pix[img.PixOffset(area.Min.X, y):][:4*area.Dx()]
		for i := 0; i+3 < len(row); i += 4 {
			if u >= -0.5 && u <= maxU && v >= -0.5 && v <= maxV {
				fu, fv := math.Floor(u), math.Floor(v)
				xi, yi := int(fu), int(fv)
				fx, fy := float32(u-fu), float32(v-fv)
				x0, x1 := max(xi, 0), min(xi+1, W-1)
				y0, y1 := max(yi, 0), min(yi+1, H-1)
				r0, r1 := vals[y0*W:][:W], vals[y1*W:][:W]
				val := (r0[x0]*(1-fx)+r0[x1]*fx)*(1-fy) + (r1[x0]*(1-fx)+r1[x1]*fx)*fy
				n := val * scale
				q := 0
				if n >= 255 {
					q = 255
				} else if n > 0 { // false for NaN
					q = int(n + 0.5)
				}
				c := &lut[q]
				p := row[i : i+3 : i+3]
				p[0] = uint8((uint32(p[0])*c.keep + c.add[0]) >> 8)
				p[1] = uint8((uint32(p[1])*c.keep + c.add[1]) >> 8)
				p[2] = uint8((uint32(p[2])*c.keep + c.add[2]) >> 8)
			}
			u += m[0][0]
			v += m[1][0]
		}
	}
	return nil
}

// colours returns the blend table: level q in [0, 255] (heatmap value over
// the scale) gets the jet colour of 0.875·q/255 (dark blue to pure red) at
// an opacity from 25% (cold) to 70% (hot), so the part stays readable
// where nothing was found.
func (rd *renderer) colours() *[256]blend {
	if rd.lut != nil {
		return rd.lut
	}
	rd.lut = new([256]blend)
	for q := range rd.lut {
		n := float64(q) / 255
		t := 0.875 * n
		alpha := uint32(math.Round((0.25 + 0.45*n) * 256))
		e := &rd.lut[q]
		e.keep = 256 - alpha
		for c, centre := range []float64{3, 2, 1} { // R, G, B
			v := math.Min(math.Max(1.5-math.Abs(4*t-centre), 0), 1)
			e.add[c] = uint32(math.Round(v*255)) * alpha
		}
	}
	return rd.lut
}

// drawBoxes outlines each region (frame coordinates) just outside its box,
// so that the defect itself stays visible.
func drawBoxes(img *image.RGBA, regions []inspection.Region) {
	th := max(3, min(img.Rect.Dx(), img.Rect.Dy())/360)
	for _, g := range regions {
		if g.Width < 0 || g.Height < 0 {
			continue
		}
		in := image.Rect(g.X, g.Y, g.X+g.Width, g.Y+g.Height)
		out := in.Inset(-th)
		for _, r := range []image.Rectangle{
			{out.Min, image.Pt(out.Max.X, in.Min.Y)},                      // top
			{image.Pt(out.Min.X, in.Max.Y), out.Max},                      // bottom
			{image.Pt(out.Min.X, in.Min.Y), image.Pt(in.Min.X, in.Max.Y)}, // left
			{image.Pt(in.Max.X, in.Min.Y), image.Pt(out.Max.X, in.Max.Y)}, // right
		} {
			fill(img, r.Intersect(img.Rect))
		}
	}
}

func fill(img *image.RGBA, r image.Rectangle) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := img.Pix[img.PixOffset(r.Min.X, y):][:4*r.Dx()]
		for i := 0; i < len(row); i += 4 {
			row[i], row[i+1], row[i+2], row[i+3] = boxR, boxG, boxB, 255
		}
	}
}

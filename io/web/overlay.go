package web

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"sync"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Overlay rendering parameters.
const (
	// overlayMaxSide bounds the longer side of the rendered image; larger
	// ROIs are shown downscaled (nearest neighbour), which keeps the JPEG
	// small enough for a panel that reloads it every second.
	overlayMaxSide = 1280
	// overlayQuality is the JPEG quality of /api/latest.jpg.
	overlayQuality = 80
	// defaultPixelThreshold is used when a result carries none (ERROR).
	defaultPixelThreshold = 0.5
)

// boxColour is the colour of the defect region rectangles: magenta, which
// the jet colour map never produces.
var boxColour = [3]uint8{255, 0, 255}

// snapshotEntry is the newest snapshot with the result it belongs to; the
// JPEG is rendered by the first request that needs it and then kept, and
// the frame is let go.
type snapshotEntry struct {
	res  inspection.Result // Snapshot nil
	once sync.Once
	snap *inspection.Snapshot // nil after rendering
	jpeg []byte
	err  error
}

// info describes the entry's part.
func (e *snapshotEntry) info() *imageInfo {
	return &imageInfo{ResultID: e.res.ID, PartID: e.res.PartID, Verdict: e.res.Verdict, VerdictTime: e.res.VerdictTime}
}

// JPEG returns the rendered overlay, rendering it on the first call.
func (e *snapshotEntry) JPEG() ([]byte, error) {
	e.once.Do(func() {
		img, err := renderOverlay(e.snap, e.res.Regions, e.res.PixelThreshold, overlayMaxSide)
		e.snap = nil
		if err != nil {
			e.err = fmt.Errorf("overlay of %s: %w", e.res.ID, err)
			return
		}
		var buf bytes.Buffer
		buf.Grow(img.Bounds().Dx() * img.Bounds().Dy() / 4)
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: overlayQuality}); err != nil {
			e.err = fmt.Errorf("overlay of %s: jpeg: %w", e.res.ID, err)
			return
		}
		e.jpeg = buf.Bytes()
	})
	return e.jpeg, e.err
}

// renderOverlay draws the inspected ROI of the snapshot's frame, in the
// frame's own pose, with the heatmap blended over it and the defect regions
// (frame pixels) outlined. The longer side is at most maxSide pixels (0:
// unbounded).
//
// The heatmap lives in the aligned model-input frame: heatmap pixel h was
// computed from crop coordinate W·u with u = (h+½)·s − ½, where W is
// Transform.Pixel(roi size) and s the crop-to-input scale (see
// preprocess.Preparer.Fill). Every output pixel is therefore mapped back
// through W⁻¹ and the scale into the heatmap and sampled bilinearly; one
// affine map per image, stepped incrementally per pixel. Frame pixels
// that the aligned model input did not see (rotated corners) get no
// overlay. Values below the pixel threshold are not drawn; above it the
// colour runs through the hot half of a jet map and the opacity grows
// from 0.45 at the threshold to 0.8 at twice the threshold (or 1).
func renderOverlay(s *inspection.Snapshot, regions []inspection.Region, pixelThreshold float64, maxSide int) (*image.RGBA, error) {
	if s == nil || s.Frame == nil {
		return nil, errors.New("snapshot has no frame")
	}
	fb := s.Frame.Bounds()
	roi := s.ROI
	if roi.Empty() {
		roi = fb
	}
	if !roi.In(fb) {
		return nil, fmt.Errorf("ROI %v lies outside the %v frame", roi, fb)
	}
	cw, ch := roi.Dx(), roi.Dy()
	ow, oh := cw, ch
	if maxSide > 0 && max(cw, ch) > maxSide {
		k := float64(maxSide) / float64(max(cw, ch))
		ow, oh = max(1, int(math.Round(float64(cw)*k))), max(1, int(math.Round(float64(ch)*k)))
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	// Output pixel o covers crop coordinate c = (o+½)·f − ½.
	fx, fy := float64(cw)/float64(ow), float64(ch)/float64(oh)
	xs := make([]int, ow) // output column → frame column (nearest)
	for ox := range ow {
		xs[ox] = roi.Min.X + min(int((float64(ox)+0.5)*fx), cw-1)
	}
	for oy := range oh {
		y := roi.Min.Y + min(int((float64(oy)+0.5)*fy), ch-1)
		copyRow(out.Pix[oy*out.Stride:oy*out.Stride+4*ow], s.Frame, xs, y)
	}
	if hm := s.Heatmap; hm != nil && hm.Width > 0 && hm.Height > 0 && len(hm.Values) == hm.Width*hm.Height {
		if err := blendHeatmap(out, hm, s.Transform, cw, ch, fx, fy, pixelThreshold); err != nil {
			return nil, err
		}
	}
	for _, r := range regions {
		// Region in output pixels, outlined just outside its bounding box.
		x0 := int(math.Floor(float64(r.X-roi.Min.X) / fx))
		y0 := int(math.Floor(float64(r.Y-roi.Min.Y) / fy))
		x1 := int(math.Ceil(float64(r.X+r.Width-roi.Min.X) / fx))
		y1 := int(math.Ceil(float64(r.Y+r.Height-roi.Min.Y) / fy))
		drawBox(out, image.Rect(x0, y0, x1, y1), max(2, min(ow, oh)/240))
	}
	return out, nil
}

// copyRow writes frame row y, sampled at columns xs, into dst (RGBA).
func copyRow(dst []uint8, frame image.Image, xs []int, y int) {
	switch f := frame.(type) {
	case *preprocess.BGR:
		row := f.Pix[f.PixOffset(f.Rect.Min.X, y):]
		for i, x := range xs {
			j := 3 * (x - f.Rect.Min.X)
			d := dst[4*i : 4*i+4 : 4*i+4]
			d[0], d[1], d[2], d[3] = row[j+2], row[j+1], row[j], 255
		}
	case *image.RGBA:
		row := f.Pix[f.PixOffset(f.Rect.Min.X, y):]
		for i, x := range xs {
			j := 4 * (x - f.Rect.Min.X)
			d := dst[4*i : 4*i+4 : 4*i+4]
			d[0], d[1], d[2], d[3] = row[j], row[j+1], row[j+2], 255
		}
	case *image.Gray:
		row := f.Pix[f.PixOffset(f.Rect.Min.X, y):]
		for i, x := range xs {
			v := row[x-f.Rect.Min.X]
			d := dst[4*i : 4*i+4 : 4*i+4]
			d[0], d[1], d[2], d[3] = v, v, v, 255
		}
	default:
		for i, x := range xs {
			r, g, b, _ := frame.At(x, y).RGBA()
			d := dst[4*i : 4*i+4 : 4*i+4]
			d[0], d[1], d[2], d[3] = uint8(r>>8), uint8(g>>8), uint8(b>>8), 255
		}
	}
}

// heatLUT maps a position above the pixel threshold to colour and opacity.
type heatLUT [256]struct {
	c [3]float32
	a float32
}

// newHeatLUT fills the hot half of the jet map (green-yellow → red → dark
// red) with opacity rising from 0.45 to 0.8.
func newHeatLUT() *heatLUT {
	var l heatLUT
	for i := range l {
		t := float64(i) / 255
		l[i].c = jet(0.5 + 0.5*t)
		l[i].a = float32(0.45 + 0.35*t)
	}
	return &l
}

// jet maps t in [0,1] to the classic jet colour map (dark blue, blue, cyan,
// yellow, red, dark red), as 0…255 floats.
func jet(t float64) [3]float32 {
	t = math.Min(math.Max(t, 0), 1)
	ch := func(c float64) float32 {
		return float32(math.Round(math.Min(math.Max(1.5-math.Abs(4*t-c), 0), 1) * 255))
	}
	return [3]float32{ch(3), ch(2), ch(1)}
}

// blendHeatmap blends hm over out, mapping each output pixel back into the
// aligned model-input frame (see renderOverlay).
func blendHeatmap(out *image.RGBA, hm *preprocess.Heatmap, t preprocess.Transform, cw, ch int, fx, fy, pt float64) error {
	inv := preprocess.IdentityAffine()
	if !t.IsIdentity() {
		var err error
		if inv, err = t.Pixel(cw, ch).Invert(); err != nil {
			return fmt.Errorf("alignment %+v: %w", t, err)
		}
	}
	hw, hh := hm.Width, hm.Height
	// h = (W⁻¹·c + ½)/s − ½ with c = (o+½)·f − ½, as one affine map of o.
	sc := [2]float64{float64(cw) / float64(hw), float64(ch) / float64(hh)}
	var a preprocess.Affine
	for i := range 2 {
		a[i][0] = inv[i][0] * fx / sc[i]
		a[i][1] = inv[i][1] * fy / sc[i]
		a[i][2] = (inv[i][0]*(0.5*fx-0.5)+inv[i][1]*(0.5*fy-0.5)+inv[i][2]+0.5)/sc[i] - 0.5
	}
	if !(pt > 0 && pt < 1) {
		pt = defaultPixelThreshold
	}
	top := math.Min(1, 2*pt)
	span := float32(top - pt)
	lut := newHeatLUT()
	ptf := float32(pt)
	maxX, maxY := float64(hw)-0.5, float64(hh)-0.5
	b := out.Bounds()
	for oy := range b.Dy() {
		u := a[0][1]*float64(oy) + a[0][2]
		v := a[1][1]*float64(oy) + a[1][2]
		row := out.Pix[oy*out.Stride:]
		for ox := range b.Dx() {
			if u >= -0.5 && v >= -0.5 && u <= maxX && v <= maxY {
				val := sampleHeat(hm, u, v)
				if val >= ptf { // false for NaN
					k := int(min((val-ptf)/span, 1) * 255)
					e := &lut[k]
					d := row[4*ox : 4*ox+3 : 4*ox+3]
					for c := range 3 {
						d[c] = uint8(float32(d[c])*(1-e.a) + e.c[c]*e.a + 0.5)
					}
				}
			}
			u += a[0][0]
			v += a[1][0]
		}
	}
	return nil
}

// sampleHeat samples hm bilinearly at (x, y), replicating the border.
func sampleHeat(hm *preprocess.Heatmap, x, y float64) float32 {
	x0, y0 := int(math.Floor(x)), int(math.Floor(y))
	tx, ty := float32(x-float64(x0)), float32(y-float64(y0))
	x1, y1 := min(x0+1, hm.Width-1), min(y0+1, hm.Height-1)
	x0, y0 = max(x0, 0), max(y0, 0)
	r0, r1 := hm.Values[y0*hm.Width:], hm.Values[y1*hm.Width:]
	top := r0[x0]*(1-tx) + r0[x1]*tx
	bot := r1[x0]*(1-tx) + r1[x1]*tx
	return top*(1-ty) + bot*ty
}

// drawBox outlines r with lines of width w drawn just outside it, clipped
// to the image.
func drawBox(out *image.RGBA, r image.Rectangle, w int) {
	outer := image.Rect(r.Min.X-w, r.Min.Y-w, r.Max.X+w, r.Max.Y+w)
	for _, band := range []image.Rectangle{
		image.Rect(outer.Min.X, outer.Min.Y, outer.Max.X, r.Min.Y), // top
		image.Rect(outer.Min.X, r.Max.Y, outer.Max.X, outer.Max.Y), // bottom
		image.Rect(outer.Min.X, r.Min.Y, r.Min.X, r.Max.Y),         // left
		image.Rect(r.Max.X, r.Min.Y, outer.Max.X, r.Max.Y),         // right
	} {
		band = band.Intersect(out.Bounds())
		for y := band.Min.Y; y < band.Max.Y; y++ {
			for x := band.Min.X; x < band.Max.X; x++ {
				i := out.PixOffset(x, y)
				out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = boxColour[0], boxColour[1], boxColour[2], 255
			}
		}
	}
}

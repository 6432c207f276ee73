// Package preprocess turns a camera frame (any Go image) into a model input
// tensor: crop, optional alignment warp, resize, colour conversion and
// scaling to [0,1], in one resampling pass. Training and the daemon both use
// it, so a model always sees frames prepared the same way.
//
// Geometry: the output is Width×Height pixels, planar (CHW) float32. Output
// pixel centres map to source coordinates through the half-pixel convention
// (as OpenCV's resize and ONNX Resize with half_pixel), then through an
// optional affine matrix in source-pixel coordinates. Sampling is bilinear
// with replicated borders, after an f×f block average when the crop is at
// least twice the output size (see Preparer.Fill).
package preprocess

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
)

// Affine is a 2×3 matrix mapping output coordinates to source coordinates:
// [xs, ys]ᵀ = A·[x, y, 1]ᵀ, in pixels with centres at integers.
type Affine [2][3]float64

// IdentityAffine returns the affine transform that changes nothing.
func IdentityAffine() Affine { return Affine{{1, 0, 0}, {0, 1, 0}} }

// Spec describes the wanted tensor.
type Spec struct {
	Width, Height int
	// Channels is 3 (RGB planes) or 1 (grey: 0.299 R + 0.587 G + 0.114 B).
	Channels int
	// Crop selects the source region; empty means the whole image.
	Crop image.Rectangle
	// Warp maps the resized crop's own pixel grid (Width×Height, before
	// resizing: crop size) to the crop, e.g. the alignment transform; nil
	// means identity.
	Warp *Affine
}

// Len is the number of floats the tensor needs.
func (s Spec) Len() int { return s.Width * s.Height * s.Channels }

// Preparer fills tensors from images. It keeps a scratch buffer between
// calls so that steady-state preparation allocates nothing; use one per
// goroutine.
type Preparer struct {
	scratch []float32
}

// Fill writes src, prepared per spec, into dst (length spec.Len()). After
// the first call for a given frame size it allocates nothing.
//
// Large reductions first average fx×fy blocks (along each axis f =
// floor(scale) where the crop is at least twice the output size; a crop
// stretched more one way than the other is averaged more that way), then
// sample bilinearly from that reduced image, so that every source pixel
// contributes and fine defects and textures are not aliased away.
func (p *Preparer) Fill(dst []float32, src image.Image, spec Spec) error {
	if spec.Width <= 0 || spec.Height <= 0 {
		return fmt.Errorf("preprocess: output size %dx%d must be positive", spec.Width, spec.Height)
	}
	if spec.Channels != 1 && spec.Channels != 3 {
		return fmt.Errorf("preprocess: %d channels, want 1 or 3", spec.Channels)
	}
	if len(dst) != spec.Len() {
		return fmt.Errorf("preprocess: tensor has %d values, want %d", len(dst), spec.Len())
	}
	crop := spec.Crop
	if crop.Empty() {
		crop = src.Bounds()
	}
	if !crop.In(src.Bounds()) {
		return fmt.Errorf("preprocess: crop %v lies outside the %v frame", crop, src.Bounds())
	}
	cw, ch := crop.Dx(), crop.Dy()
	sx, sy := float64(cw)/float64(spec.Width), float64(ch)/float64(spec.Height)
	fx, fy := max(1, int(math.Floor(sx))), max(1, int(math.Floor(sy)))
	rw, rh := (cw+fx-1)/fx, (ch+fy-1)/fy
	need := 3 * rw * rh
	if cap(p.scratch) < need {
		p.scratch = make([]float32, need)
	}
	red := p.scratch[:need]
	reduce(red, src, crop, fx, fy, rw, rh)

	warp := IdentityAffine()
	if spec.Warp != nil {
		warp = *spec.Warp
	}
	// Output (x, y) → crop grid u = (x+0.5)·sx − 0.5 → warp → reduced grid
	// r = (u − (f−1)/2) / f, with f = fx for the first coordinate and fy
	// for the second.
	var a Affine
	for i, f := range [2]int{fx, fy} {
		c0, ff := (float64(f)-1)/2, float64(f)
		a[i][0] = warp[i][0] * sx / ff
		a[i][1] = warp[i][1] * sy / ff
		a[i][2] = (warp[i][0]*(0.5*sx-0.5) + warp[i][1]*(0.5*sy-0.5) + warp[i][2] - c0) / ff
	}
	plane := rw * rh
	out := spec.Width * spec.Height
	rr, gg, bb := red[:plane], red[plane:2*plane], red[2*plane:]
	for y := range spec.Height {
		// u, v advance by a[·][0] per output pixel along the row.
		u := a[0][1]*float64(y) + a[0][2]
		v := a[1][1]*float64(y) + a[1][2]
		for x := range spec.Width {
			xi, yi := floor(u), floor(v)
			fx, fy := float32(u-float64(xi)), float32(v-float64(yi))
			var x0, x1, y0, y1 int
			if xi >= 0 && xi+1 < rw && yi >= 0 && yi+1 < rh {
				x0, x1, y0, y1 = xi, xi+1, yi, yi+1
			} else {
				x0, x1 = min(max(xi, 0), rw-1), min(max(xi+1, 0), rw-1)
				y0, y1 = min(max(yi, 0), rh-1), min(max(yi+1, 0), rh-1)
			}
			i00, i10, i01, i11 := y0*rw+x0, y0*rw+x1, y1*rw+x0, y1*rw+x1
			w00, w10, w01, w11 := (1-fx)*(1-fy), fx*(1-fy), (1-fx)*fy, fx*fy
			o := y*spec.Width + x
			r := rr[i00]*w00 + rr[i10]*w10 + rr[i01]*w01 + rr[i11]*w11
			g := gg[i00]*w00 + gg[i10]*w10 + gg[i01]*w01 + gg[i11]*w11
			b := bb[i00]*w00 + bb[i10]*w10 + bb[i01]*w01 + bb[i11]*w11
			if spec.Channels == 3 {
				dst[o], dst[out+o], dst[2*out+o] = r, g, b
			} else {
				dst[o] = 0.299*r + 0.587*g + 0.114*b
			}
			u += a[0][0]
			v += a[1][0]
		}
	}
	return nil
}

// floor is math.Floor for values well inside the int range, without the
// float round trip.
func floor(f float64) int {
	i := int(f)
	if float64(i) > f {
		i--
	}
	return i
}

// Fill is a convenience for one-off preparation (it allocates a scratch
// buffer); hot paths keep a Preparer.
func Fill(dst []float32, src image.Image, spec Spec) error {
	var p Preparer
	return p.Fill(dst, src, spec)
}

// reduce averages fx×fy blocks of the crop into dst (3 planes of rw×rh,
// values scaled to [0,1]); blocks cut by the crop's edge average the
// pixels they have.
func reduce(dst []float32, src image.Image, crop image.Rectangle, fx, fy, rw, rh int) {
	plane := rw * rh
	var pix []uint8
	var stride, bpp, origin int
	switch im := src.(type) {
	case *image.RGBA:
		pix, stride, bpp, origin = im.Pix, im.Stride, 4, im.PixOffset(crop.Min.X, crop.Min.Y)
	case *image.NRGBA:
		pix, stride, bpp, origin = im.Pix, im.Stride, 4, im.PixOffset(crop.Min.X, crop.Min.Y)
	case *image.Gray:
		pix, stride, bpp, origin = im.Pix, im.Stride, 1, im.PixOffset(crop.Min.X, crop.Min.Y)
	case *BGR:
		pix, stride, bpp, origin = im.Pix, im.Stride, 3, im.PixOffset(crop.Min.X, crop.Min.Y)
	}
	cw, ch := crop.Dx(), crop.Dy()
	rr, gg, bb := dst[:plane], dst[plane:2*plane], dst[2*plane:]
	if fx == 1 && fy == 1 && bpp == 4 {
		// Same size: a straight conversion, the common case for frames
		// already at the model size and for the template.
		const inv = 1.0 / 255
		for y := range ch {
			line := pix[origin+y*stride : origin+y*stride+4*cw]
			r, g, b := rr[y*cw:(y+1)*cw], gg[y*cw:(y+1)*cw], bb[y*cw:(y+1)*cw]
			for x := range r {
				r[x] = float32(line[4*x]) * inv
				g[x] = float32(line[4*x+1]) * inv
				b[x] = float32(line[4*x+2]) * inv
			}
		}
		return
	}
	clear(dst)
	for y := range ch {
		row := (y / fy) * rw
		switch bpp {
		case 3, 4:
			// RGBA: red first; camera frames (BGR): blue first.
			ri, bi := 0, 2
			if bpp == 3 {
				ri, bi = 2, 0
			}
			line := pix[origin+y*stride : origin+y*stride+bpp*cw]
			for rx := range rw {
				var r, g, b float32
				for x := rx * fx; x < min(rx*fx+fx, cw); x++ {
					px := line[bpp*x : bpp*x+3]
					r += float32(px[ri])
					g += float32(px[1])
					b += float32(px[bi])
				}
				rr[row+rx] += r
				gg[row+rx] += g
				bb[row+rx] += b
			}
		case 1:
			line := pix[origin+y*stride : origin+y*stride+cw]
			for rx := range rw {
				var v float32
				for x := rx * fx; x < min(rx*fx+fx, cw); x++ {
					v += float32(line[x])
				}
				rr[row+rx] += v
				gg[row+rx] += v
				bb[row+rx] += v
			}
		default:
			for x := range cw {
				c := color.RGBAModel.Convert(src.At(crop.Min.X+x, crop.Min.Y+y)).(color.RGBA)
				i := row + x/fx
				rr[i] += float32(c.R)
				gg[i] += float32(c.G)
				bb[i] += float32(c.B)
			}
		}
	}
	for ry := range rh {
		bh := min(fy, ch-ry*fy)
		for rx := range rw {
			bw := min(fx, cw-rx*fx)
			inv := 1 / (255 * float32(bw*bh))
			i := ry*rw + rx
			dst[i] *= inv
			dst[plane+i] *= inv
			dst[2*plane+i] *= inv
		}
	}
}

// Invert returns the inverse affine transform. It fails when the linear
// part is singular (or NaN), e.g. a zero scale.
func (a Affine) Invert() (Affine, error) {
	p, q, r, s := a[0][0], a[0][1], a[1][0], a[1][1]
	det := p*s - q*r
	if math.Abs(det) < 1e-12 || math.IsNaN(det) {
		return Affine{}, errors.New("preprocess: affine transform is singular")
	}
	ip, iq, ir, is := s/det, -q/det, -r/det, p/det
	return Affine{
		{ip, iq, -(ip*a[0][2] + iq*a[1][2])},
		{ir, is, -(ir*a[0][2] + is*a[1][2])},
	}, nil
}

package preprocess

import (
	"errors"
	"math"
)

// Transform is an alignment result: the spatial-transformer parameters
// predicted by the image matching module. Tx and Ty are in normalised
// [-1, 1] image coordinates, Theta in radians (see [AffineMatrix] for the
// convention). The zero Transform is the identity.
type Transform struct {
	Tx, Ty, Theta float64
}

// IsIdentity reports whether t changes nothing.
func (t Transform) IsIdentity() bool { return t == Transform{} }

// Degrees returns θ in degrees.
func (t Transform) Degrees() float64 { return t.Theta * 180 / math.Pi }

// Pixel returns the transform as a matrix mapping output to source pixel
// coordinates for an image of w×h pixels ([PixelAffine]).
func (t Transform) Pixel(w, h int) Affine {
	return PixelAffine(t.Tx, t.Ty, t.Theta, w, h)
}

// Inverse returns the transform that undoes t for an image of w×h pixels:
// warping by t and then by the inverse is the identity. In pixel-scaled
// coordinates p = (x·W/2, y·H/2) the matrix of t is a true rotation R(θ)
// plus T = (tx·W/2, ty·H/2); its inverse is R(−θ), −R(−θ)T.
func (t Transform) Inverse(w, h int) Transform {
	tx, ty := t.Tx*float64(w)/2, t.Ty*float64(h)/2
	c, s := math.Cos(t.Theta), math.Sin(t.Theta)
	ix := -(c*tx + s*ty)
	iy := -(-s*tx + c*ty)
	return Transform{Tx: ix * 2 / float64(w), Ty: iy * 2 / float64(h), Theta: -t.Theta}
}

// AffineMatrix returns the 2×3 matrix A of the transform (tx, ty, θ) for an
// image of width×height pixels, in the normalised coordinates of PyTorch's
// affine_grid (x, y ∈ [-1, 1], x along the width):
//
//	[x_s]   [ cosθ      -sinθ·H/W   tx ] [x_o]
//	[y_s] = [ sinθ·W/H    cosθ      ty ] [y_o]
//	                                     [ 1 ]
//
// i.e. I_M(x_o, y_o) = I(x_s, y_s): a rotation by θ radians (clockwise on
// screen, since y points down) about the image centre, in pixel-aspect-correct
// coordinates so that it is a true rotation also when H ≠ W, followed by a
// translation of (tx·W/2, ty·H/2) pixels. The matrix maps output to input
// coordinates (it is affine_grid's theta), so training warps with
// grid_sample(I, affine_grid(A)) and the daemon warps with [PixelAffine]
// inside [Preparer.Fill]. (0, 0, 0) is the identity.
func AffineMatrix(tx, ty, theta float64, width, height int) [2][3]float64 {
	c, s := math.Cos(theta), math.Sin(theta)
	hw := float64(height) / float64(width)
	return [2][3]float64{
		{c, -s * hw, tx},
		{s / hw, c, ty},
	}
}

// PixelAffine returns the same transform as [AffineMatrix] for an image of
// the given size in pixel coordinates (column, row; pixel centres at
// integers): the matrix M with [col_s, row_s]ᵀ = M·[col_o, row_o, 1]ᵀ.
// Because (tx, ty, θ) are resolution independent, it applies to the
// full-resolution crop as well as to the low-resolution network input.
func PixelAffine(tx, ty, theta float64, width, height int) Affine {
	c, s := math.Cos(theta), math.Sin(theta)
	cx, cy := (float64(width)-1)/2, (float64(height)-1)/2
	dx, dy := tx*float64(width)/2, ty*float64(height)/2
	return Affine{
		{c, -s, cx - c*cx + s*cy + dx},
		{s, c, cy - s*cx - c*cy + dy},
	}
}

// RotShift returns the matrix that maps a source pixel (x, y) of a w×h image
// to its destination after a rotation by deg degrees (counter-clockwise on
// screen, image y pointing down) about the image centre ((w-1)/2, (h-1)/2),
// followed by a shift of (tx, ty) pixels; pixel centres are at integers:
//
//	dst = R·(src − c) + c + t,  R = [cos  sin; −sin  cos]
//
// It is how the data generators (models/synth, models/rto) describe where
// a part lies; the daemon's warp ([PixelAffine]) maps the other way, from
// output to source, and the two are related by [Affine.Invert].
func RotShift(deg, tx, ty float64, w, h int) Affine {
	s, c := math.Sincos(deg * math.Pi / 180)
	cx, cy := float64(w-1)/2, float64(h-1)/2
	return Affine{
		{c, s, cx - c*cx - s*cy + tx},
		{-s, c, cy + s*cx - c*cy + ty},
	}
}

// Apply maps the point (x, y) through a.
func (a Affine) Apply(x, y float64) (float64, float64) {
	return a[0][0]*x + a[0][1]*y + a[0][2], a[1][0]*x + a[1][1]*y + a[1][2]
}

// Heatmap is a per-pixel anomaly map at the model input size, row-major,
// values in [0, 1] (half the cosine distance to the local centre, blurred).
type Heatmap struct {
	Width, Height int
	Values        []float32
	// Outside is the fraction of the input the alignment pulled from
	// outside the ROI (Spec.InsideSpans): content that is not the part.
	// The engine sets the heatmap to 0 there and within a margin around it
	// (SuppressOutside).
	Outside float64
}

// NewHeatmap allocates a w×h heatmap.
func NewHeatmap(w, h int) *Heatmap {
	return &Heatmap{Width: w, Height: h, Values: make([]float32, w*h)}
}

// ToFrame resamples heat — w×h values in the frame Fill produced with warp
// from a cw×ch crop — back into the crop's own frame, on the same w×h grid:
// dst pixel (x, y) is heat sampled bilinearly where the warp took that
// point of the crop, and 0 where the warp left it out of view. With the
// identity warp dst is heat. It fails when the warp cannot be inverted.
func ToFrame(dst, heat []float32, w, h int, warp Affine, cw, ch int) error {
	if len(dst) != w*h || len(heat) != w*h {
		return errors.New("preprocess: ToFrame needs w×h values in and out")
	}
	inv, err := warp.Invert()
	if err != nil {
		return err
	}
	sx, sy := float64(cw)/float64(w), float64(ch)/float64(h)
	for y := range h {
		v := (float64(y)+0.5)*sy - 0.5
		for x := range w {
			// Crop point → where the warp took it in the aligned crop →
			// that point on the heatmap's grid (Fill's mapping, undone).
			xa, ya := inv.Apply((float64(x)+0.5)*sx-0.5, v)
			hx, hy := (xa+0.5)/sx-0.5, (ya+0.5)/sy-0.5
			if !(hx >= -0.5 && hx <= float64(w)-0.5 && hy >= -0.5 && hy <= float64(h)-0.5) {
				dst[y*w+x] = 0
				continue
			}
			x0, y0 := floor(hx), floor(hy)
			fx, fy := float32(hx-float64(x0)), float32(hy-float64(y0))
			c0, c1 := min(max(x0, 0), w-1), min(max(x0+1, 0), w-1) // replicate the edge
			r0, r1 := min(max(y0, 0), h-1)*w, min(max(y0+1, 0), h-1)*w
			dst[y*w+x] = (heat[r0+c0]*(1-fx)+heat[r0+c1]*fx)*(1-fy) + (heat[r1+c0]*(1-fx)+heat[r1+c1]*fx)*fy
		}
	}
	return nil
}

package preprocess

import "math"

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

package preprocess

import (
	"math"
	"testing"
)

func TestAffineConventions(t *testing.T) {
	apply := func(m [2][3]float64, x, y float64) (float64, float64) {
		return m[0][0]*x + m[0][1]*y + m[0][2], m[1][0]*x + m[1][1]*y + m[1][2]
	}
	tests := []struct {
		tx, ty, theta float64
		h, w          int
	}{{0, 0, 0, 128, 128}, {0.1, -0.2, 0.3, 96, 160}, {-0.5, 0.25, -1.2, 512, 1408}, {0, 0, math.Pi / 2, 64, 64}}
	for _, tc := range tests {
		A := AffineMatrix(tc.tx, tc.ty, tc.theta, tc.w, tc.h)
		P := [2][3]float64(PixelAffine(tc.tx, tc.ty, tc.theta, tc.w, tc.h))
		W, H := float64(tc.w), float64(tc.h)
		pts := [][2]float64{{0, 0}, {W - 1, 0}, {3, H - 2}, {W / 3, H / 5}}
		for _, p := range pts {
			// Pixel → normalised (align_corners=False), apply A, back to pixels.
			xn, yn := (2*p[0]+1)/W-1, (2*p[1]+1)/H-1
			xs, ys := apply(A, xn, yn)
			cs, rs := ((xs+1)*W-1)/2, ((ys+1)*H-1)/2
			pc, pr := apply(P, p[0], p[1])
			if math.Abs(cs-pc) > 1e-9 || math.Abs(rs-pr) > 1e-9 {
				t.Fatalf("%+v point %v: normalised path (%g,%g), pixel path (%g,%g)", tc, p, cs, rs, pc, pr)
			}
		}
		// A true rotation in pixels: distances are preserved.
		a0, a1 := apply(P, pts[0][0], pts[0][1])
		b0, b1 := apply(P, pts[2][0], pts[2][1])
		d := math.Hypot(a0-b0, a1-b1)
		if want := math.Hypot(pts[0][0]-pts[2][0], pts[0][1]-pts[2][1]); math.Abs(d-want) > 1e-9 {
			t.Fatalf("%+v: distance %g after transform, want %g", tc, d, want)
		}
	}
	// Identity, and the documented direction: with θ=+90° on a square image the
	// output's top-left corner (−1,−1) samples the input's top-right corner (1,−1).
	if id := AffineMatrix(0, 0, 0, 200, 100); id != [2][3]float64{{1, 0, 0}, {0, 1, 0}} {
		t.Fatalf("identity = %v", id)
	}
	A := AffineMatrix(0, 0, math.Pi/2, 64, 64)
	if xs, ys := apply(A, -1, -1); math.Abs(xs-1) > 1e-12 || math.Abs(ys+1) > 1e-12 {
		t.Fatalf("θ=π/2 maps (−1,−1) to (%g,%g), want (1,−1)", xs, ys)
	}
}

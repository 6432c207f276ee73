package preprocess

import (
	"math"
	"testing"
)

func near(a, b [2][3]float64, tol float64) bool {
	for i := range 2 {
		for j := range 3 {
			if math.Abs(a[i][j]-b[i][j]) > tol {
				return false
			}
		}
	}
	return true
}

// TestRotShiftByHand: a 90° turn about the centre of an 11×11 image, worked
// out on paper: (x, y) → (y, 10 − x), then shifted.
func TestRotShiftByHand(t *testing.T) {
	got := [2][3]float64(RotShift(90, 2, -1, 11, 11))
	if want := [2][3]float64{{0, 1, 2}, {-1, 0, 9}}; !near(got, want, 1e-12) {
		t.Fatalf("RotShift(90°, (2,−1), 11×11) = %v, want %v", got, want)
	}
	// Non-square: the centre of 9×7 is (4, 3) and stays put without shift.
	m := RotShift(33, 0, 0, 9, 7)
	if x, y := m.Apply(4, 3); math.Abs(x-4) > 1e-12 || math.Abs(y-3) > 1e-12 {
		t.Fatalf("centre moved to (%g,%g)", x, y)
	}
}

// TestRotShiftIsTheInverseWarp: the generators' source-to-destination
// matrix and the daemon's output-to-source warp describe the same motion:
// a part placed with RotShift(deg, t) is brought back by PixelAffine of
// the transform with θ = deg and the shift −R(θ)·t in normalised units.
func TestRotShiftIsTheInverseWarp(t *testing.T) {
	for _, c := range []struct {
		deg, tx, ty float64
		w, h        int
	}{{90, 0, 0, 11, 11}, {-17, 3.5, -2, 160, 96}, {120, -10, 4, 48, 112}} {
		th := c.deg * math.Pi / 180
		dx := -(math.Cos(th)*c.tx - math.Sin(th)*c.ty)
		dy := -(math.Sin(th)*c.tx + math.Cos(th)*c.ty)
		warp := PixelAffine(2*dx/float64(c.w), 2*dy/float64(c.h), th, c.w, c.h)
		inv, err := RotShift(c.deg, c.tx, c.ty, c.w, c.h).Invert()
		if err != nil {
			t.Fatal(err)
		}
		if !near([2][3]float64(warp), [2][3]float64(inv), 1e-9) {
			t.Errorf("%+v: PixelAffine %v, RotShift⁻¹ %v", c, warp, inv)
		}
	}
}

// TestTransformInverse: a transform and its inverse compose to the
// identity, on square and non-square images.
func TestTransformInverse(t *testing.T) {
	for _, c := range []struct {
		tr   Transform
		w, h int
	}{{Transform{0.1, -0.2, 0.4}, 64, 64}, {Transform{-0.3, 0.05, -1}, 112, 48}} {
		a := c.tr.Pixel(c.w, c.h)
		b := c.tr.Inverse(c.w, c.h).Pixel(c.w, c.h)
		// a maps output to source; composing a after b: p → a(b(p)).
		var m [2][3]float64
		for i := range 2 {
			m[i][0] = a[i][0]*b[0][0] + a[i][1]*b[1][0]
			m[i][1] = a[i][0]*b[0][1] + a[i][1]*b[1][1]
			m[i][2] = a[i][0]*b[0][2] + a[i][1]*b[1][2] + a[i][2]
		}
		if !near(m, [2][3]float64{{1, 0, 0}, {0, 1, 0}}, 1e-9) {
			t.Errorf("%+v on %dx%d: transform ∘ inverse = %v", c.tr, c.w, c.h, m)
		}
	}
}

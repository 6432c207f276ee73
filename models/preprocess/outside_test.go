package preprocess

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestOutsideMask: no warp, nothing outside; a shift of a quarter of the
// crop pulls the last quarter of the columns from beyond it; a rotation
// about the centre, the corners but not the centre.
func TestOutsideMask(t *testing.T) {
	spec := Spec{Width: 40, Height: 20, Channels: 3}
	if m, found := spec.OutsideMask(80, 40, nil); found != 0 || len(m) != 800 {
		t.Fatalf("no warp: found %v, %d values", found, len(m))
	}
	shift := Affine{{1, 0, 20}, {0, 1, 0}} // output x ↦ source x + 20 in an 80-px crop
	spec.Warp = &shift
	m, found := spec.OutsideMask(80, 40, nil)
	if found != 10*20 { // columns 30..39 of 20 rows
		t.Fatalf("shift: %d pixels outside, want 200", found)
	}
	for y := range 20 {
		for x := range 40 {
			// Output column x samples crop x' = 2x + 0.5 + 20; outside beyond 79.5.
			want := 2*float64(x)+0.5+20 > 79.5
			if m[y*40+x] != want {
				t.Fatalf("shift: (%d,%d) outside = %v, want %v", x, y, m[y*40+x], want)
			}
		}
	}
	rot := Transform{Theta: math.Pi / 6}.Pixel(80, 40)
	spec.Warp = &rot
	m, _ = spec.OutsideMask(80, 40, m)
	if !m[0] || !m[39] || !m[19*40] || !m[19*40+39] || m[10*40+20] {
		t.Errorf("rotation: corners %v %v %v %v (want outside), centre %v (want inside)", m[0], m[39], m[19*40], m[19*40+39], m[10*40+20])
	}
}

// TestSuppressOutside: everything within the margin (Chebyshev) of an
// outside pixel becomes 0, the rest is untouched and its maximum returned.
func TestSuppressOutside(t *testing.T) {
	const w, h = 10, 8
	heat := make([]float64, w*h)
	for i := range heat {
		heat[i] = float64(i) / 100
	}
	outside := make([]bool, w*h)
	outside[2*w+9] = true // (9, 2)
	best, n, scratch := SuppressOutside(heat, w, h, outside, 2, nil)
	if n != 3*5 { // x 7..9, y 0..4
		t.Errorf("%d pixels suppressed, want 15", n)
	}
	for y := range h {
		for x := range w {
			inBall := x >= 7 && y <= 4
			v := heat[y*w+x]
			if inBall && v != 0 || !inBall && v != float64(y*w+x)/100 {
				t.Errorf("(%d,%d) = %v, suppressed want %v", x, y, v, inBall)
			}
		}
	}
	if best != float64(w*h-1)/100 || len(scratch) != w*h+w {
		t.Errorf("best %v, want %v; scratch %d", best, float64(w*h-1)/100, len(scratch))
	}
	all := []float32{0.5, 0.7}
	if b, n, _ := SuppressOutside(all, 2, 1, []bool{true, false}, 1, scratch); b != 0 || n != 2 || all[1] != 0 {
		t.Errorf("all suppressed: best %v, heat %v", b, all)
	}
}

// TestSuppressOutsideMatchesBruteForce compares the separable distance
// passes with the definition (some outside pixel within margin in both
// axes) on random masks of random shapes and margins.
func TestSuppressOutsideMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var scratch []int32
	for trial := range 300 {
		w, h, margin := 1+r.IntN(23), 1+r.IntN(17), r.IntN(5)
		outside := make([]bool, w*h)
		density := r.Float64() * 0.2
		for i := range outside {
			outside[i] = r.Float64() < density
		}
		heat := make([]float32, w*h)
		for i := range heat {
			heat[i] = 1 + r.Float32()
		}
		want := append([]float32(nil), heat...)
		var wantBest float32
		wantN := 0
		for y := range h {
			for x := range w {
				near := false
				for yy := max(0, y-margin); yy <= min(h-1, y+margin) && !near; yy++ {
					for xx := max(0, x-margin); xx <= min(w-1, x+margin); xx++ {
						if outside[yy*w+xx] {
							near = true
							break
						}
					}
				}
				if near {
					want[y*w+x] = 0
					wantN++
				} else {
					wantBest = max(wantBest, want[y*w+x])
				}
			}
		}
		var best float32
		var n int
		best, n, scratch = SuppressOutside(heat, w, h, outside, margin, scratch)
		if best != wantBest || n != wantN || !slices.Equal(heat, want) {
			t.Fatalf("trial %d (%d×%d, margin %d): best %v n %d, want %v %d", trial, w, h, margin, best, n, wantBest, wantN)
		}
	}
}

// BenchmarkOutside: the per-frame cost of finding and suppressing the
// pixels a 10° turn and a 5 % shift pull from outside a 640×480 ROI, at a
// 256×256 input with the default memory's 20-px margin.
func BenchmarkOutside(b *testing.B) {
	warp := Transform{Tx: 0.1, Theta: 10 * math.Pi / 180}.Pixel(640, 480)
	spec := Spec{Width: 256, Height: 256, Channels: 3, Warp: &warp}
	heat := make([]float32, 256*256)
	var mask []bool
	var scratch []int32
	for b.Loop() {
		var found int
		if mask, found = spec.OutsideMask(640, 480, mask); found > 0 {
			_, _, scratch = SuppressOutside(heat, 256, 256, mask, 20, scratch)
		}
	}
}

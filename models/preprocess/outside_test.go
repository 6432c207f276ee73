package preprocess

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// outsideByPixel is the definition InsideSpans implements: each output
// pixel's sample through the warp, tested against the crop's edges.
func outsideByPixel(spec Spec, cw, ch int) []bool {
	m := make([]bool, spec.Width*spec.Height)
	if spec.Warp == nil {
		return m
	}
	sx, sy := float64(cw)/float64(spec.Width), float64(ch)/float64(spec.Height)
	for y := range spec.Height {
		v := (float64(y)+0.5)*sy - 0.5
		for x := range spec.Width {
			xs, ys := spec.Warp.Apply((float64(x)+0.5)*sx-0.5, v)
			m[y*spec.Width+x] = xs < -0.5 || xs > float64(cw)-0.5 || ys < -0.5 || ys > float64(ch)-0.5
		}
	}
	return m
}

// maskOf expands spans into a per-pixel outside mask.
func maskOf(spans []Span, w int) []bool {
	m := make([]bool, len(spans)*w)
	for y, s := range spans {
		for x := range w {
			m[y*w+x] = !s.Contains(x)
		}
	}
	return m
}

// TestInsideSpans: no warp, nothing outside; a shift of a quarter of the
// crop pulls the last quarter of the columns from beyond it; a rotation
// about the centre, the corners but not the centre; a non-finite warp,
// everything.
func TestInsideSpans(t *testing.T) {
	spec := Spec{Width: 40, Height: 20, Channels: 3}
	if s, found := spec.InsideSpans(80, 40, nil); found != 0 || len(s) != 20 || s[7] != (Span{0, 40}) {
		t.Fatalf("no warp: found %v, %d spans, row 7 %v", found, len(s), s[7])
	}
	shift := Affine{{1, 0, 20}, {0, 1, 0}} // output x ↦ source x + 20 in an 80-px crop
	spec.Warp = &shift
	s, found := spec.InsideSpans(80, 40, nil)
	if found != 10*20 { // columns 30..39 of 20 rows
		t.Fatalf("shift: %d pixels outside, want 200", found)
	}
	for y := range 20 {
		// Output column x samples crop x' = 2x + 0.5 + 20; outside beyond 79.5.
		if s[y] != (Span{0, 30}) {
			t.Fatalf("shift: row %d spans %v, want [0, 30)", y, s[y])
		}
	}
	rot := Transform{Theta: math.Pi / 6}.Pixel(80, 40)
	spec.Warp = &rot
	s, _ = spec.InsideSpans(80, 40, s)
	if s[0].Contains(0) || s[0].Contains(39) || s[19].Contains(0) || s[19].Contains(39) || !s[10].Contains(20) {
		t.Errorf("rotation: corners inside %v %v %v %v (want outside), centre %v (want inside)",
			s[0].Contains(0), s[0].Contains(39), s[19].Contains(0), s[19].Contains(39), s[10].Contains(20))
	}
	nan := Affine{{1, 0, math.NaN()}, {0, 1, 0}}
	spec.Warp = &nan
	if s, found = spec.InsideSpans(80, 40, s); found != 800 || s[3] != (Span{}) {
		t.Errorf("NaN warp: %d outside, row 3 %v; want all 800, none inside", found, s[3])
	}
}

// TestInsideSpansMatchPerPixel compares the spans with every pixel's own
// sample on random turns, shifts, scales and mirrorings (rows wholly
// outside included), at sizes that do and do not divide the crop.
func TestInsideSpansMatchPerPixel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var spans []Span
	cut := 0 // trials with a row cut part-way
	for trial := range 400 {
		w, h := 1+r.IntN(70), 1+r.IntN(50)
		cw, ch := 1+r.IntN(300), 1+r.IntN(200)
		// A turn and a scale about the crop's centre, then a shift.
		sc, th := 0.6+0.8*r.Float64(), (r.Float64()*2-1)*math.Pi
		cx, cy := float64(cw)/2, float64(ch)/2
		c, sn := sc*math.Cos(th), sc*math.Sin(th)
		warp := Affine{
			{c, -sn, cx - c*cx + sn*cy + (r.Float64()-0.5)*0.6*float64(cw)},
			{sn, c, cy - sn*cx - c*cy + (r.Float64()-0.5)*0.6*float64(ch)},
		}
		switch trial % 4 {
		case 1: // axis-aligned: a bound constant along each row
			warp[0][1], warp[1][0] = 0, 0
		case 2: // mirrored
			warp[0][0], warp[0][1] = -warp[0][0], -warp[0][1]
		}
		spec := Spec{Width: w, Height: h, Channels: 3, Warp: &warp}
		var found int
		spans, found = spec.InsideSpans(cw, ch, spans)
		want := outsideByPixel(spec, cw, ch)
		if got := maskOf(spans, w); !slices.Equal(got, want) {
			t.Fatalf("trial %d (%d×%d from %d×%d, warp %v): spans %v differ from the per-pixel samples", trial, w, h, cw, ch, warp, spans)
		}
		n := 0
		for _, o := range want {
			if o {
				n++
			}
		}
		if found != n {
			t.Fatalf("trial %d: %d outside, want %d", trial, found, n)
		}
		if slices.ContainsFunc(spans, func(s Span) bool { return s.Lo > 0 || s.Hi > s.Lo && s.Hi < w }) {
			cut++
		}
	}
	if cut < 200 {
		t.Errorf("only %d of 400 trials cut a row part-way: the test does not exercise the boundaries", cut)
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
	inside := slices.Repeat([]Span{{0, w}}, h)
	inside[2] = Span{0, 9} // (9, 2) outside
	best, n, scratch := SuppressOutside(heat, w, h, inside, 2, nil)
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
	if best != float64(w*h-1)/100 || len(scratch) != h {
		t.Errorf("best %v, want %v; scratch %d", best, float64(w*h-1)/100, len(scratch))
	}
	all := []float32{0.5, 0.7}
	if b, n, _ := SuppressOutside(all, 2, 1, []Span{{1, 2}}, 1, scratch); b != 0 || n != 2 || all[1] != 0 {
		t.Errorf("all suppressed: best %v, heat %v", b, all)
	}
}

// TestSuppressOutsideMatchesBruteForce compares the span arithmetic with
// the definition (some outside pixel within margin in both axes) on random
// spans (rows wholly inside, wholly outside, cut on either side) of random
// shapes and margins.
func TestSuppressOutsideMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var scratch []Span
	for trial := range 500 {
		w, h, margin := 1+r.IntN(23), 1+r.IntN(17), r.IntN(5)
		inside := make([]Span, h)
		for y := range inside {
			switch r.IntN(4) {
			case 0:
				inside[y] = Span{0, w}
			case 1:
				inside[y] = Span{}
			default:
				lo := r.IntN(w)
				inside[y] = Span{lo, lo + 1 + r.IntN(w-lo)}
			}
		}
		outside := maskOf(inside, w)
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
		best, n, scratch = SuppressOutside(heat, w, h, inside, margin, scratch)
		if best != wantBest || n != wantN || !slices.Equal(heat, want) {
			t.Fatalf("trial %d (%d×%d, margin %d, spans %v): best %v n %d, want %v %d", trial, w, h, margin, inside, best, n, wantBest, wantN)
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
	var spans, scratch []Span
	b.ReportAllocs()
	for b.Loop() {
		var found int
		if spans, found = spec.InsideSpans(640, 480, spans); found > 0 {
			_, _, scratch = SuppressOutside(heat, 256, 256, spans, 20, scratch)
		}
	}
}

package preprocess

import (
	"math"
	"sort"
)

// Outside-the-frame handling. An alignment warp that moves a part can pull
// points from beyond the crop into the model input; Fill replicates the
// crop's border there, and the localisation module sees streaks no good
// part has (a plate touching the frame edge becomes a bar across the
// input). Those pixels say nothing about the part, so the heatmap is
// suppressed on and near them, in the daemon and in training alike.
//
// An affine warp maps each output row onto a line, and a line crosses the
// crop's rectangle in one segment, so the pixels sampled from inside the
// crop form one span per row: both steps work on spans, in O(rows) and
// O(pixels) with no per-pixel mask.

// Span is the run [Lo, Hi) of one output row that Fill samples from inside
// the crop; the pixels before Lo and from Hi on are replicated border. A
// row with Lo == Hi lies wholly outside.
type Span struct{ Lo, Hi int }

// Contains reports whether pixel x of the row lies inside the span.
func (s Span) Contains(x int) bool { return x >= s.Lo && x < s.Hi }

// InsideSpans returns, for each output row of spec (Height spans), the
// pixels that Fill samples from within a cw×ch crop, counting a sample
// more than half a pixel beyond the crop's edge as outside, and the number
// of output pixels outside. dst is reused when large enough. Without a warp
// every pixel is inside; a warp with a non-finite coefficient puts every
// pixel outside (Fill's samples then mean nothing).
func (spec Spec) InsideSpans(cw, ch int, dst []Span) ([]Span, int) {
	w, h := spec.Width, spec.Height
	if cap(dst) < h {
		dst = make([]Span, h)
	}
	dst = dst[:h]
	if spec.Warp == nil || cw <= 0 || ch <= 0 {
		for y := range dst {
			dst[y] = Span{0, w}
		}
		return dst, 0
	}
	a := *spec.Warp
	for _, row := range a {
		for _, c := range row {
			if math.IsNaN(c) || math.IsInf(c, 0) {
				for y := range dst {
					dst[y] = Span{}
				}
				return dst, w * h
			}
		}
	}
	r := rowSampler{a: a, sx: float64(cw) / float64(w), hi: [2]float64{float64(cw) - 0.5, float64(ch) - 0.5}}
	sy := float64(ch) / float64(h)
	outside := 0
	for y := range h {
		r.v = (float64(y)+0.5)*sy - 0.5
		// Each bound holds on a prefix or a suffix of the row, since the
		// sample moves monotonically along it (in floating point too: every
		// step is a monotone rounding); the span is their intersection.
		s := Span{0, w}
		for bound := range 4 {
			s = s.intersect(r.run(w, bound))
		}
		if s.Lo >= s.Hi {
			s = Span{}
		}
		dst[y] = s
		outside += w - (s.Hi - s.Lo)
	}
	return dst, outside
}

// intersect returns the pixels in both spans.
func (s Span) intersect(o Span) Span {
	return Span{max(s.Lo, o.Lo), min(s.Hi, o.Hi)}
}

// rowSampler tests where Fill samples the pixels of one output row (at
// crop row v) against the crop's edges, exactly as Fill computes them.
type rowSampler struct {
	a     Affine
	sx, v float64
	hi    [2]float64 // the crop's far edges; the near ones are at -0.5
}

// holds reports whether pixel x's sample is within bound 0 (left edge),
// 1 (right), 2 (top) or 3 (bottom).
func (r *rowSampler) holds(bound, x int) bool {
	xs, ys := r.a.Apply((float64(x)+0.5)*r.sx-0.5, r.v)
	switch bound {
	case 0:
		return !(xs < -0.5)
	case 1:
		return !(xs > r.hi[0])
	case 2:
		return !(ys < -0.5)
	default:
		return !(ys > r.hi[1])
	}
}

// run returns the pixels of the n-pixel row where bound holds — a prefix or
// a suffix of the row (or all of it, or none) — in O(log n) tests.
func (r *rowSampler) run(n, bound int) Span {
	first, last := r.holds(bound, 0), r.holds(bound, n-1)
	switch {
	case first && last:
		return Span{0, n}
	case !first && !last:
		return Span{}
	}
	// The boundary: the first x whose answer differs from x = 0's.
	at := sort.Search(n, func(x int) bool { return r.holds(bound, x) != first })
	if first {
		return Span{0, at}
	}
	return Span{at, n}
}

// SuppressOutside sets heat (w×h, row-major) to 0 on every pixel within
// margin pixels (Chebyshev distance) of a pixel outside its row's span
// (InsideSpans) and returns the maximum of what remains (0 when nothing
// does), the number of pixels suppressed, and scratch, grown if needed
// (pass it back in to allocate nothing).
func SuppressOutside[T float32 | float64](heat []T, w, h int, inside []Span, margin int, scratch []Span) (best T, suppressed int, _ []Span) {
	margin = max(margin, 0)
	if cap(scratch) < h {
		scratch = make([]Span, h)
	}
	// What each row allows its neighbours within the margin to keep: a row
	// with border on its left keeps others margin pixels clear of it, and
	// likewise on the right; a row wholly outside lets them keep nothing.
	allow := scratch[:h]
	for y, s := range inside[:h] {
		switch {
		case s.Lo >= s.Hi:
			allow[y] = Span{}
		default:
			allow[y] = Span{0, w}
			if s.Lo > 0 {
				allow[y].Lo = s.Lo + margin
			}
			if s.Hi < w {
				allow[y].Hi = s.Hi - margin
			}
		}
	}
	for y := range h {
		keep := Span{0, w}
		for yy := max(0, y-margin); yy <= min(h-1, y+margin); yy++ {
			keep = keep.intersect(allow[yy])
		}
		keep.Lo, keep.Hi = min(max(keep.Lo, 0), w), min(max(keep.Hi, 0), w)
		row := heat[y*w : (y+1)*w]
		if keep.Lo >= keep.Hi {
			clear(row)
			suppressed += w
			continue
		}
		clear(row[:keep.Lo])
		clear(row[keep.Hi:])
		suppressed += w - (keep.Hi - keep.Lo)
		for _, v := range row[keep.Lo:keep.Hi] {
			if v > best {
				best = v
			}
		}
	}
	return best, suppressed, scratch
}

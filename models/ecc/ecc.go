// Package ecc refines an alignment by maximising the enhanced correlation
// coefficient (ECC: the zero-mean normalised correlation of the warped image
// with the template, Evangelidis & Psarakis 2008) over the rigid transform
// (tx, ty, θ) of preprocess.Transform.
//
// The image matching module regresses the transform in one shot; on parts
// that differ from the template, or poses at the edge of what it learned,
// it stops several pixels short. A few Gauss–Newton steps on the images the
// module already saw (the crop and the template at the align input size,
// grey) pull it the rest of the way. Correlation ignores brightness and
// contrast, so a darker or rusted part still aligns on its shape. The
// result is kept only when it correlates better than the module's own and
// stays within a bounded distance of it: the refinement can improve an
// alignment, never replace it. Pure Go, no allocation per call after the
// first, deterministic: training and the daemon get the same transform
// from the same images.
package ecc

import (
	"math"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Limits of a refinement: beyond them the module's transform is kept.
const (
	// MaxShift is the largest change of Tx or Ty (fractions of half the
	// crop: 0.2 = 10 % of its width or height).
	MaxShift = 0.2
	// MaxTurn is the largest change of Theta, radians (15°).
	MaxTurn = 15 * math.Pi / 180
	// MinOverlap is the least fraction of the template that must fall
	// inside the image for a correlation to count.
	MinOverlap = 0.5
	// MinGain is how much the correlation must rise for the refinement to
	// be kept.
	MinGain = 1e-3
	// MinCorrelation is the least correlation a kept refinement reaches:
	// below it the images share too little for the maximum to mean a pose.
	MinCorrelation = 0.25
)

// levels are the block-average factors of the coarse-to-fine passes, and
// the Gauss–Newton iterations of each.
var levels = [...]struct{ factor, iterations int }{{4, 12}, {2, 8}}

// Result says what a refinement did.
type Result struct {
	// Before and After are the correlations of the module's transform and
	// of the returned one, at the finest level (After = Before when the
	// refinement was not kept).
	Before, After float64
	// Kept is true when the returned transform is the refined one.
	Kept bool
}

// Refiner holds the scratch images of refinements; use one per goroutine.
type Refiner struct {
	src, tpl  []float64 // the level's block-averaged source and template
	samples   [4][]float64
	valid     []bool
	bufValid  [4][]bool
	norm      [5][]float64 // normalised template, base sample and the 3 shifted samples
	jac       [3][]float64
	residuals []float64
}

// Refine improves t, the transform that maps the template's pixel grid to
// a cw×ch crop, so that the crop warped by t correlates better with the
// template. src is the crop resized to w×h and tpl the template at w×h,
// row-major, with channels planes (1 grey, or 3 RGB compared as grey): the
// align input tensors. It returns t unchanged (Kept false) when no better
// transform lies within MaxShift and MaxTurn of it, when the best
// correlation stays under MinCorrelation, or when either image is flat.
func (r *Refiner) Refine(src, tpl []float32, channels, w, h, cw, ch int, t preprocess.Transform) (preprocess.Transform, Result) {
	if !fits(src, tpl, channels, w, h, cw, ch) {
		return t, Result{}
	}
	return r.refineFrom(src, tpl, channels, w, h, cw, ch, t, t)
}

// Limits of a search (Refiner.Search).
const (
	// SearchTurn is the largest turn away from the module's transform that
	// a search starts from, radians (45°); with MaxTurn on either side of
	// each start, answers up to 60° off are reached.
	SearchTurn = 45 * math.Pi / 180
	// SearchStep is the turn between two starts, radians (15°): each start
	// reaches MaxTurn, so neighbouring starts overlap.
	SearchStep = 15 * math.Pi / 180
	// searchIterations are the Gauss–Newton iterations each start gets on
	// images block-averaged by searchFactor (16² from the 128² align
	// input; at least 16² in any case) before the best one is refined.
	searchIterations = 4
	searchFactor     = 8
)

// Search is Refine for modules that can miss by more than a refinement
// reaches (a part turned the wrong way): it starts from t and from t turned
// by every multiple of SearchStep up to ±SearchTurn, takes a few coarse
// steps from each, and refines the start that correlates best as Refine
// does, within MaxShift and MaxTurn of that start. The answer is kept under
// Refine's rules (it must correlate better than t, by MinGain, and reach
// MinCorrelation); Result.Before is t's correlation.
func (r *Refiner) Search(src, tpl []float32, channels, w, h, cw, ch int, t preprocess.Transform) (preprocess.Transform, Result) {
	if !fits(src, tpl, channels, w, h, cw, ch) {
		return t, Result{}
	}
	factor := searchFactor
	for factor > 1 && (w/factor < 16 || h/factor < 16) {
		factor /= 2
	}
	sw, sh := w/factor, h/factor
	r.level(src, tpl, channels, w, h, factor)
	start, bestRho := t, math.Inf(-1)
	steps := int(math.Round(SearchTurn / SearchStep))
	for i := -steps; i <= steps; i++ {
		s := preprocess.Transform{Tx: t.Tx, Ty: t.Ty, Theta: t.Theta + float64(i)*SearchStep}
		p := [3]float64{s.Tx, s.Ty, s.Theta}
		_, rho := r.gaussNewton(p, r.correlation(p, sw, sh, cw, ch, 0), s, sw, sh, cw, ch, searchIterations)
		// NaN (too little overlap) never wins; ties keep the turn nearer t.
		if rho > bestRho || (rho == bestRho && math.Abs(s.Theta-t.Theta) < math.Abs(start.Theta-t.Theta)) {
			start, bestRho = s, rho
		}
	}
	return r.refineFrom(src, tpl, channels, w, h, cw, ch, t, start)
}

// Method is one refinement of a Refiner: Refine or Search.
type Method func(src, tpl []float32, channels, w, h, cw, ch int, t preprocess.Transform) (preprocess.Transform, Result)

// MethodNamed returns the refinement a bundle's align.refine names: nil for
// bundle.RefineNone or empty (no refinement), r.Refine for
// bundle.RefineECC, r.Search for bundle.RefineSearch; false for a name it
// does not know. Training and the engine both choose through it, so they
// refine alike.
func (r *Refiner) MethodNamed(name string) (Method, bool) {
	switch name {
	case "", bundle.RefineNone:
		return nil, true
	case bundle.RefineECC:
		return r.Refine, true
	case bundle.RefineSearch:
		return r.Search, true
	}
	return nil, false
}

// fits says whether the images and sizes describe a refinement at all.
func fits(src, tpl []float32, channels, w, h, cw, ch int) bool {
	return w > 0 && h > 0 && cw > 0 && ch > 0 && (channels == 1 || channels == 3) && len(src) >= channels*w*h && len(tpl) >= channels*w*h
}

// refineFrom runs the coarse-to-fine passes from start, within the limits
// of start, and keeps the answer only when it correlates better than t.
func (r *Refiner) refineFrom(src, tpl []float32, channels, w, h, cw, ch int, t, start preprocess.Transform) (preprocess.Transform, Result) {
	best := start
	var res Result
	for li, lv := range levels {
		sw, sh := w/lv.factor, h/lv.factor
		if sw < 8 || sh < 8 {
			continue
		}
		r.level(src, tpl, channels, w, h, lv.factor)
		p := [3]float64{best.Tx, best.Ty, best.Theta}
		rho := r.correlation(p, sw, sh, cw, ch, 0)
		if li == len(levels)-1 {
			res.Before = r.correlation([3]float64{t.Tx, t.Ty, t.Theta}, sw, sh, cw, ch, 0)
		}
		p, rho = r.gaussNewton(p, rho, start, sw, sh, cw, ch, lv.iterations)
		best = preprocess.Transform{Tx: p[0], Ty: p[1], Theta: p[2]}
		if li == len(levels)-1 {
			res.After = rho
		}
	}
	if math.IsNaN(res.Before) || math.IsNaN(res.After) || !(res.After > res.Before+MinGain) || res.After < MinCorrelation || !within(best, start) {
		return t, Result{Before: res.Before, After: res.Before}
	}
	res.Kept = true
	return best, res
}

// within says whether b lies within the refinement's limits of a.
func within(b, a preprocess.Transform) bool {
	return math.Abs(b.Tx-a.Tx) <= MaxShift && math.Abs(b.Ty-a.Ty) <= MaxShift && math.Abs(b.Theta-a.Theta) <= MaxTurn
}

// gaussNewton runs Levenberg–Marquardt-damped Gauss–Newton steps on the
// normalised residual (template − warped image, both zero-mean and unit
// norm over the pixels valid for all samples), with forward-difference
// Jacobians; a step is taken only when it raises the correlation.
func (r *Refiner) gaussNewton(p [3]float64, rho float64, origin preprocess.Transform, sw, sh, cw, ch, iterations int) ([3]float64, float64) {
	// Half a level pixel for the shifts (Tx = 1 is half the width), and the
	// angle that moves the corners by about as much.
	steps := [3]float64{1 / float64(sw), 1 / float64(sh), 1 / float64(max(sw, sh))}
	lambda := 1e-3
	for range iterations {
		if math.IsNaN(rho) {
			return p, rho
		}
		n := sw * sh
		valid := grow(&r.valid, n)
		r.sample(p, sw, sh, cw, ch, 0)
		copy(valid, r.bufValid[0])
		for k := range 3 {
			q := p
			q[k] += steps[k]
			r.sample(q, sw, sh, cw, ch, k+1)
			and(valid, r.bufValid[k+1])
		}
		if count(valid) < int(MinOverlap*float64(n)) {
			return p, rho
		}
		tn, ok1 := normalise(grow(&r.norm[0], n), r.tpl[:n], valid)
		base, ok2 := normalise(grow(&r.norm[1], n), r.samples[0], valid)
		if !ok1 || !ok2 {
			return p, rho
		}
		res := grow(&r.residuals, n)
		for i := range n {
			if valid[i] {
				res[i] = tn[i] - base[i]
			}
		}
		for k := range 3 {
			jk, ok := normalise(grow(&r.norm[k+2], n), r.samples[k+1], valid)
			if !ok {
				return p, rho
			}
			col := grow(&r.jac[k], n)
			for i := range n {
				if valid[i] {
					col[i] = (jk[i] - base[i]) / steps[k]
				}
			}
		}
		var jtj [3][3]float64
		var jtr [3]float64
		for i := range n {
			if !valid[i] {
				continue
			}
			for a := range 3 {
				ja := r.jac[a][i]
				jtr[a] += ja * res[i]
				for b := a; b < 3; b++ {
					jtj[a][b] += ja * r.jac[b][i]
				}
			}
		}
		for a := range 3 {
			for b := range a {
				jtj[a][b] = jtj[b][a]
			}
		}
		improved := false
		for range 6 {
			var m [3][3]float64
			for a := range 3 {
				m[a] = jtj[a]
				m[a][a] += lambda * jtj[a][a]
			}
			d, ok := solve3(m, jtr)
			if !ok {
				lambda *= 10
				continue
			}
			q := [3]float64{p[0] + d[0], p[1] + d[1], p[2] + d[2]}
			if !within(preprocess.Transform{Tx: q[0], Ty: q[1], Theta: q[2]}, origin) {
				lambda *= 10
				continue
			}
			if c := r.correlation(q, sw, sh, cw, ch, 0); c > rho {
				small := math.Abs(d[0]) < steps[0]/20 && math.Abs(d[1]) < steps[1]/20 && math.Abs(d[2]) < steps[2]/20
				p, rho, improved = q, c, true
				lambda = max(lambda/10, 1e-6)
				if small {
					return p, rho
				}
				break
			}
			lambda *= 10
		}
		if !improved {
			return p, rho
		}
	}
	return p, rho
}

// correlation is the zero-mean normalised correlation of the template with
// the source warped by p, over the pixels the warp keeps inside the source
// (NaN when fewer than MinOverlap of them, or when either side is flat).
// It uses sample buffer slot and the first two normalisation buffers.
func (r *Refiner) correlation(p [3]float64, sw, sh, cw, ch, slot int) float64 {
	r.sample(p, sw, sh, cw, ch, slot)
	n := sw * sh
	valid := r.bufValid[slot]
	if count(valid) < int(MinOverlap*float64(n)) {
		return math.NaN()
	}
	a, okA := normalise(grow(&r.norm[0], n), r.samples[slot], valid)
	b, okB := normalise(grow(&r.norm[1], n), r.tpl[:n], valid)
	if !okA || !okB {
		return math.NaN()
	}
	var ab float64
	for i, ok := range valid {
		if ok {
			ab += a[i] * b[i]
		}
	}
	return ab
}

// level block-averages src and tpl (w×h, channels planes; RGB as grey) by
// factor into r.src and r.tpl.
func (r *Refiner) level(src, tpl []float32, channels, w, h, factor int) {
	sw, sh := w/factor, h/factor
	average(grow(&r.src, sw*sh), src, channels, w, h, factor)
	average(grow(&r.tpl, sw*sh), tpl, channels, w, h, factor)
}

// greyWeights are preprocess's: 0.299 R + 0.587 G + 0.114 B.
var greyWeights = [3]float64{0.299, 0.587, 0.114}

func average(dst []float64, src []float32, channels, w, h, f int) {
	sw, sh := w/f, h/f
	inv := 1 / float64(f*f)
	for y := range sh {
		for x := range sw {
			var s float64
			for c := range channels {
				plane := src[c*w*h:]
				wt := 1.0
				if channels == 3 {
					wt = greyWeights[c]
				}
				var p float64
				for dy := range f {
					row := plane[(y*f+dy)*w+x*f:]
					for dx := range f {
						p += float64(row[dx])
					}
				}
				s += wt * p
			}
			dst[y*sw+x] = s * inv
		}
	}
}

// sample warps the level's source by p into r.samples[slot] (sw×sh), with
// r.bufValid[slot] marking the pixels that fall inside the source. Pixel
// (x, y) of the template grid is the crop-grid point u = (x+0.5)·cw/sw −
// 0.5 (likewise v), mapped by p.Pixel(cw, ch) to the crop and then to the
// level's grid — the geometry preprocess.Fill gives the localisation input.
func (r *Refiner) sample(p [3]float64, sw, sh, cw, ch, slot int) {
	n := sw * sh
	out := grow(&r.samples[slot], n)
	valid := grow(&r.bufValid[slot], n)
	a := preprocess.Transform{Tx: p[0], Ty: p[1], Theta: p[2]}.Pixel(cw, ch)
	sx, sy := float64(cw)/float64(sw), float64(ch)/float64(sh)
	for y := range sh {
		v := (float64(y)+0.5)*sy - 0.5
		for x := range sw {
			u := (float64(x)+0.5)*sx - 0.5
			xs, ys := a.Apply(u, v)
			gx, gy := (xs+0.5)/sx-0.5, (ys+0.5)/sy-0.5
			i := y*sw + x
			if !(gx >= 0 && gy >= 0 && gx <= float64(sw-1) && gy <= float64(sh-1)) {
				valid[i], out[i] = false, 0
				continue
			}
			x0, y0 := int(gx), int(gy)
			x1, y1 := min(x0+1, sw-1), min(y0+1, sh-1)
			fx, fy := gx-float64(x0), gy-float64(y0)
			s := r.src
			out[i] = (s[y0*sw+x0]*(1-fx)+s[y0*sw+x1]*fx)*(1-fy) + (s[y1*sw+x0]*(1-fx)+s[y1*sw+x1]*fx)*fy
			valid[i] = true
		}
	}
}

// normalise writes v over valid, zero-mean and unit norm, into dst and
// returns it; false when v is flat there.
func normalise(dst, v []float64, valid []bool) ([]float64, bool) {
	var s float64
	m := 0
	for i, ok := range valid {
		if ok {
			s += v[i]
			m++
		}
	}
	if m == 0 {
		return dst, false
	}
	mean := s / float64(m)
	var ss float64
	for i, ok := range valid {
		if ok {
			d := v[i] - mean
			ss += d * d
		}
	}
	if ss <= 0 {
		return dst, false
	}
	inv := 1 / math.Sqrt(ss)
	for i, ok := range valid {
		if ok {
			dst[i] = (v[i] - mean) * inv
		}
	}
	return dst, true
}

// solve3 solves m·x = b by Cramer's rule; false when m is singular.
func solve3(m [3][3]float64, b [3]float64) ([3]float64, bool) {
	det := det3(m)
	if math.Abs(det) < 1e-300 || math.IsNaN(det) {
		return [3]float64{}, false
	}
	var x [3]float64
	for k := range 3 {
		mk := m
		for i := range 3 {
			mk[i][k] = b[i]
		}
		x[k] = det3(mk) / det
	}
	return x, true
}

func det3(m [3][3]float64) float64 {
	return m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) - m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) + m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
}

func and(dst, src []bool) {
	for i, v := range src {
		dst[i] = dst[i] && v
	}
}

func count(v []bool) int {
	n := 0
	for _, b := range v {
		if b {
			n++
		}
	}
	return n
}

// grow returns (*buf)[:n], reallocating when too small.
func grow[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	*buf = (*buf)[:n]
	return *buf
}

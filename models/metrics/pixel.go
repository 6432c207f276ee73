package metrics

import (
	"fmt"
	"math"
	"sort"
)

// ScoreMap is one image's anomaly map with its ground-truth mask, both in
// row-major order of W×H pixels. Mask is true on defect pixels.
type ScoreMap struct {
	Scores []float32
	Mask   []bool
	W, H   int
}

// checkMap validates the shape of one map; i is its index for the message.
func checkMap(what string, i int, scores []float32, mask []bool, w, h int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%s: image %d: size %dx%d, expected positive width and height", what, i, w, h)
	}
	if len(scores) != w*h {
		return fmt.Errorf("%s: image %d: %d scores, expected %d for %dx%d", what, i, len(scores), w*h, w, h)
	}
	if len(mask) != w*h {
		return fmt.Errorf("%s: image %d: %d mask pixels, expected %d for %dx%d", what, i, len(mask), w*h, w, h)
	}
	return nil
}

// regionLabeler labels the 8-connected defect regions of masks, reusing its
// buffers between images so that labelling allocates nothing in steady state.
type regionLabeler struct {
	labels []int32 // 0: normal, k>0: region k
	stack  []int32
	sizes  []int // sizes[k-1] is the pixel count of region k
}

// label fills l.labels and l.sizes for mask and returns the region count.
func (l *regionLabeler) label(mask []bool, w, h int) int {
	n := w * h
	if cap(l.labels) < n {
		l.labels = make([]int32, n)
	}
	l.labels = l.labels[:n]
	clear(l.labels)
	l.sizes = l.sizes[:0]
	var next int32
	for start, m := range mask {
		if !m || l.labels[start] != 0 {
			continue
		}
		next++
		size := 0
		l.labels[start] = next
		l.stack = append(l.stack[:0], int32(start))
		for len(l.stack) > 0 {
			p := int(l.stack[len(l.stack)-1])
			l.stack = l.stack[:len(l.stack)-1]
			size++
			x, y := p%w, p/w
			for dy := -1; dy <= 1; dy++ {
				yy := y + dy
				if yy < 0 || yy >= h {
					continue
				}
				for dx := -1; dx <= 1; dx++ {
					xx := x + dx
					if xx < 0 || xx >= w {
						continue
					}
					q := yy*w + xx
					if mask[q] && l.labels[q] == 0 {
						l.labels[q] = next
						l.stack = append(l.stack, int32(q))
					}
				}
			}
		}
		l.sizes = append(l.sizes, size)
	}
	return int(next)
}

// flatten concatenates maps into float64 scores and labels.
func flatten(what string, maps []ScoreMap) ([]float64, []bool, error) {
	if len(maps) == 0 {
		return nil, nil, fmt.Errorf("%s: no images", what)
	}
	total := 0
	for i, m := range maps {
		if err := checkMap(what, i, m.Scores, m.Mask, m.W, m.H); err != nil {
			return nil, nil, err
		}
		total += len(m.Scores)
	}
	scores := make([]float64, 0, total)
	labels := make([]bool, 0, total)
	for _, m := range maps {
		for _, s := range m.Scores {
			scores = append(scores, float64(s))
		}
		labels = append(labels, m.Mask...)
	}
	return scores, labels, nil
}

// ExactPixelAUROC returns the exact pixel-level AUROC over all pixels of
// maps. It holds every pixel in memory; use a PixelAccumulator for large
// sets.
func ExactPixelAUROC(maps []ScoreMap) (float64, error) {
	s, l, err := flatten("pixel AUROC", maps)
	if err != nil {
		return 0, err
	}
	v, err := AUROC(s, l)
	if err != nil {
		return 0, fmt.Errorf("pixel %w", err)
	}
	return v, nil
}

// ExactPixelAP returns the exact pixel-level average precision over all
// pixels of maps. It holds every pixel in memory; use a PixelAccumulator for
// large sets.
func ExactPixelAP(maps []ScoreMap) (float64, error) {
	s, l, err := flatten("pixel AP", maps)
	if err != nil {
		return 0, err
	}
	v, err := AveragePrecision(s, l)
	if err != nil {
		return 0, fmt.Errorf("pixel %w", err)
	}
	return v, nil
}

// ExactAUPRO returns the exact AUPRO of maps as in the MVTec AD evaluation
// code (Bergmann et al.): the ground truth is split into 8-connected
// regions; at each threshold the PRO is the mean, over all regions of all
// images, of the fraction of the region's pixels scored >= threshold, and
// the FPR is the fraction of all normal pixels scored >= threshold. The
// PRO-vs-FPR curve, starting at (0,0), is integrated with the trapezoidal
// rule from FPR 0 to maxFPR (linearly interpolated at maxFPR) and divided by
// maxFPR. maxFPR is 0.3 in the MVTec AD protocol. It holds every pixel in
// memory; use a PixelAccumulator for large sets.
func ExactAUPRO(maps []ScoreMap, maxFPR float64) (float64, error) {
	if err := checkMaxFPR(maxFPR); err != nil {
		return 0, err
	}
	if len(maps) == 0 {
		return 0, fmt.Errorf("AUPRO: no images")
	}
	type px struct {
		score float64
		pro   float64 // 1/region size for defect pixels, 0 otherwise
		ok    bool    // normal pixel
	}
	var all []px
	var l regionLabeler
	regions, normal := 0, 0
	for i, m := range maps {
		if err := checkMap("AUPRO", i, m.Scores, m.Mask, m.W, m.H); err != nil {
			return 0, err
		}
		n := l.label(m.Mask, m.W, m.H)
		regions += n
		for p, s := range m.Scores {
			if math.IsNaN(float64(s)) {
				return 0, fmt.Errorf("AUPRO: image %d: score %d is NaN, expected a number", i, p)
			}
			k := l.labels[p]
			if k == 0 {
				normal++
				all = append(all, px{score: float64(s), ok: true})
			} else {
				all = append(all, px{score: float64(s), pro: 1 / float64(l.sizes[k-1])})
			}
		}
	}
	if regions == 0 || normal == 0 {
		return 0, fmt.Errorf("AUPRO: %w (%d defect regions, %d normal pixels), expected both", ErrOneClass, regions, normal)
	}
	sort.Slice(all, func(a, b int) bool { return all[a].score > all[b].score })
	fprs := []float64{0}
	pros := []float64{0}
	var fp, pro float64
	for i, p := range all {
		if p.ok {
			fp++
		} else {
			pro += p.pro
		}
		if i+1 == len(all) || all[i+1].score != p.score {
			fprs = append(fprs, math.Min(fp/float64(normal), 1))
			pros = append(pros, math.Min(pro/float64(regions), 1))
		}
	}
	return integrateTo(fprs, pros, maxFPR) / maxFPR, nil
}

// checkMaxFPR validates the AUPRO integration limit.
func checkMaxFPR(maxFPR float64) error {
	if !(maxFPR > 0 && maxFPR <= 1) {
		return fmt.Errorf("AUPRO: integration limit %v, expected 0 < maxFPR <= 1", maxFPR)
	}
	return nil
}

// integrateTo integrates the curve (x, y), x non-decreasing from 0, with the
// trapezoidal rule from x[0] to xmax, interpolating linearly at xmax, like
// the trapezoid function of the MVTec AD evaluation code.
func integrateTo(x, y []float64, xmax float64) float64 {
	area := 0.0
	for i := 1; i < len(x); i++ {
		if x[i] <= xmax {
			area += 0.5 * (y[i] + y[i-1]) * (x[i] - x[i-1])
			continue
		}
		// First point beyond xmax: add the partial trapezoid up to xmax.
		if x[i-1] < xmax {
			yi := y[i-1] + (y[i]-y[i-1])*(xmax-x[i-1])/(x[i]-x[i-1])
			area += 0.5 * (yi + y[i-1]) * (xmax - x[i-1])
		}
		break
	}
	return area
}

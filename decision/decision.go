// Package decision turns a part's image score and heatmap into its verdict
// and defect regions: the one rule that both the daemon (`inspectd run`) and
// the evaluation (`inspectd eval`) apply, so that the false-reject and escape
// figures eval reports are the verdicts the line will see. Training uses the
// same rule (Decider.Level) to calibrate the pixel threshold.
//
// A part is NG when its score exceeds the image threshold or when any
// defect region is kept: an 8-connected component of heatmap pixels above
// the pixel threshold whose area, in pixels of the original frame, is at
// least the minimum defect area. A NaN score or heatmap is an ERROR.
package decision

import (
	"image"
	"math"
	"slices"
	"sort"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Decider turns an image score and a heatmap into a verdict and defect
// regions. It keeps scratch buffers between calls; use one per goroutine.
type Decider struct {
	labels []int32
	stack  []int32
	levels []float32
}

// Input is what Decide needs about one part.
type Input struct {
	Score          float64
	Heatmap        *preprocess.Heatmap
	ROI            image.Rectangle // inspected region of the frame (never empty)
	Transform      preprocess.Transform
	Threshold      float64 // image-score threshold
	PixelThreshold float64 // heatmap threshold for regions
	MinDefectArea  int     // pixels of the original frame
	MaxRegions     int
}

// Decide returns the verdict, its reason and the kept regions. A NaN score
// or heatmap is an ERROR, never OK. Regions are the 8-connected components
// of heatmap pixels above the pixel threshold, mapped back into original
// frame pixels through the inverse alignment; regions smaller than
// MinDefectArea are dropped and at most MaxRegions are kept, largest first.
// The part is NG when the score exceeds the threshold or any region is
// kept.
func (d *Decider) Decide(in Input) (inspection.Verdict, string, []inspection.Region) {
	if math.IsNaN(in.Score) || math.IsInf(in.Score, 0) {
		return inspection.Error, inspection.ReasonNaN, nil
	}
	regions, nan := d.regions(in)
	if nan {
		return inspection.Error, inspection.ReasonNaN, nil
	}
	switch {
	case in.Score > in.Threshold:
		return inspection.NG, inspection.ReasonScore, regions
	case len(regions) > 0:
		return inspection.NG, inspection.ReasonRegion, regions
	}
	return inspection.OK, inspection.ReasonPass, regions
}

// regions labels the heatmap and maps each component into frame pixels.
func (d *Decider) regions(in Input) ([]inspection.Region, bool) {
	hm := in.Heatmap
	if hm == nil || hm.Width == 0 || hm.Height == 0 {
		return nil, false
	}
	w, h := hm.Width, hm.Height
	n := w * h
	if cap(d.labels) < n {
		d.labels = make([]int32, n)
	}
	labels := d.labels[:n]
	clear(labels)
	thr := float32(in.PixelThreshold)

	// Model-input pixel (u, v) centre → crop pixel (half-pixel convention,
	// as preprocess.Fill samples) → through the alignment warp into the
	// crop → plus the ROI origin.
	cw, ch := in.ROI.Dx(), in.ROI.Dy()
	sx, sy := float64(cw)/float64(w), float64(ch)/float64(h)
	warp := preprocess.Affine{{1, 0, 0}, {0, 1, 0}}
	if !in.Transform.IsIdentity() {
		warp = in.Transform.Pixel(cw, ch)
	}
	toFrame := func(u, v float64) (float64, float64) {
		x, y := warp.Apply((u+0.5)*sx-0.5, (v+0.5)*sy-0.5)
		return x + float64(in.ROI.Min.X), y + float64(in.ROI.Min.Y)
	}
	pixelArea := sx * sy // the warp is a rotation and a shift: area-preserving

	var out []inspection.Region
	var next int32
	for i, val := range hm.Values {
		if val != val {
			return nil, true
		}
		if val <= thr || labels[i] != 0 {
			continue
		}
		next++
		labels[i] = next
		d.stack = append(d.stack[:0], int32(i))
		count := 0
		peak := val
		u0, v0, u1, v1 := w, h, -1, -1
		for len(d.stack) > 0 {
			p := int(d.stack[len(d.stack)-1])
			d.stack = d.stack[:len(d.stack)-1]
			count++
			if v := hm.Values[p]; v > peak {
				peak = v
			}
			u, v := p%w, p/w
			u0, v0, u1, v1 = min(u0, u), min(v0, v), max(u1, u), max(v1, v)
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					nu, nv := u+dx, v+dy
					if nu < 0 || nv < 0 || nu >= w || nv >= h {
						continue
					}
					q := nv*w + nu
					if labels[q] == 0 && hm.Values[q] > thr {
						labels[q] = next
						d.stack = append(d.stack, int32(q))
					}
				}
			}
		}
		// The box: the component's pixel footprint in the model input,
		// its four corners mapped into the frame (under a rotation this
		// encloses the region, a little generously).
		minX, minY := math.Inf(1), math.Inf(1)
		maxX, maxY := math.Inf(-1), math.Inf(-1)
		for _, c := range [4][2]float64{{float64(u0) - 0.5, float64(v0) - 0.5}, {float64(u1) + 0.5, float64(v0) - 0.5},
			{float64(u0) - 0.5, float64(v1) + 0.5}, {float64(u1) + 0.5, float64(v1) + 0.5}} {
			x, y := toFrame(c[0], c[1])
			minX, maxX = math.Min(minX, x), math.Max(maxX, x)
			minY, maxY = math.Min(minY, y), math.Max(maxY, y)
		}
		area := int(math.Round(float64(count) * pixelArea))
		if area < in.MinDefectArea || area == 0 {
			continue
		}
		x0, y0 := int(math.Floor(minX+0.5)), int(math.Floor(minY+0.5))
		x1, y1 := int(math.Ceil(maxX+0.5)), int(math.Ceil(maxY+0.5))
		out = append(out, inspection.Region{X: x0, Y: y0, Width: x1 - x0, Height: y1 - y0, Area: area, Peak: float64(peak)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Area > out[j].Area })
	if in.MaxRegions > 0 && len(out) > in.MaxRegions {
		out = out[:in.MaxRegions]
	}
	return out, false
}

// Level returns the pixel threshold at and above which Decide keeps no
// region on in (whose PixelThreshold it ignores): for every pixel
// threshold p, Decide keeps a region exactly when float32(p) < Level.
// It is one of the heatmap's values, or -Inf when the heatmap is empty or
// no threshold keeps a region; NaN when the heatmap holds a NaN. Training
// calibrates the pixel threshold on it: a good part is rejected by region
// exactly when the pixel threshold lies below its level.
func (d *Decider) Level(in Input) float64 {
	hm := in.Heatmap
	if hm == nil || len(hm.Values) == 0 {
		return math.Inf(-1)
	}
	peak := float32(math.Inf(-1))
	for _, v := range hm.Values {
		if v != v {
			return math.NaN()
		}
		peak = max(peak, v)
	}
	// When one heatmap pixel covers at least min_defect_area frame pixels
	// (the daemon's default 0 included), every region is kept: the level
	// is the heatmap's maximum.
	cellArea := float64(in.ROI.Dx()) * float64(in.ROI.Dy()) / float64(hm.Width*hm.Height)
	if a := int(math.Round(cellArea)); a > 0 && a >= in.MinDefectArea {
		return float64(peak)
	}
	levels := append(d.levels[:0], hm.Values...)
	slices.Sort(levels)
	levels = slices.Compact(levels)
	d.levels = levels
	// The regions kept shrink as the threshold rises (each component
	// above a higher threshold lies inside one above a lower): the first
	// level that keeps none is found by bisection. Above the largest
	// value nothing is kept, so the search always ends inside levels.
	first := sort.Search(len(levels), func(i int) bool {
		in.PixelThreshold = float64(levels[i])
		regions, _ := d.regions(in)
		return len(regions) == 0
	})
	if first == 0 {
		// No threshold below the smallest value exists in the heatmap:
		// everything above it is what the lowest level sees.
		in.PixelThreshold = math.Inf(-1)
		if regions, _ := d.regions(in); len(regions) > 0 {
			return float64(levels[0])
		}
		return math.Inf(-1)
	}
	return float64(levels[first])
}

package daemon

import (
	"image"
	"math"
	"sort"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Decider turns an image score and a heatmap into a verdict and defect
// regions. It keeps scratch buffers between calls; use one per goroutine.
type Decider struct {
	labels []int32
	stack  []int32
}

// DecisionInput is what Decide needs about one part.
type DecisionInput struct {
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
func (d *Decider) Decide(in DecisionInput) (inspection.Verdict, string, []inspection.Region) {
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
func (d *Decider) regions(in DecisionInput) ([]inspection.Region, bool) {
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

package daemon

import (
	"image"
	"math"
	"testing"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// hot returns a w×h heatmap at 0.05 with the given squares at 0.9.
func hot(w, h int, squares ...image.Rectangle) *preprocess.Heatmap {
	hm := preprocess.NewHeatmap(w, h)
	for i := range hm.Values {
		hm.Values[i] = 0.05
	}
	for _, r := range squares {
		for v := r.Min.Y; v < r.Max.Y; v++ {
			for u := r.Min.X; u < r.Max.X; u++ {
				hm.Values[v*w+u] = 0.9
			}
		}
	}
	return hm
}

func iou(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	i := float64(in.Dx() * in.Dy())
	return i / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - i)
}

func TestDecide(t *testing.T) {
	roi := image.Rect(100, 50, 356, 306) // 256×256 frame pixels, heatmap 64×64: 4 px per cell
	base := DecisionInput{ROI: roi, Threshold: 0.5, PixelThreshold: 0.5, MaxRegions: 16}
	cases := []struct {
		name       string
		in         func(DecisionInput) DecisionInput
		verdict    inspection.Verdict
		reason     string
		boxes      []image.Rectangle // expected frame boxes, largest region first
		minIoU     float64
		areaOfBox0 int
	}{
		{"good part", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64), 0.05
			return in
		}, inspection.OK, inspection.ReasonPass, nil, 0, 0},
		{"region in frame pixels, identity", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 16, 16)), 0.4 // score below threshold: the region decides
			return in
		}, inspection.NG, inspection.ReasonRegion, []image.Rectangle{image.Rect(132, 82, 164, 114)}, 0.95, 32 * 32},
		// θ = +90°: the aligned frame's top-left samples the part's top-right
		// (preprocess.AffineMatrix's documented direction), so a defect at the
		// heatmap's top-left lies at the ROI's top-right in the frame.
		{"region through the inverse alignment, 90°", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 16, 16)), 0.9
			in.Transform = preprocess.Transform{Theta: math.Pi / 2}
			return in
		}, inspection.NG, inspection.ReasonScore, []image.Rectangle{image.Rect(100+192, 50+32, 100+224, 50+64)}, 0.85, 32 * 32},
		{"region shifted by tx", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 16, 16)), 0.9
			in.Transform = preprocess.Transform{Tx: 0.5} // a quarter of the width: +64 px
			return in
		}, inspection.NG, inspection.ReasonScore, []image.Rectangle{image.Rect(132+64, 82, 164+64, 114)}, 0.9, 32 * 32},
		{"small region dropped by min_defect_area", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 10, 10)), 0.4 // 2×2 cells = 64 frame px
			in.MinDefectArea = 65
			return in
		}, inspection.OK, inspection.ReasonPass, nil, 0, 0},
		{"largest first, at most max_regions", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(2, 2, 4, 4), image.Rect(30, 30, 40, 40), image.Rect(50, 2, 55, 7)), 0.9
			in.MaxRegions = 2
			return in
		}, inspection.NG, inspection.ReasonScore, []image.Rectangle{image.Rect(220, 170, 260, 210), image.Rect(300, 58, 320, 78)}, 0.9, 40 * 40},
		{"diagonal cells are one region (8-connected)", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(10, 10, 11, 11), image.Rect(11, 11, 12, 12)), 0.4
			return in
		}, inspection.NG, inspection.ReasonRegion, []image.Rectangle{image.Rect(140, 90, 148, 98)}, 0.9, 2 * 16},
		{"NaN score", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64), math.NaN()
			return in
		}, inspection.Error, inspection.ReasonNaN, nil, 0, 0},
		{"NaN in the heatmap", func(in DecisionInput) DecisionInput {
			in.Heatmap, in.Score = hot(64, 64), 0.1
			in.Heatmap.Values[100] = float32(math.NaN())
			return in
		}, inspection.Error, inspection.ReasonNaN, nil, 0, 0},
	}
	var d Decider
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, reason, regions := d.Decide(tc.in(base))
			if v != tc.verdict || reason != tc.reason {
				t.Fatalf("verdict %s %s, want %s %s", v, reason, tc.verdict, tc.reason)
			}
			if len(regions) != len(tc.boxes) {
				t.Fatalf("%d regions %+v, want %d", len(regions), regions, len(tc.boxes))
			}
			for i, want := range tc.boxes {
				r := regions[i]
				got := image.Rect(r.X, r.Y, r.X+r.Width, r.Y+r.Height)
				if q := iou(got, want); q < tc.minIoU {
					t.Errorf("region %d box %v, want %v (IoU %.2f)", i, got, want, q)
				}
			}
			if len(regions) > 0 && regions[0].Area != tc.areaOfBox0 {
				t.Errorf("area %d, want %d", regions[0].Area, tc.areaOfBox0)
			}
		})
	}
}

// BenchmarkDecide: a whole-frame defect (every heatmap pixel above the
// pixel threshold, e.g. a rusted part) is the worst case for labelling.
func BenchmarkDecide(b *testing.B) {
	hm := hot(256, 256, image.Rect(0, 0, 256, 256))
	in := DecisionInput{Heatmap: hm, Score: 0.9, ROI: image.Rect(0, 0, 1920, 1080), Threshold: 0.5, PixelThreshold: 0.5, MaxRegions: 16,
		Transform: preprocess.Transform{Theta: 0.2}}
	var d Decider
	b.ReportAllocs()
	for b.Loop() {
		d.Decide(in)
	}
}

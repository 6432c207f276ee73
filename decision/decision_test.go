package decision

import (
	"image"
	"math"
	"math/rand/v2"
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
	base := Input{ROI: roi, Threshold: 0.5, PixelThreshold: 0.5, MaxRegions: 16}
	cases := []struct {
		name       string
		in         func(Input) Input
		verdict    inspection.Verdict
		reason     string
		boxes      []image.Rectangle // expected frame boxes, largest region first
		minIoU     float64
		areaOfBox0 int
	}{
		{"good part", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64), 0.05
			return in
		}, inspection.OK, inspection.ReasonPass, nil, 0, 0},
		{"region in frame pixels, identity", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 16, 16)), 0.4 // score below threshold: the region decides
			return in
		}, inspection.NG, inspection.ReasonRegion, []image.Rectangle{image.Rect(132, 82, 164, 114)}, 0.95, 32 * 32},
		// θ = +90°: the aligned frame's top-left samples the part's top-right
		// (preprocess.AffineMatrix's documented direction), so a defect at the
		// heatmap's top-left lies at the ROI's top-right in the frame.
		{"region through the inverse alignment, 90°", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 16, 16)), 0.9
			in.Transform = preprocess.Transform{Theta: math.Pi / 2}
			return in
		}, inspection.NG, inspection.ReasonScore, []image.Rectangle{image.Rect(100+192, 50+32, 100+224, 50+64)}, 0.85, 32 * 32},
		{"region shifted by tx", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 16, 16)), 0.9
			in.Transform = preprocess.Transform{Tx: 0.5} // a quarter of the width: +64 px
			return in
		}, inspection.NG, inspection.ReasonScore, []image.Rectangle{image.Rect(132+64, 82, 164+64, 114)}, 0.9, 32 * 32},
		{"small region dropped by min_defect_area", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(8, 8, 10, 10)), 0.4 // 2×2 cells = 64 frame px
			in.MinDefectArea = 65
			return in
		}, inspection.OK, inspection.ReasonPass, nil, 0, 0},
		{"largest first, at most max_regions", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(2, 2, 4, 4), image.Rect(30, 30, 40, 40), image.Rect(50, 2, 55, 7)), 0.9
			in.MaxRegions = 2
			return in
		}, inspection.NG, inspection.ReasonScore, []image.Rectangle{image.Rect(220, 170, 260, 210), image.Rect(300, 58, 320, 78)}, 0.9, 40 * 40},
		{"diagonal cells are one region (8-connected)", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64, image.Rect(10, 10, 11, 11), image.Rect(11, 11, 12, 12)), 0.4
			return in
		}, inspection.NG, inspection.ReasonRegion, []image.Rectangle{image.Rect(140, 90, 148, 98)}, 0.9, 2 * 16},
		{"NaN score", func(in Input) Input {
			in.Heatmap, in.Score = hot(64, 64), math.NaN()
			return in
		}, inspection.Error, inspection.ReasonNaN, nil, 0, 0},
		{"NaN in the heatmap", func(in Input) Input {
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
	in := Input{Heatmap: hm, Score: 0.9, ROI: image.Rect(0, 0, 1920, 1080), Threshold: 0.5, PixelThreshold: 0.5, MaxRegions: 16,
		Transform: preprocess.Transform{Theta: 0.2}}
	var d Decider
	b.ReportAllocs()
	for b.Loop() {
		d.Decide(in)
	}
}

// TestLevel: Level is the pixel threshold at which Decide stops keeping a
// region, min_defect_area included, checked against Decide itself on
// every threshold around each heatmap value.
func TestLevel(t *testing.T) {
	roi := image.Rect(0, 0, 256, 256) // heatmap 64×64: 16 frame px per cell
	ramp := func() *preprocess.Heatmap {
		// A 3×3 blob peaking at 0.9 in the middle, 0.7 on its edges, on 0.05.
		hm := hot(64, 64)
		for v := 10; v < 13; v++ {
			for u := 10; u < 13; u++ {
				hm.Values[v*64+u] = 0.7
			}
		}
		hm.Values[11*64+11] = 0.9
		return hm
	}
	noisy := func() *preprocess.Heatmap {
		hm := preprocess.NewHeatmap(32, 32)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range hm.Values {
			hm.Values[i] = r.Float32()
		}
		return hm
	}
	cases := []struct {
		name    string
		heat    *preprocess.Heatmap
		minArea int
		want    float64 // NaN: only checked against Decide
	}{
		{"any region: the peak", ramp(), 0, float64(float32(0.9))},
		{"one cell is enough", ramp(), 16, float64(float32(0.9))},
		{"two cells: the blob's edge", ramp(), 17, float64(float32(0.7))},
		{"the blob is 9 cells", ramp(), 9 * 16, float64(float32(0.7))},
		{"larger than the blob: the background", ramp(), 9*16 + 1, float64(float32(0.05))},
		{"larger than the frame: never", ramp(), 256*256 + 1, math.Inf(-1)},
		{"flat heatmap", hot(64, 64), 0, float64(float32(0.05))},
		{"noise, any region", noisy(), 0, math.NaN()},
		{"noise, 20-cell regions", noisy(), 20 * 64, math.NaN()},
	}
	var d Decider
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Heatmap: tc.heat, ROI: roi, Threshold: 1, MinDefectArea: tc.minArea, MaxRegions: 1}
			if tc.heat.Width == 32 {
				in.ROI = image.Rect(0, 0, 256, 256) // 64 frame px per cell
			}
			level := d.Level(in)
			if !math.IsNaN(tc.want) && level != tc.want {
				t.Fatalf("level %v, want %v", level, tc.want)
			}
			for _, v := range append([]float32{-1, 0, 2}, tc.heat.Values...) {
				for _, p := range []float32{v, math.Nextafter32(v, -2), math.Nextafter32(v, 2)} {
					in.PixelThreshold = float64(p)
					_, _, regions := d.Decide(in)
					if kept := len(regions) > 0; kept != (float64(p) < level) {
						t.Fatalf("pixel threshold %v: region kept %v, level %v", p, kept, level)
					}
				}
			}
		})
	}
	nan := hot(8, 8)
	nan.Values[3] = float32(math.NaN())
	if l := d.Level(Input{Heatmap: nan, ROI: roi}); !math.IsNaN(l) {
		t.Errorf("NaN heatmap: level %v, want NaN", l)
	}
	if l := d.Level(Input{ROI: roi}); !math.IsInf(l, -1) {
		t.Errorf("no heatmap: level %v, want -Inf", l)
	}
}

// BenchmarkLevel: training finds each calibration good's level on its
// 256×256 heatmap (noise under a few blobs).
func BenchmarkLevel(b *testing.B) {
	hm := preprocess.NewHeatmap(256, 256)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range hm.Values {
		hm.Values[i] = 0.3 + 0.2*r.Float32()
	}
	for _, c := range []image.Point{{40, 40}, {200, 120}} {
		for v := c.Y; v < c.Y+6; v++ {
			for u := c.X; u < c.X+6; u++ {
				hm.Values[v*256+u] = 0.8
			}
		}
	}
	in := Input{Heatmap: hm, ROI: image.Rect(0, 0, 900, 900), MaxRegions: 1}
	var d Decider
	b.ReportAllocs()
	for b.Loop() {
		d.Level(in)
	}
}

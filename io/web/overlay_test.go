package web

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"testing"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// greyFrame returns a uniform mid-grey BGR frame.
func greyFrame(r image.Rectangle) *preprocess.BGR {
	f := preprocess.NewBGR(r)
	for i := range f.Pix {
		f.Pix[i] = 128
	}
	return f
}

// renderJPEG renders and round-trips through JPEG, as /api/latest.jpg does.
func renderJPEG(t *testing.T, s *inspection.Snapshot, regions []inspection.Region, pt float64) image.Image {
	t.Helper()
	e := &snapshotEntry{res: inspection.Result{ID: "r1", Regions: regions, PixelThreshold: pt}, snap: s}
	b, err := e.JPEG()
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// hot reports whether c is clearly tinted by the heat colours (red and
// yellow dominate blue) rather than the grey frame.
func hot(c color.Color) bool {
	r, _, b, _ := c.RGBA()
	return int(r>>8)-int(b>>8) > 60
}

// TestOverlayLandsOnDefect puts a bright square on a frame, prepares the
// defect mask exactly like the engine's model input (crop, alignment warp,
// resize) to get a heatmap in the aligned frame, renders the overlay and
// checks that the hot pixels land on the square in the frame's own pose.
func TestOverlayLandsOnDefect(t *testing.T) {
	frameRect := image.Rect(0, 0, 400, 300)
	roi := image.Rect(40, 30, 360, 270) // 320×240
	square := image.Rect(230, 80, 262, 112)
	tests := []struct {
		name   string
		tr     preprocess.Transform
		hw, hh int
	}{
		{"identity", preprocess.Transform{}, 160, 120},
		{"identity, square heatmap", preprocess.Transform{}, 128, 128},
		{"rotated 25°", preprocess.Transform{Theta: 25 * math.Pi / 180}, 160, 120},
		{"rotated −40° and shifted", preprocess.Transform{Tx: 0.12, Ty: -0.08, Theta: -40 * math.Pi / 180}, 128, 128},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mask := image.NewGray(frameRect)
			for y := square.Min.Y; y < square.Max.Y; y++ {
				for x := square.Min.X; x < square.Max.X; x++ {
					mask.SetGray(x, y, color.Gray{255})
				}
			}
			hm := heatFromMask(t, mask, roi, tt.tr, tt.hw, tt.hh, 1)
			img := renderJPEG(t, &inspection.Snapshot{Frame: greyFrame(frameRect), ROI: roi, Transform: tt.tr, Heatmap: hm}, nil, 0.5)
			if img.Bounds().Size() != roi.Size() {
				t.Fatalf("image %v, want the ROI size %v", img.Bounds(), roi.Size())
			}
			in := square.Sub(roi.Min)
			var inHot, inN, outHot, outN int
			var sx, sy float64
			nHot := 0
			b := img.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					h := hot(img.At(x, y))
					p := image.Pt(x, y)
					if h {
						sx, sy = sx+float64(x), sy+float64(y)
						nHot++
					}
					switch {
					case p.In(in.Inset(4)):
						inN++
						if h {
							inHot++
						}
					case !p.In(in.Inset(-6)):
						outN++
						if h {
							outHot++
						}
					}
				}
			}
			if nHot > 0 {
				cx, cy := sx/float64(nHot), sy/float64(nHot)
				wx, wy := float64(in.Min.X+in.Max.X-1)/2, float64(in.Min.Y+in.Max.Y-1)/2
				if math.Hypot(cx-wx, cy-wy) > 3 {
					t.Errorf("hot centroid (%.1f, %.1f), want the square's centre (%.1f, %.1f)", cx, cy, wx, wy)
				}
			}
			if float64(inHot) < 0.9*float64(inN) {
				t.Errorf("%d of %d pixels inside the square are hot", inHot, inN)
			}
			if outHot > 0 {
				t.Errorf("%d of %d pixels away from the square are hot", outHot, outN)
			}
			// The grey frame shows through unchanged away from the defect.
			if c := color.RGBAModel.Convert(img.At(5, 5)).(color.RGBA); absDiff(c.R, 128) > 6 || absDiff(c.B, 128) > 6 {
				t.Errorf("background %v, want grey 128", c)
			}
		})
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

func TestOverlayRegionsAndFrames(t *testing.T) {
	frameRect := image.Rect(0, 0, 200, 150)
	roi := image.Rect(20, 10, 180, 140)
	region := inspection.Region{X: 60, Y: 50, Width: 40, Height: 30}
	magenta := func(c color.Color) bool {
		r, g, b, _ := c.RGBA()
		return r>>8 > 200 && g>>8 < 90 && b>>8 > 200
	}
	rgba := image.NewRGBA(frameRect)
	for i := range rgba.Pix {
		rgba.Pix[i] = 128
	}
	gray := image.NewGray(frameRect)
	for i := range gray.Pix {
		gray.Pix[i] = 128
	}
	nrgba := image.NewNRGBA(frameRect) // the generic path
	for i := range nrgba.Pix {
		nrgba.Pix[i] = 128
	}
	for name, frame := range map[string]image.Image{"bgr": greyFrame(frameRect), "rgba": rgba, "gray": gray, "nrgba": nrgba} {
		t.Run(name, func(t *testing.T) {
			img := renderJPEG(t, &inspection.Snapshot{Frame: frame, ROI: roi}, []inspection.Region{region}, 0.5)
			// The outline runs just outside the region: at its top-left
			// corner minus one pixel, in ROI coordinates.
			x0, y0 := region.X-roi.Min.X, region.Y-roi.Min.Y
			if c := img.At(x0-1, y0+10); !magenta(c) {
				t.Errorf("left edge %v, want magenta", c)
			}
			if c := img.At(x0+region.Width, y0+region.Height); !magenta(c) {
				t.Errorf("bottom-right corner %v, want magenta", c)
			}
			if c := img.At(x0+region.Width/2, y0+region.Height/2); magenta(c) || hot(c) {
				t.Errorf("inside the region %v, want the frame", c)
			}
		})
	}
}

func TestOverlayDownscaleAndErrors(t *testing.T) {
	big := greyFrame(image.Rect(0, 0, 2600, 1000))
	img, err := renderOverlay(&inspection.Snapshot{Frame: big}, nil, 0.5, overlayMaxSide)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 1280 || img.Bounds().Dy() != 492 {
		t.Errorf("downscaled to %v, want 1280×492", img.Bounds())
	}
	tests := []struct {
		name string
		s    *inspection.Snapshot
		want string
	}{
		{"nil", nil, "snapshot has no frame"},
		{"no frame", &inspection.Snapshot{}, "snapshot has no frame"},
		{"roi outside", &inspection.Snapshot{Frame: big, ROI: image.Rect(2500, 0, 2700, 10)}, "ROI (2500,0)-(2700,10) lies outside the (0,0)-(2600,1000) frame"},
		{"singular", &inspection.Snapshot{Frame: big, Transform: preprocess.Transform{Theta: math.NaN()}, Heatmap: preprocess.NewHeatmap(4, 4)}, "alignment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderOverlay(tt.s, nil, 0.5, 0)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	// A heatmap whose size disagrees with its values is ignored, not a panic.
	bad := &preprocess.Heatmap{Width: 10, Height: 10, Values: make([]float32, 5)}
	if _, err := renderOverlay(&inspection.Snapshot{Frame: big, Heatmap: bad}, nil, 0.5, 0); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkOverlay(b *testing.B) {
	frame, roi, mask := syntheticPart(6)
	roi = image.Rect(0, 0, 640, 480)
	tr := preprocess.Transform{Tx: 0.03, Ty: -0.02, Theta: 6 * math.Pi / 180}
	s := &inspection.Snapshot{Frame: frame, ROI: roi, Transform: tr, Heatmap: heatFromMask(b, mask, roi, tr, 256, 256, 0.7)}
	regions := regionsOf(mask)
	b.Run("render", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := renderOverlay(s, regions, 0.35, overlayMaxSide); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("render+jpeg", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := &snapshotEntry{res: inspection.Result{Regions: regions, PixelThreshold: 0.35}, snap: s}
			if _, err := e.JPEG(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

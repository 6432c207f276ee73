package archive

import (
	"fmt"
	"image"
	"math"
	"testing"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// hotCentroid returns the centroid and count of the pixels of img in the
// heatmap's hottest colour (red; the region boxes are magenta).
func hotCentroid(img image.Image) (x, y float64, n int) {
	b := img.Bounds()
	for py := b.Min.Y; py < b.Max.Y; py++ {
		for px := b.Min.X; px < b.Max.X; px++ {
			r, g, bl, _ := img.At(px, py).RGBA()
			if r>>8 > 170 && g>>8 < 110 && bl>>8 < 110 {
				x += float64(px)
				y += float64(py)
				n++
			}
		}
	}
	if n > 0 {
		x, y = x/float64(n), y/float64(n)
	}
	return x, y, n
}

func rgb(img image.Image, x, y int) (r, g, b int) {
	R, G, B, _ := img.At(x, y).RGBA()
	return int(R >> 8), int(G >> 8), int(B >> 8)
}

func isMagenta(img image.Image, x, y int) bool {
	r, g, b := rgb(img, x, y)
	return r > 180 && b > 180 && g < 90
}

var transforms = []struct {
	name string
	t    preprocess.Transform
}{
	{"identity", preprocess.Transform{}},
	{"rotation 20deg and shift", preprocess.Transform{Tx: 0.1, Ty: -0.06, Theta: 20 * math.Pi / 180}},
	{"rotation -35deg", preprocess.Transform{Tx: -0.05, Ty: 0.04, Theta: -35 * math.Pi / 180}},
}

// TestOverlayHotSquare puts a hot square into the heatmap and checks that it
// appears where the alignment maps it in the frame.
func TestOverlayHotSquare(t *testing.T) {
	for _, tc := range transforms {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			s := snapshot() // ROI (40,30)-(280,210), heatmap 60×45: 4 px per heatmap pixel
			s.Transform = tc.t
			for y := 10; y < 18; y++ {
				for x := 20; x < 28; x++ {
					s.Heatmap.Values[y*60+x] = 1
				}
			}
			r := result(1, inspection.NG)
			r.Score, r.Threshold = 1, 0.5
			r.Snapshot = s
			if err := e.a.Deliver(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			ov := decodeJPEG(t, setPath(e, r, suffixOverlay))
			// Forward mapping as preprocess.Fill does it: heatmap centre
			// (23.5, 13.5) → crop grid → warp → frame.
			g0, g1 := (23.5+0.5)*4-0.5, (13.5+0.5)*4-0.5
			px, py := tc.t.Pixel(240, 180).Apply(g0, g1)
			wantX, wantY := px+40, py+30
			x, y, n := hotCentroid(ov)
			if n < 600 || n > 1400 {
				t.Errorf("%d hot pixels, want about %d", n, 32*32)
			}
			if math.Hypot(x-wantX, y-wantY) > 1.5 {
				t.Errorf("hot centroid (%.1f, %.1f), want (%.1f, %.1f)", x, y, wantX, wantY)
			}
			// The plain frame has no overlay.
			if _, _, n := hotCentroid(decodeJPEG(t, setPath(e, r, suffixJPG))); n != 0 {
				t.Errorf("%d hot pixels in the plain frame", n)
			}
			if r, g, b := rgb(decodeJPEG(t, setPath(e, r, suffixJPG)), int(wantX), int(wantY)); abs(r-128) > 4 || abs(g-128) > 4 || abs(b-128) > 4 {
				t.Errorf("plain frame pixel (%d, %d, %d), want grey 128", r, g, b)
			}
			// Outside the ROI the frame is untouched.
			if r, g, b := rgb(ov, 10, 10); abs(r-128) > 4 || abs(g-128) > 4 || abs(b-128) > 4 {
				t.Errorf("pixel outside the ROI (%d, %d, %d), want grey 128", r, g, b)
			}
			// Region (200,40) 30×20, outlined just outside.
			for _, p := range []image.Point{{198, 50}, {231, 50}, {215, 38}, {215, 61}, {198, 38}} {
				if !isMagenta(ov, p.X, p.Y) {
					r, g, b := rgb(ov, p.X, p.Y)
					t.Errorf("box pixel %v is (%d, %d, %d), want magenta", p, r, g, b)
				}
			}
			for _, p := range []image.Point{{215, 50}, {203, 45}, {193, 50}, {237, 50}, {215, 33}, {215, 67}} {
				if isMagenta(ov, p.X, p.Y) {
					t.Errorf("pixel %v is magenta, outside the box outline", p)
				}
			}
		})
	}
}

// TestOverlayMatchesPreprocess checks the overlay against the model's own
// geometry: a bright spot in the frame is prepared with preprocess.Fill as
// the engine does, the heatmap is made hot where the spot landed in the
// model input, and the overlay must show the heat on the spot.
func TestOverlayMatchesPreprocess(t *testing.T) {
	roi := image.Rect(40, 30, 280, 210)
	const W, H = 60, 45
	for _, tc := range transforms {
		for _, spot := range []image.Point{{150, 100}, {200, 150}, {90, 70}} {
			t.Run(fmt.Sprintf("%s/spot %v", tc.name, spot), func(t *testing.T) {
				frame := greyFrame(320, 240, 0)
				for y := spot.Y; y < spot.Y+12; y++ {
					for x := spot.X; x < spot.X+12; x++ {
						i := frame.PixOffset(x, y)
						frame.Pix[i], frame.Pix[i+1], frame.Pix[i+2] = 255, 255, 255
					}
				}
				spec := preprocess.Spec{Width: W, Height: H, Channels: 1, Crop: roi}
				warp := tc.t.Pixel(roi.Dx(), roi.Dy())
				spec.Warp = &warp
				in := make([]float32, spec.Len())
				if err := preprocess.Fill(in, frame, spec); err != nil {
					t.Fatal(err)
				}
				hm := preprocess.NewHeatmap(W, H)
				hot := 0
				for i, v := range in {
					if v > 0.5 {
						hm.Values[i] = 1
						hot++
					}
				}
				if hot == 0 {
					t.Fatal("the spot is not in the model input")
				}
				e := newEnv(t, nil)
				r := result(1, inspection.NG)
				r.Score, r.Threshold, r.Regions = 1, 0.5, nil
				r.Snapshot = &inspection.Snapshot{Frame: greyFrame(320, 240, 128), ROI: roi, Transform: tc.t, Heatmap: hm}
				if err := e.a.Deliver(t.Context(), r); err != nil {
					t.Fatal(err)
				}
				x, y, n := hotCentroid(decodeJPEG(t, setPath(e, r, suffixOverlay)))
				wantX, wantY := float64(spot.X)+5.5, float64(spot.Y)+5.5
				if n == 0 || math.Hypot(x-wantX, y-wantY) > 3 {
					t.Errorf("hot centroid (%.1f, %.1f) of %d pixels, want the spot at (%.1f, %.1f)", x, y, n, wantX, wantY)
				}
			})
		}
	}
}

func TestOverlayBadInputs(t *testing.T) {
	tests := []struct {
		name string
		edit func(*inspection.Snapshot)
		want int // files written
	}{
		{"heatmap size mismatch", func(s *inspection.Snapshot) { s.Heatmap.Values = s.Heatmap.Values[:10] }, 2},
		{"singular transform", func(s *inspection.Snapshot) { s.Transform.Theta = math.NaN() }, 2},
		{"no heatmap", func(s *inspection.Snapshot) { s.Heatmap = nil }, 2},
		{"empty ROI means the frame", func(s *inspection.Snapshot) { s.ROI = image.Rectangle{} }, 3},
		{"ROI outside the frame", func(s *inspection.Snapshot) { s.ROI = image.Rect(300, 200, 900, 900) }, 3},
		{"NaN heatmap", func(s *inspection.Snapshot) { s.Heatmap.Values[5] = float32(math.NaN()) }, 3},
		{"offset RGBA frame", func(s *inspection.Snapshot) {
			s.Frame = image.NewRGBA(image.Rect(10, 10, 330, 250))
		}, 3},
		{"grey frame", func(s *inspection.Snapshot) { s.Frame = image.NewGray(image.Rect(0, 0, 64, 48)) }, 3},
		{"no frame", func(s *inspection.Snapshot) { s.Frame = nil }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			r := result(1, inspection.NG)
			r.Snapshot = snapshot()
			tc.edit(r.Snapshot)
			if err := e.a.Deliver(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			if got := files(t, e.dir); len(got) != tc.want {
				t.Errorf("files = %v, want %d", got, tc.want)
			}
			if s := e.a.Stats(); s.Errors != 0 || s.Written != 1 {
				t.Errorf("Stats = %+v", s)
			}
		})
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

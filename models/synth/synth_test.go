package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/dataset"
)

func pix(img image.Image) []byte {
	switch m := img.(type) {
	case *image.Gray:
		return m.Pix
	case *image.RGBA:
		return m.Pix
	}
	return nil
}

func TestRenderReproducibleAndDistinct(t *testing.T) {
	pose := Pose{RotationDeg: 12, ShiftXFrac: 0.05, ShiftYFrac: -0.03}
	a, err := Render(Gear, 64, 48, false, pose, Dent, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Render(Gear, 64, 48, false, pose, Dent, 7)
	if !bytes.Equal(pix(a.Image), pix(b.Image)) || !bytes.Equal(a.Mask.Pix, b.Mask.Pix) {
		t.Fatal("same arguments gave different images")
	}
	c, _ := Render(Gear, 64, 48, false, pose, Dent, 8)
	if bytes.Equal(pix(a.Image), pix(c.Image)) {
		t.Error("different seeds gave the same image")
	}
	// The objects differ from each other.
	imgs := map[string][]byte{}
	for _, o := range Objects() {
		s, err := Render(o, 64, 64, true, Pose{}, None, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Image.(*image.Gray); !ok {
			t.Fatalf("grey render is %T, want *image.Gray", s.Image)
		}
		imgs[o] = pix(s.Image)
	}
	for _, o1 := range Objects() {
		for _, o2 := range Objects() {
			if o1 < o2 && meanAbsDiff(imgs[o1], imgs[o2]) < 5 {
				t.Errorf("%s and %s look alike (mean abs diff %.1f)", o1, o2, meanAbsDiff(imgs[o1], imgs[o2]))
			}
		}
	}
}

func meanAbsDiff(a, b []byte) float64 {
	s := 0.0
	for i := range a {
		s += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return s / float64(len(a))
}

// TestDefectMasksExact renders every object with every defect and checks
// that the defective image differs from the good one only under the mask,
// and on most of the mask.
func TestDefectMasksExact(t *testing.T) {
	for _, o := range Objects() {
		for _, d := range Defects() {
			for _, grey := range []bool{false, true} {
				pose := Pose{RotationDeg: -20, ShiftXFrac: 0.04, ShiftYFrac: 0.06}
				good, err := Render(o, 80, 64, grey, pose, None, 42)
				if err != nil {
					t.Fatal(err)
				}
				if good.MaskPixels() != 0 {
					t.Fatalf("%s good: mask has %d pixels", o, good.MaskPixels())
				}
				bad, err := Render(o, 80, 64, grey, pose, d, 42)
				if err != nil {
					t.Fatal(err)
				}
				gp, bp := pix(good.Image), pix(bad.Image)
				ch := len(gp) / (80 * 64)
				inMask, changedInMask := 0, 0
				for p, m := range bad.Mask.Pix {
					changed := !bytes.Equal(gp[p*ch:(p+1)*ch], bp[p*ch:(p+1)*ch])
					if m != 0 && m != 255 {
						t.Fatalf("%s/%s: mask value %d, want 0 or 255", o, d, m)
					}
					if m == 0 && changed {
						t.Fatalf("%s/%s grey=%v: pixel %d changed outside the mask", o, d, grey, p)
					}
					if m != 0 {
						inMask++
						if changed {
							changedInMask++
						}
					}
				}
				if inMask < 4 || float64(changedInMask) < 0.7*float64(inMask) {
					t.Errorf("%s/%s grey=%v: mask %d pixels, %d changed; want >= 4 and >= 70%% changed", o, d, grey, inMask, changedInMask)
				}
			}
		}
	}
}

// TestPoseMatrix checks that a defect moves with the part as Pose.Matrix says.
func TestPoseMatrix(t *testing.T) {
	const w, h = 96, 80
	centroid := func(m *image.Gray) (float64, float64) {
		var sx, sy, n float64
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				if m.Pix[y*m.Stride+x] != 0 {
					sx, sy, n = sx+float64(x), sy+float64(y), n+1
				}
			}
		}
		return sx / n, sy / n
	}
	zero, err := Render(Plate, w, h, false, Pose{}, Dent, 3)
	if err != nil {
		t.Fatal(err)
	}
	pose := Pose{RotationDeg: 35, ShiftXFrac: -0.08, ShiftYFrac: 0.1}
	moved, _ := Render(Plate, w, h, false, pose, Dent, 3)
	x0, y0 := centroid(zero.Mask)
	x1, y1 := centroid(moved.Mask)
	m := pose.Matrix(w, h)
	px, py := m[0][0]*x0+m[0][1]*y0+m[0][2], m[1][0]*x0+m[1][1]*y0+m[1][2]
	if math.Hypot(px-x1, py-y1) > 1.5 {
		t.Errorf("defect centroid at (%.1f,%.1f), matrix predicts (%.1f,%.1f) from (%.1f,%.1f)", x1, y1, px, py, x0, y0)
	}
	// Counter-clockwise on screen: a point right of the centre moves up.
	// By hand, about (5,5): x' = y, y' = 10 − x, then shifted by (2, −1).
	r := RotShiftMatrix(90, 2, -1, 11, 11)
	want := [2][3]float64{{0, 1, 2}, {-1, 0, 9}}
	for i := range 2 {
		for j := range 3 {
			if math.Abs(r[i][j]-want[i][j]) > 1e-12 {
				t.Fatalf("RotShiftMatrix(90°, (2,−1), 11×11) = %v, want %v", r, want)
			}
		}
	}
	// Rendering with the 90° pose turns the zero-pose image exactly: on a
	// square image with an odd side the rotation maps pixel centres onto
	// pixel centres.
	const n = 63
	flat, _ := Render(Plate, n, n, true, Pose{}, Dent, 3)
	turned, _ := Render(Plate, n, n, true, Pose{RotationDeg: 90}, Dent, 3)
	fm, tm := flat.Mask, turned.Mask
	same, total := 0, 0
	for y := range n {
		for x := range n {
			// Source pixel (x, y) goes to (y, n−1−x).
			if fm.Pix[y*fm.Stride+x] != 0 {
				total++
				if tm.Pix[(n-1-x)*tm.Stride+y] != 0 {
					same++
				}
			}
		}
	}
	if total == 0 || float64(same) < 0.9*float64(total) {
		t.Errorf("90° render: %d of %d defect pixels where the hand-computed rotation puts them", same, total)
	}
}

func TestGenerate(t *testing.T) {
	opts := Options{Seed: 9, Objects: []string{Gear, Bracket}, Width: 48, Height: 40, TrainGood: 3, TestGood: 2, TestPerDefect: 2, MaxRotationDeg: 25, MaxShiftFrac: 0.1, Grey: true}
	d1, d2 := t.TempDir(), t.TempDir()
	if err := Generate(context.Background(), d1, opts); err != nil {
		t.Fatal(err)
	}
	if err := Generate(context.Background(), d2, opts); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(d1, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		files++
		rel, _ := filepath.Rel(d1, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(d2, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs with the same seed (%v)", rel, err)
		}
		if strings.HasSuffix(p, ".pose.json") {
			var rec PoseRecord
			if err := json.Unmarshal(a, &rec); err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			if math.Abs(rec.RotationDeg) > 25 || math.Abs(rec.ShiftXFrac) > 0.1 || math.Abs(rec.ShiftYFrac) > 0.1 {
				t.Errorf("%s: pose %+v outside ±25° / ±0.1", rel, rec.Pose)
			}
			// Independently of Pose.Matrix: the linear part is the rotation
			// [cos sin; −sin cos] and the image centre lands on centre + shift.
			m := rec.Matrix
			c, sn := math.Cos(rec.RotationDeg*math.Pi/180), math.Sin(rec.RotationDeg*math.Pi/180)
			cx, cy := 47.0/2, 39.0/2
			mx, my := m[0][0]*cx+m[0][1]*cy+m[0][2], m[1][0]*cx+m[1][1]*cy+m[1][2]
			if math.Abs(m[0][0]-c)+math.Abs(m[0][1]-sn)+math.Abs(m[1][0]+sn)+math.Abs(m[1][1]-c) > 1e-9 ||
				math.Abs(mx-(cx+rec.ShiftXFrac*48))+math.Abs(my-(cy+rec.ShiftYFrac*40)) > 1e-9 || rec.Width != 48 || rec.Height != 40 {
				t.Errorf("%s: matrix %v does not match pose %+v", rel, rec.Matrix, rec.Pose)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Per object: 7 images + 7 poses train/test good, 10 defect images + 10 poses + 10 masks.
	if want := 2 * (2*(3+2) + 3*5*2); files != want {
		t.Errorf("%d files, want %d", files, want)
	}
	cats, err := dataset.Open(d1)
	if err != nil {
		t.Fatal(err)
	}
	if len(cats) != 2 || !cats[0].HasMasks || len(cats[0].Test) != 12 || len(cats[0].Defects()) != 5 {
		t.Fatalf("dataset view: %d categories, masks %v, %d test images", len(cats), cats[0].HasMasks, len(cats[0].Test))
	}
	for _, s := range cats[1].Test {
		img, m, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := img.(*image.Gray); !ok {
			t.Errorf("%s: %T, want grey", s.Path, img)
		}
		if (m.Count() > 0) != s.Anomalous() {
			t.Errorf("%s: %d mask pixels, anomalous %v", s.Path, m.Count(), s.Anomalous())
		}
	}
	// A different seed changes the images.
	d3 := t.TempDir()
	opts.Seed = 10
	if err := Generate(context.Background(), d3, opts); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(d1, Gear, "train", "good", "000.png"))
	b, _ := os.ReadFile(filepath.Join(d3, Gear, "train", "good", "000.png"))
	if bytes.Equal(a, b) {
		t.Error("seeds 9 and 10 gave the same image")
	}
}

func TestOptionErrors(t *testing.T) {
	ok := Options{Width: 32, Height: 32, TrainGood: 1, MaxRotationDeg: 10, MaxShiftFrac: 0.1}
	cases := []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"object", func(o *Options) { o.Objects = []string{"widget"} }, `unknown object "widget" in Options.Objects, expected one of [gear bracket plate]`},
		{"size", func(o *Options) { o.Width = 8 }, "image size 8x32, expected 16 to 8192"},
		{"train", func(o *Options) { o.TrainGood = 0 }, "TrainGood 0, expected at least 1"},
		{"counts", func(o *Options) { o.TestPerDefect = -1 }, "TestPerDefect -1, expected >= 0"},
		{"rotation", func(o *Options) { o.MaxRotationDeg = 200 }, "MaxRotationDeg 200, expected 0 to 180"},
		{"shift", func(o *Options) { o.MaxShiftFrac = math.NaN() }, "MaxShiftFrac NaN, expected 0 to 0.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.mod(&o)
			err := Generate(context.Background(), t.TempDir(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Render(Gear, 32, 32, false, Pose{}, Defect("rust"), 1); err == nil || !strings.Contains(err.Error(), `unknown defect "rust"`) {
		t.Errorf("Render(rust) error = %v", err)
	}
}

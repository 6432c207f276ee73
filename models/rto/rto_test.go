package rto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/synth"
)

// synthTree writes a small synthetic dataset and returns its root.
func synthTree(t *testing.T, grey bool) string {
	t.Helper()
	src := t.TempDir()
	err := synth.Generate(context.Background(), src, synth.Options{Seed: 5, Objects: []string{synth.Plate, synth.Gear}, Width: 48, Height: 40,
		TrainGood: 2, TestGood: 1, TestPerDefect: 1, Grey: grey})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// readTree returns the files under root by slash-separated relative path.
func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func centroid(m *dataset.Mask) (float64, float64, int) {
	var sx, sy float64
	n := 0
	for i, v := range m.Pix {
		if v {
			sx, sy, n = sx+float64(i%m.W), sy+float64(i/m.W), n+1
		}
	}
	return sx / float64(n), sy / float64(n), n
}

func TestGenerate(t *testing.T) {
	src := synthTree(t, false)
	opts := Options{MaxRotationDeg: 30, MaxShiftFrac: 0.1, Seed: 11, Border: BorderConstant}
	d1, d2 := t.TempDir(), t.TempDir()
	if err := Generate(context.Background(), src, d1, opts); err != nil {
		t.Fatal(err)
	}
	if err := Generate(context.Background(), src, d2, opts); err != nil {
		t.Fatal(err)
	}
	f1, f2 := readTree(t, d1), readTree(t, d2)
	// Per object: 3 good + 5 defect images, each with a record, and 5 masks.
	if want := 2 * (8*2 + 5); len(f1) != want {
		t.Errorf("%d output files, want %d", len(f1), want)
	}
	for rel, b := range f1 {
		if !bytes.Equal(b, f2[rel]) {
			t.Errorf("%s differs between two runs with the same seed", rel)
		}
		if strings.HasSuffix(rel, ".pose.json") {
			t.Errorf("%s copied, want only images, masks and records", rel)
		}
	}

	// Walk order and other files do not matter: a tree with only one
	// object gives the same files for that object.
	single := t.TempDir()
	if err := os.Rename(filepath.Join(src, synth.Gear), filepath.Join(single, synth.Gear)); err != nil {
		t.Fatal(err)
	}
	d3 := t.TempDir()
	if err := Generate(context.Background(), single, d3, opts); err != nil {
		t.Fatal(err)
	}
	for rel, b := range readTree(t, d3) {
		if !bytes.Equal(b, f1[rel]) {
			t.Errorf("%s depends on the rest of the tree", rel)
		}
	}

	// Records: within range, matrix consistent; masks follow their image's
	// transform (the defect centroid moves as the matrix says).
	cats, err := dataset.Open(d1)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, c := range cats {
		for _, s := range append(c.Train, c.Test...) {
			var rec Record
			b := f1[strings.TrimSuffix(filepath.ToSlash(mustRel(t, d1, s.Path)), ".png")+".rto.json"]
			if err := json.Unmarshal(b, &rec); err != nil {
				t.Fatalf("%s record: %v", s.Path, err)
			}
			if math.Abs(rec.RotationDeg) > 30 || math.Abs(rec.ShiftXPx) > 4.8 || math.Abs(rec.ShiftYPx) > 4.0 || rec.Border != BorderConstant {
				t.Errorf("%s: record %+v out of range", s.Path, rec)
			}
			if err := matrixMatchesRecord(rec, 48, 40); err != "" || rec.Width != 48 || rec.Height != 40 {
				t.Errorf("%s: matrix %v inconsistent with %+v: %s", s.Path, rec.Matrix, rec, err)
			}
			// The recorded matrix, applied to the source image, gives the output.
			srcImg, err := dataset.LoadImage(filepath.Join(src, mustRel(t, d1, s.Path)))
			if err != nil {
				if srcImg, err = dataset.LoadImage(filepath.Join(single, mustRel(t, d1, s.Path))); err != nil {
					t.Fatal(err)
				}
			}
			outImg, err := dataset.LoadImage(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			if worst, at := warpError(srcImg, outImg, rec.Matrix); worst > 3 {
				t.Errorf("%s: output differs by %.1f grey levels at %v from the source sampled through the recorded matrix", s.Path, worst, at)
			}
			if rec.RotationDeg != 0 {
				moved++
			}
			if s.MaskPath == "" {
				continue
			}
			// The gear tree was moved to single above; plate masks are still in src.
			rel := mustRel(t, d1, s.MaskPath)
			orig, err := dataset.LoadMask(filepath.Join(src, rel))
			if err != nil {
				if orig, err = dataset.LoadMask(filepath.Join(single, rel)); err != nil {
					t.Fatal(err)
				}
			}
			out, err := dataset.LoadMask(s.MaskPath)
			if err != nil {
				t.Fatal(err)
			}
			x0, y0, n0 := centroid(orig)
			x1, y1, n1 := centroid(out)
			m := rec.Matrix
			px, py := m[0][0]*x0+m[0][1]*y0+m[0][2], m[1][0]*x0+m[1][1]*y0+m[1][2]
			if n1 == 0 || math.Abs(float64(n1-n0)) > 0.5*float64(n0)+3 || math.Hypot(px-x1, py-y1) > 1.5 {
				t.Errorf("%s: mask centroid (%.1f,%.1f) of %d px, matrix predicts (%.1f,%.1f) of %d px", s.MaskPath, x1, y1, n1, px, py, n0)
			}
		}
	}
	if moved == 0 {
		t.Error("no image was rotated")
	}
}

func mustRel(t *testing.T, base, p string) string {
	t.Helper()
	r, err := filepath.Rel(base, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestIdentityAndShift(t *testing.T) {
	src := synthTree(t, true)
	dst := t.TempDir()
	if err := Generate(context.Background(), src, dst, Options{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	in, out := readTree(t, src), readTree(t, dst)
	for rel, b := range in {
		if !strings.HasSuffix(rel, ".png") {
			continue
		}
		a, _ := png.Decode(bytes.NewReader(b))
		c, err := png.Decode(bytes.NewReader(out[rel]))
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if !bytes.Equal(a.(*image.Gray).Pix, c.(*image.Gray).Pix) {
			t.Errorf("%s: zero transform changed the image", rel)
		}
	}

	// An integer shift moves pixels exactly, image and mask alike.
	img := image.NewRGBA(image.Rect(0, 0, 9, 7))
	mask := &dataset.Mask{W: 9, H: 7, Pix: make([]bool, 63)}
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	mask.Pix[2*9+3] = true
	m := Matrix(0, 2, -1, 9, 7)
	w, err := Warp(img, m, BorderConstant)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.At(5, 1), img.At(3, 2); got != want {
		t.Errorf("shifted pixel (5,1) = %v, want source (3,2) = %v", got, want)
	}
	if got := w.At(0, 3); got != (color.RGBA{0, 0, 0, 255}) {
		t.Errorf("constant border pixel = %v, want opaque black", got)
	}
	wm := WarpMask(mask, m, BorderConstant)
	for i, v := range wm.Pix {
		if want := i == 1*9+5; (v == 255) != want || (v != 0 && v != 255) {
			t.Errorf("warped mask pixel %d = %d, want defect only at (5,1)", i, v)
		}
	}
	rep, _ := Warp(img, m, BorderReplicate)
	if got, want := rep.At(0, 3), img.At(0, 4); got != want {
		t.Errorf("replicated border pixel = %v, want edge %v", got, want)
	}
}

func TestErrors(t *testing.T) {
	img := func() []byte {
		var b bytes.Buffer
		_ = png.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 6)))
		return b.Bytes()
	}()
	small := func() []byte {
		var b bytes.Buffer
		_ = png.Encode(&b, image.NewGray(image.Rect(0, 0, 5, 6)))
		return b.Bytes()
	}()
	cases := []struct {
		name  string
		files map[string][]byte
		opts  Options
		dst   string // relative to the source when set
		want  string
	}{
		{"border", nil, Options{Border: "wrap"}, "", `border mode "wrap", expected "replicate" or "constant"`},
		{"rotation", nil, Options{MaxRotationDeg: -1}, "", "MaxRotationDeg -1, expected 0 to 180"},
		{"shift", nil, Options{MaxShiftFrac: 0.7}, "", "MaxShiftFrac 0.7, expected 0 to 0.5"},
		{"dst inside src", map[string][]byte{"c/train/good/a.png": img}, Options{}, "out", "overlap (after resolving links)"},
		{"empty source", map[string][]byte{"c/train/good/readme.txt": []byte("x")}, Options{}, "", "holds no images"},
		{"mask without image", map[string][]byte{"c/train/good/a.png": img, "c/ground_truth/d/x_mask.png": img}, Options{}, "", "x_mask.png has no image, expected "},
		{"mask size", map[string][]byte{"c/test/d/x.png": img, "c/ground_truth/d/x_mask.png": small}, Options{}, "", "x_mask.png is 5x6, expected 8x6 like its image c/test/d/x.png"},
		{"mask name", map[string][]byte{"c/test/d/x.png": img, "c/ground_truth/d/x.png": img}, Options{}, "", "name does not end in _mask"},
		{"bad image", map[string][]byte{"c/train/good/a.png": []byte("nope")}, Options{}, "", "a.png: unknown image format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := t.TempDir()
			for p, b := range c.files {
				full := filepath.Join(src, filepath.FromSlash(p))
				_ = os.MkdirAll(filepath.Dir(full), 0o755)
				if err := os.WriteFile(full, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dst := t.TempDir()
			if c.dst != "" {
				dst = filepath.Join(src, c.dst)
			}
			err := Generate(context.Background(), src, dst, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v, want one containing %q", err, c.want)
			}
		})
	}
	if err := Generate(context.Background(), filepath.Join(t.TempDir(), "missing"), t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "rto: --src") {
		t.Errorf("missing source error = %v", err)
	}
}

// TestHostileDestinations: a link to the source, a non-empty folder and an
// interrupted run must never touch the source or leave partial output.
func TestHostileDestinations(t *testing.T) {
	src := t.TempDir()
	writeTestImage := func(p string) {
		full := filepath.Join(src, filepath.FromSlash(p))
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		im := image.NewGray(image.Rect(0, 0, 8, 6))
		var b bytes.Buffer
		if err := png.Encode(&b, im); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeTestImage("c/train/good/a.png")
	before, _ := os.ReadFile(filepath.Join(src, "c/train/good/a.png"))

	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	if err := Generate(context.Background(), src, link, Options{Seed: 1}); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("dst = link to src: error %v, want overlap", err)
	}
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Generate(context.Background(), src, nonEmpty, Options{Seed: 1}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty dst: error %v, want not empty", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(t.TempDir(), "out")
	if err := Generate(ctx, src, dst, Options{Seed: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: error %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled run left %s behind", dst)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 0 {
		t.Errorf("cancelled run left %d entries beside the destination", len(entries))
	}
	after, _ := os.ReadFile(filepath.Join(src, "c/train/good/a.png"))
	if !bytes.Equal(before, after) {
		t.Error("the source image changed")
	}
	if b, _ := os.ReadFile(filepath.Join(nonEmpty, "keep.txt")); string(b) != "mine" {
		t.Error("the non-empty destination's file changed")
	}
}

func BenchmarkWarpRGB512(b *testing.B) {
	img := image.NewRGBA(image.Rect(0, 0, 512, 512))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	m := Matrix(17, 12.5, -30, 512, 512)
	b.ReportAllocs()
	for range b.N {
		if _, err := Warp(img, m, BorderReplicate); err != nil {
			b.Fatal(err)
		}
	}
}

// matrixMatchesRecord checks the record's matrix against its rotation and
// shift without calling Matrix: the linear part must be the rotation by
// RotationDeg (counter-clockwise on screen: [cos sin; −sin cos]) and the
// image centre must land on centre + shift.
func matrixMatchesRecord(rec Record, w, h int) string {
	m := rec.Matrix
	c, s := math.Cos(rec.RotationDeg*math.Pi/180), math.Sin(rec.RotationDeg*math.Pi/180)
	for _, d := range [][2]float64{{m[0][0], c}, {m[0][1], s}, {m[1][0], -s}, {m[1][1], c}} {
		if math.Abs(d[0]-d[1]) > 1e-9 {
			return fmt.Sprintf("linear part is not the rotation by %g°", rec.RotationDeg)
		}
	}
	cx, cy := float64(w-1)/2, float64(h-1)/2
	x, y := m[0][0]*cx+m[0][1]*cy+m[0][2], m[1][0]*cx+m[1][1]*cy+m[1][2]
	if math.Abs(x-(cx+rec.ShiftXPx)) > 1e-9 || math.Abs(y-(cy+rec.ShiftYPx)) > 1e-9 {
		return fmt.Sprintf("centre goes to (%g,%g), want (%g,%g)", x, y, cx+rec.ShiftXPx, cy+rec.ShiftYPx)
	}
	return ""
}

// warpError samples src bilinearly at m⁻¹·(x, y) for every output pixel
// whose source lies well inside src, and returns the largest grey-level
// difference from out, and where.
func warpError(src, out image.Image, m [2][3]float64) (float64, image.Point) {
	det := m[0][0]*m[1][1] - m[0][1]*m[1][0]
	grey := func(x, y int) float64 {
		return float64(color.GrayModel.Convert(src.At(x, y)).(color.Gray).Y)
	}
	b := src.Bounds()
	worst, at := 0.0, image.Point{}
	for y := range out.Bounds().Dy() {
		for x := range out.Bounds().Dx() {
			dx, dy := float64(x)-m[0][2], float64(y)-m[1][2]
			sx := (m[1][1]*dx - m[0][1]*dy) / det
			sy := (-m[1][0]*dx + m[0][0]*dy) / det
			if sx < 1 || sy < 1 || sx > float64(b.Dx()-2) || sy > float64(b.Dy()-2) {
				continue
			}
			x0, y0 := int(math.Floor(sx)), int(math.Floor(sy))
			fx, fy := sx-float64(x0), sy-float64(y0)
			want := (1-fy)*((1-fx)*grey(x0, y0)+fx*grey(x0+1, y0)) + fy*((1-fx)*grey(x0, y0+1)+fx*grey(x0+1, y0+1))
			got := float64(color.GrayModel.Convert(out.At(x, y)).(color.Gray).Y)
			if d := math.Abs(got - want); d > worst {
				worst, at = d, image.Pt(x, y)
			}
		}
	}
	return worst, at
}

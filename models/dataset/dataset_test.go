package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// datasetsDir finds the shared real datasets: $INSPECTD_DATASETS, else
// shared/datasets in the working directory or one of its parents.
func datasetsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("INSPECTD_DATASETS"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		for _, c := range []string{filepath.Join(dir, "shared", "datasets"), filepath.Join(dir, "..", "shared", "datasets")} {
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c
			}
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	t.Skip("real datasets not found: set INSPECTD_DATASETS or provide ../shared/datasets")
	return ""
}

func TestRealDatasets(t *testing.T) {
	root := datasetsDir(t)
	cases := []struct {
		set, category   string
		train, test     int
		masks           bool
		defects         []string
		maskedDefective int
	}{
		{"mvtec", "bottle", 209, 83, false, []string{"broken_large", "broken_small", "contamination"}, 0},
		{"mpdd", "metal_plate", 54, 97, true, []string{"defective"}, 71},
		{"magnetic_tile", "magnetic_tile", 762, 578, true, []string{"blowhole", "break", "crack", "fray", "uneven"}, 388},
	}
	for _, c := range cases {
		t.Run(c.set, func(t *testing.T) {
			cats, err := Open(filepath.Join(root, c.set))
			if err != nil {
				t.Fatal(err)
			}
			if len(cats) != 1 || cats[0].Name != c.category {
				t.Fatalf("categories = %v, want [%s]", cats, c.category)
			}
			cat := cats[0]
			if len(cat.Train) != c.train || len(cat.Test) != c.test || cat.HasMasks != c.masks {
				t.Errorf("train %d test %d masks %v, want %d %d %v", len(cat.Train), len(cat.Test), cat.HasMasks, c.train, c.test, c.masks)
			}
			if got := strings.Join(cat.Defects(), ","); got != strings.Join(c.defects, ",") {
				t.Errorf("defects = %s, want %s", got, strings.Join(c.defects, ","))
			}
			withMask := 0
			var firstMasked *Sample
			for i, s := range cat.Test {
				if s.MaskPath != "" {
					withMask++
					if firstMasked == nil {
						firstMasked = &cat.Test[i]
					}
				}
			}
			if withMask != c.maskedDefective {
				t.Errorf("%d test images with masks, want %d", withMask, c.maskedDefective)
			}
			// Load a training image, the first test image and a masked one.
			img, m, err := cat.Train[0].Load()
			if err != nil {
				t.Fatal(err)
			}
			if img.Bounds().Dx() < 16 || (m == nil) == c.masks {
				t.Errorf("train image %s: size %v, mask %v (category masks %v)", cat.Train[0].Path, img.Bounds(), m != nil, c.masks)
			}
			if m != nil && m.Count() != 0 {
				t.Errorf("good image %s has %d defect pixels, want 0", cat.Train[0].Path, m.Count())
			}
			if firstMasked != nil {
				img, m, err := firstMasked.Load()
				if err != nil {
					t.Fatal(err)
				}
				if m.W != img.Bounds().Dx() || m.H != img.Bounds().Dy() || m.Count() == 0 {
					t.Errorf("%s: mask %dx%d with %d defect pixels, image %v", firstMasked.MaskPath, m.W, m.H, m.Count(), img.Bounds())
				}
			}
		})
	}
}

// tree describes files to create: path -> content.
type tree map[string][]byte

func pngBytes(t *testing.T, w, h int, v uint8) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = v
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (tr tree) write(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, b := range tr {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if b == nil {
			continue // directory only
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestBrokenTrees(t *testing.T) {
	img := pngBytes(t, 8, 6, 100)
	mask := pngBytes(t, 8, 6, 255)
	small := pngBytes(t, 4, 6, 255)
	cases := []struct {
		name string
		tr   tree
		want string // "" = no error
	}{
		{"ok with masks", tree{
			"c/train/good/a.png": img, "c/test/good/g.png": img, "c/test/dent/d.png": img,
			"c/ground_truth/dent/d_mask.png": mask, "c/test/dent/d.pose.json": []byte("{}"),
		}, ""},
		{"ok without masks", tree{"c/train/good/a.png": img, "c/test/dent/d.png": img}, ""},
		{"empty category", tree{"c/train/good/notes.txt": []byte("x"), "c/test/good/g.png": img}, "is empty: no PNG, JPEG or BMP image in "},
		{"no train dir", tree{"c/train/": nil, "c/test/good/g.png": img}, filepath.Join("c", "train", "good")},
		{"mask size", tree{
			"c/train/good/a.png": img, "c/test/dent/d.png": img, "c/ground_truth/dent/d_mask.png": small,
		}, "d_mask.png is 4x6, expected 8x6 like its image "},
		{"mask without image", tree{
			"c/train/good/a.png": img, "c/test/dent/d.png": img, "c/ground_truth/dent/d_mask.png": mask,
			"c/ground_truth/dent/e_mask.png": mask,
		}, "e_mask.png has no image, expected $ROOT/c/test/dent/e.<png|jpg|bmp>"},
		{"defect image without mask", tree{
			"c/train/good/a.png": img, "c/test/dent/d.png": img, "c/test/dent/e.png": img,
			"c/ground_truth/dent/d_mask.png": mask,
		}, "defect image $ROOT/c/test/dent/e.png has no mask, expected $ROOT/c/ground_truth/dent/e_mask.png"},
		{"mask badly named", tree{
			"c/train/good/a.png": img, "c/test/dent/d.png": img, "c/ground_truth/dent/d.png": mask,
		}, "d.png: name does not end in _mask"},
		{"duplicate names", tree{"c/train/good/a.png": img, "c/train/good/a.jpg": img}, `have the same name "a"`},
		{"not an image", tree{"c/train/good/a.png": []byte("hello")}, ""}, // listing does not decode
		{"mask not an image", tree{
			"c/train/good/a.png": img, "c/test/dent/d.png": img, "c/ground_truth/dent/d_mask.png": []byte("junk"),
		}, "d_mask.png: unknown image format, expected PNG, JPEG or BMP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := c.tr.write(t)
			cat, err := OpenCategory(filepath.Join(root, "c"))
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(cat.Train) == 0 {
					t.Errorf("no training samples")
				}
				return
			}
			want := strings.ReplaceAll(c.want, "$ROOT/", root+string(filepath.Separator))
			if err == nil || !strings.Contains(err.Error(), filepath.FromSlash(want)) {
				t.Fatalf("error = %v, want one containing %q", err, want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	root := tree{"README.md": []byte("x"), "other/": nil}.write(t)
	if _, err := Open(root); err == nil || !strings.Contains(err.Error(), "holds no category, expected <category>/train/good/") {
		t.Errorf("Open(no categories) error = %v", err)
	}
	if _, err := OpenCategory(filepath.Join(root, "README.md")); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("OpenCategory(file) error = %v", err)
	}
	if _, err := LoadImage(filepath.Join(root, "README.md")); err == nil || !strings.Contains(err.Error(), "README.md: unknown image format") {
		t.Errorf("LoadImage(text) error = %v", err)
	}
	bad := filepath.Join(root, "bad.png")
	_ = os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\ntruncated"), 0o644)
	if _, err := LoadImage(bad); err == nil || !strings.Contains(err.Error(), "decoding "+bad) {
		t.Errorf("LoadImage(truncated) error = %v", err)
	}
}

func TestSampleLoadMasks(t *testing.T) {
	img := pngBytes(t, 8, 6, 100)
	mask := image.NewGray(image.Rect(0, 0, 8, 6))
	mask.Pix[3*8+2] = 255
	mask.Pix[0] = 127 // below threshold
	var mb bytes.Buffer
	_ = png.Encode(&mb, mask)
	root := tree{"c/train/good/a.png": img, "c/test/good/g.png": img, "c/test/dent/d.png": img, "c/ground_truth/dent/d_mask.png": mb.Bytes()}.write(t)
	cat, err := OpenCategory(filepath.Join(root, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Test) != 2 || cat.Test[0].Defect != Good || !cat.Test[1].Anomalous() {
		t.Fatalf("test samples = %+v, want good first then dent", cat.Test)
	}
	_, m, err := cat.Test[1].Load()
	if err != nil {
		t.Fatal(err)
	}
	if m.Count() != 1 || !m.Pix[3*8+2] {
		t.Errorf("mask has %d defect pixels, want exactly (2,3)", m.Count())
	}
	_, m, err = cat.Test[0].Load()
	if err != nil || m == nil || m.Count() != 0 || m.W != 8 {
		t.Errorf("good sample mask = %+v, %v; want empty 8x6", m, err)
	}
}

// bmp encodes img as an uncompressed BMP of bpp 8 (grey palette), 24 or 32,
// bottom-up unless topDown.
func bmp(img image.Image, bpp int, topDown bool) []byte {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	stride := ((w*bpp + 31) / 32) * 4
	pal := 0
	if bpp == 8 {
		pal = 256 * 4
	}
	var out bytes.Buffer
	le := binary.LittleEndian
	off := 54 + pal
	out.WriteString("BM")
	_ = binary.Write(&out, le, uint32(off+stride*h))
	_ = binary.Write(&out, le, uint32(0))
	_ = binary.Write(&out, le, uint32(off))
	hh := int32(h)
	if topDown {
		hh = -hh
	}
	for _, v := range []any{uint32(40), int32(w), hh, uint16(1), uint16(bpp), uint32(0), uint32(stride * h), int32(2835), int32(2835), uint32(0), uint32(0)} {
		_ = binary.Write(&out, le, v)
	}
	if bpp == 8 {
		for i := 0; i < 256; i++ {
			out.Write([]byte{byte(i), byte(i), byte(i), 0})
		}
	}
	for i := 0; i < h; i++ {
		y := h - 1 - i
		if topDown {
			y = i
		}
		row := make([]byte, stride)
		for x := 0; x < w; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			switch bpp {
			case 8:
				row[x] = byte(r >> 8)
			case 24:
				copy(row[3*x:], []byte{byte(bl >> 8), byte(g >> 8), byte(r >> 8)})
			case 32:
				copy(row[4*x:], []byte{byte(bl >> 8), byte(g >> 8), byte(r >> 8), 0})
			}
		}
		out.Write(row)
	}
	return out.Bytes()
}

func TestImageFormats(t *testing.T) {
	const w, h = 7, 5 // odd width exercises row padding
	rgb := image.NewRGBA(image.Rect(0, 0, w, h))
	grey := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			rgb.Set(x, y, color.RGBA{uint8(30 * x), uint8(40 * y), uint8(5 * x * y), 255})
			grey.SetGray(x, y, color.Gray{uint8(20*x + 7*y)})
		}
	}
	dir := t.TempDir()
	var pb, jb bytes.Buffer
	_ = png.Encode(&pb, rgb)
	_ = jpeg.Encode(&jb, grey, &jpeg.Options{Quality: 100})
	files := []struct {
		name  string
		data  []byte
		want  image.Image
		exact bool
		grey  bool
	}{
		{"rgb.png", pb.Bytes(), rgb, true, false},
		{"grey.jpg", jb.Bytes(), grey, false, true},
		{"grey8.bmp", bmp(grey, 8, false), grey, true, true},
		{"rgb24.bmp", bmp(rgb, 24, false), rgb, true, false},
		{"rgb24td.bmp", bmp(rgb, 24, true), rgb, true, false},
		{"rgb32.bmp", bmp(rgb, 32, false), rgb, true, false},
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			p := filepath.Join(dir, f.name)
			if err := os.WriteFile(p, f.data, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := DecodeConfig(p)
			if err != nil || cfg.Width != w || cfg.Height != h {
				t.Fatalf("DecodeConfig = %+v, %v; want %dx%d", cfg, err, w, h)
			}
			got, err := LoadImage(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, isGrey := got.(*image.Gray); isGrey != f.grey {
				t.Errorf("decoded %T, grey %v wanted", got, f.grey)
			}
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					r1, g1, b1, _ := got.At(x, y).RGBA()
					r2, g2, b2, _ := f.want.At(x, y).RGBA()
					d := max(absDiff(r1, r2), absDiff(g1, g2), absDiff(b1, b2)) >> 8
					if (f.exact && d != 0) || d > 3 {
						t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, got.At(x, y), f.want.At(x, y))
					}
				}
			}
		})
	}
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestOpenMissingRoot: a dataset root that does not exist is reported as
// such, not as "holds no category".
func TestOpenMissingRoot(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexistent")
	_, err := Open(missing)
	if err == nil || !strings.Contains(err.Error(), missing+" does not exist") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) error = %v, want %q and fs.ErrNotExist", err, "does not exist")
	}
	file := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(file, []byte("x"), 0o644)
	if _, err := Open(file); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("Open(file) error = %v", err)
	}
}

// TestGoodMasksIgnored: masks under ground_truth/good are ignored with a
// note naming them; they neither make the category "with masks" nor mark
// pixels of good images as defects.
func TestGoodMasksIgnored(t *testing.T) {
	img := pngBytes(t, 8, 6, 100)
	full := pngBytes(t, 8, 6, 255)
	root := tree{"c/train/good/a.png": img, "c/test/good/g.png": img, "c/test/dent/d.png": img,
		"c/ground_truth/good/g_mask.png": full}.write(t)
	cat, err := OpenCategory(filepath.Join(root, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if cat.HasMasks {
		t.Error("a mask under ground_truth/good made the category one with masks")
	}
	if len(cat.Notes) != 1 || !strings.Contains(cat.Notes[0], "ignored 1 mask(s) in "+filepath.Join(root, "c", "ground_truth", "good")+" (first: g_mask.png)") {
		t.Errorf("notes = %q", cat.Notes)
	}
	if cat.Test[0].MaskPath != "" {
		t.Errorf("good sample uses mask %s", cat.Test[0].MaskPath)
	}
}

// TestLabelMasks: a 0/1 mask (a label mask) marks its 1 pixels as defect;
// thresholding it at 128 used to empty it silently.
func TestLabelMasks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vals  [4]uint8
		count int
	}{
		{"0/255", [4]uint8{0, 255, 255, 0}, 2},
		{"0/1", [4]uint8{0, 1, 1, 0}, 2},
		{"class indices", [4]uint8{0, 2, 0, 3}, 2},
		{"0/255 with anti-aliased edge", [4]uint8{0, 255, 100, 0}, 1},
		{"empty", [4]uint8{}, 0},
	} {
		g := image.NewGray(image.Rect(0, 0, 2, 2))
		copy(g.Pix, tc.vals[:])
		if got := MaskFromImage(g).Count(); got != tc.count {
			t.Errorf("%s: %d defect pixels, want %d", tc.name, got, tc.count)
		}
		// The same through a non-Gray image type.
		rgba := image.NewRGBA(g.Bounds())
		for i, v := range tc.vals {
			rgba.Set(i%2, i/2, color.Gray{Y: v})
		}
		if got := MaskFromImage(rgba).Count(); got != tc.count {
			t.Errorf("%s (RGBA): %d defect pixels, want %d", tc.name, got, tc.count)
		}
	}
}

package dataset

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDecodeBMP: BMP files come from cameras and other tools. Whatever the
// bytes, decodeBMP returns an error or an image of the size in its header,
// never panics, and never allocates more than the pixels the file can hold.
func FuzzDecodeBMP(f *testing.F) {
	g := image.NewGray(image.Rect(0, 0, 5, 3))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 17)
	}
	rgb := image.NewRGBA(image.Rect(0, 0, 3, 4))
	for i := range rgb.Pix {
		rgb.Pix[i] = uint8(i * 7)
	}
	f.Add(bmp(g, 8, false))
	f.Add(bmp(rgb, 24, true))
	f.Add(bmp(rgb, 32, false))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, herr := readBMPHeader(bytes.NewReader(data))
		img, err := decodeBMP(bytes.NewReader(data))
		if err != nil {
			return
		}
		if herr != nil {
			t.Fatalf("decoded although the header is refused: %v", herr)
		}
		if b := img.Bounds(); b.Dx() != h.width || b.Dy() != h.height {
			t.Fatalf("image %v, header %dx%d", b, h.width, h.height)
		}
		// 1 bit per pixel is the densest format: a decoded image cannot
		// have more pixels than 8 per byte of the file.
		if px := h.width * h.height; px > 8*len(data)+64 {
			t.Fatalf("%d pixels decoded from %d bytes", px, len(data))
		}
	})
}

// FuzzOpenCategory: a dataset folder is whatever a user copied. The input
// is a list of relative paths, one per line, each created as a small PNG
// (paths ending in "/" as directories). OpenCategory must return an error
// or a listing that is consistent with the files: every sample exists,
// training samples are good, and defect samples have masks exactly when
// the category has them.
func FuzzOpenCategory(f *testing.F) {
	f.Add("train/good/a.png\ntrain/good/b.png\ntest/good/c.png\ntest/dent/d.png\nground_truth/dent/d_mask.png\n")
	f.Add("train/good/a.png\ntest/dent/d.png\n")
	f.Add("train/good/a.bmp\ntest/dent/d.png\nground_truth/dent/\nnotes.txt\n")
	var pngData bytes.Buffer
	m := image.NewGray(image.Rect(0, 0, 2, 2))
	m.Set(0, 0, color.Gray{255})
	if err := png.Encode(&pngData, m); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, list string) {
		dir := filepath.Join(t.TempDir(), "cat")
		lines := strings.Split(list, "\n")
		if len(lines) > 24 {
			lines = lines[:24]
		}
		for _, l := range lines {
			clean := filepath.Clean("/" + l)[1:]
			if clean == "" || len(clean) > 200 || strings.ContainsRune(clean, 0) {
				continue
			}
			p := filepath.Join(dir, clean)
			if strings.HasSuffix(l, "/") {
				_ = os.MkdirAll(p, 0o755)
				continue
			}
			if os.MkdirAll(filepath.Dir(p), 0o755) == nil {
				_ = os.WriteFile(p, pngData.Bytes(), 0o644)
			}
		}
		c, err := OpenCategory(dir)
		if err != nil {
			return
		}
		if len(c.Train) == 0 {
			t.Fatal("category without training images accepted")
		}
		for _, s := range append(append([]Sample(nil), c.Train...), c.Test...) {
			if st, err := os.Stat(s.Path); err != nil || st.IsDir() {
				t.Fatalf("sample %s is not a file: %v", s.Path, err)
			}
			if s.Split == Train && s.Anomalous() {
				t.Fatalf("training sample %s is not good", s.Path)
			}
			if s.Anomalous() && c.HasMasks && s.MaskPath == "" {
				t.Fatalf("defect sample %s has no mask in a category with masks", s.Path)
			}
			if (!s.Anomalous() || !c.HasMasks) && s.MaskPath != "" {
				t.Fatalf("sample %s has mask %s", s.Path, s.MaskPath)
			}
			if s.MaskPath != "" {
				if _, err := os.Stat(s.MaskPath); err != nil {
					t.Fatalf("mask %s: %v", s.MaskPath, err)
				}
			}
		}
	})
}

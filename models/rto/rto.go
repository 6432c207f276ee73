// Package rto implements the paper's MAD-RTO protocol: it makes a
// misaligned variant of an MVTec-AD-layout dataset by applying a random
// rotation and a random shift (a crop of the shifted image at the input
// size) identically to every image and its ground-truth mask, in both the
// train and test splits.
//
// Each image's transform is drawn from a per-image seed derived from the
// global seed and the image's path relative to the source root, so results
// do not depend on the order of the directory walk or on which other files
// exist. Images are resampled bilinearly, masks with nearest-neighbour
// sampling, so masks stay binary. The applied transform is written next to
// every output image as <name>.rto.json (see Record).
package rto

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"image"
	"image/draw"
	"image/png"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/inspectd/inspectd/models/staging"

	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Border modes for pixels that come from outside the source image.
const (
	// BorderReplicate repeats the nearest edge pixel.
	BorderReplicate = "replicate"
	// BorderConstant fills with black (and 0, no defect, in masks).
	BorderConstant = "constant"
)

// Options configures Generate.
type Options struct {
	// MaxRotationDeg bounds the rotation, drawn uniformly in ±MaxRotationDeg
	// (0 to 180; counter-clockwise on screen is positive).
	MaxRotationDeg float64
	// MaxShiftFrac bounds the shift, drawn uniformly in ±MaxShiftFrac of the
	// image width (x) and height (y) (0 to 0.5).
	MaxShiftFrac float64
	// Seed is the global seed; the same seed gives the same files.
	Seed int64
	// Border is BorderReplicate or BorderConstant; empty means replicate.
	Border string
}

// Record is the content of a <name>.rto.json file.
type Record struct {
	RotationDeg float64 `json:"rotation_deg"`
	ShiftXPx    float64 `json:"shift_x_px"`
	ShiftYPx    float64 `json:"shift_y_px"`
	// Matrix maps a source pixel (x, y) to the destination pixel
	// (M[0][0]x + M[0][1]y + M[0][2], M[1][0]x + M[1][1]y + M[1][2]), pixel
	// centres at integer coordinates: a rotation by RotationDeg about
	// ((w-1)/2, (h-1)/2) followed by the shift.
	Matrix [2][3]float64 `json:"matrix"`
	Border string        `json:"border"`
	Width  int           `json:"width"`
	Height int           `json:"height"`
	// Source is the image's path relative to the source root, with slashes.
	Source string `json:"source"`
}

// validate checks o and returns it with defaults filled in.
func (o Options) validate() (Options, error) {
	if o.Border == "" {
		o.Border = BorderReplicate
	}
	switch {
	case o.Border != BorderReplicate && o.Border != BorderConstant:
		return o, fmt.Errorf("rto: border mode %q, expected %q or %q", o.Border, BorderReplicate, BorderConstant)
	case !(o.MaxRotationDeg >= 0 && o.MaxRotationDeg <= 180):
		return o, fmt.Errorf("rto: MaxRotationDeg %v, expected 0 to 180", o.MaxRotationDeg)
	case !(o.MaxShiftFrac >= 0 && o.MaxShiftFrac <= 0.5):
		return o, fmt.Errorf("rto: MaxShiftFrac %v, expected 0 to 0.5", o.MaxShiftFrac)
	}
	return o, nil
}

// Matrix returns the source-to-destination matrix of a rotation by deg
// (counter-clockwise on screen) about ((w-1)/2, (h-1)/2) followed by a
// shift of (tx, ty) pixels: [preprocess.RotShift].
func Matrix(deg, tx, ty float64, w, h int) [2][3]float64 {
	return preprocess.RotShift(deg, tx, ty, w, h)
}

// TransformFor returns the transform Generate applies to the w×h image at
// rel (relative to the source root, slash-separated).
func TransformFor(opts Options, rel string, w, h int) (Record, error) {
	o, err := opts.validate()
	if err != nil {
		return Record{}, err
	}
	f := fnv.New64a()
	fmt.Fprintf(f, "%d\x00%s", o.Seed, rel)
	r := rand.New(rand.NewPCG(f.Sum64(), 0x6d61642d72746f))
	rec := Record{
		RotationDeg: (2*r.Float64() - 1) * o.MaxRotationDeg,
		ShiftXPx:    (2*r.Float64() - 1) * o.MaxShiftFrac * float64(w),
		ShiftYPx:    (2*r.Float64() - 1) * o.MaxShiftFrac * float64(h),
		Border:      o.Border,
		Width:       w,
		Height:      h,
		Source:      rel,
	}
	rec.Matrix = Matrix(rec.RotationDeg, rec.ShiftXPx, rec.ShiftYPx, w, h)
	return rec, nil
}

// Generate writes the RTO variant of the dataset tree src into dst: every
// PNG/JPEG/BMP image outside ground_truth directories is transformed and
// written as PNG at the same relative path (extension .png) with a
// <name>.rto.json Record; every mask <c>/ground_truth/<d>/<n>_mask.<ext> is
// transformed with the transform of its image <c>/test/<d>/<n>.<ext>.
// Other files are not copied. A mask without an image, or of a different
// size than its image, is an error naming the file. dst must not lie inside
// src, nor src inside dst (symbolic links are resolved), and must not exist
// or be an empty directory: the copy is written to a staging directory and
// renamed into place only when complete, so an error or ctx's end leaves
// nothing at dst.
func Generate(ctx context.Context, src, dst string, opts Options) error {
	o, err := opts.validate()
	if err != nil {
		return err
	}
	if st, err := os.Stat(src); err != nil {
		return fmt.Errorf("rto: --src: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("rto: --src %s is not a directory, expected a dataset root", src)
	}
	if overlap, err := staging.Overlaps(src, dst); err != nil {
		return fmt.Errorf("rto: %w", err)
	} else if overlap {
		return fmt.Errorf("rto: --dst %s and --src %s overlap (after resolving links); expected a separate directory", dst, src)
	}
	out, err := staging.New(dst)
	if err != nil {
		return fmt.Errorf("rto: --dst: %w", err)
	}
	defer out.Abort()
	images := 0
	err = filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("rto: walking %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() || !dataset.IsImageFile(p) {
			return nil
		}
		images++
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("rto: %w", err)
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		gt := -1
		for i, s := range parts[:len(parts)-1] {
			if s == "ground_truth" {
				gt = i
			}
		}
		if gt < 0 {
			return doImage(src, out.Path(), filepath.ToSlash(rel), o)
		}
		return doMask(src, out.Path(), parts, gt, o)
	})
	if err != nil {
		return err
	}
	if images == 0 {
		return fmt.Errorf("rto: --src %s holds no images (PNG, JPEG or BMP); nothing written", src)
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("rto: --dst: %w", err)
	}
	return nil
}

// doImage transforms one image given by its slash-separated relative path.
func doImage(src, dst, rel string, o Options) error {
	path := filepath.Join(src, filepath.FromSlash(rel))
	img, err := dataset.LoadImage(path)
	if err != nil {
		return fmt.Errorf("rto: %w", err)
	}
	b := img.Bounds()
	rec, err := TransformFor(o, rel, b.Dx(), b.Dy())
	if err != nil {
		return err
	}
	out, err := Warp(img, rec.Matrix, o.Border)
	if err != nil {
		return fmt.Errorf("rto: %s: %w", path, err)
	}
	base := filepath.Join(dst, filepath.FromSlash(strings.TrimSuffix(rel, filepath.Ext(rel))))
	if err := writePNG(base+".png", out); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("rto: encoding transform of %s: %w", path, err)
	}
	return writeFile(base+".rto.json", append(js, '\n'))
}

// doMask transforms the mask at parts (gt is the index of "ground_truth")
// with the transform of its image.
func doMask(src, dst string, parts []string, gt int, o Options) error {
	maskRel := strings.Join(parts, "/")
	maskPath := filepath.Join(src, filepath.FromSlash(maskRel))
	name := parts[len(parts)-1]
	stem, ok := strings.CutSuffix(strings.TrimSuffix(name, filepath.Ext(name)), "_mask")
	if !ok {
		return fmt.Errorf("rto: mask %s: name does not end in _mask, expected <image name>_mask%s", maskPath, filepath.Ext(name))
	}
	imgParts := append(append(append([]string{}, parts[:gt]...), "test"), parts[gt+1:len(parts)-1]...)
	imgDir := strings.Join(imgParts, "/")
	var imgRel string
	for _, ext := range []string{".png", ".jpg", ".jpeg", ".bmp", ".PNG", ".JPG", ".JPEG", ".BMP"} {
		cand := strings.TrimPrefix(imgDir+"/"+stem+ext, "/")
		if _, err := os.Stat(filepath.Join(src, filepath.FromSlash(cand))); err == nil {
			imgRel = cand
			break
		}
	}
	if imgRel == "" {
		return fmt.Errorf("rto: mask %s has no image, expected %s.<png|jpg|bmp>", maskPath, filepath.Join(src, filepath.FromSlash(imgDir), stem))
	}
	cfg, err := dataset.DecodeConfig(filepath.Join(src, filepath.FromSlash(imgRel)))
	if err != nil {
		return fmt.Errorf("rto: %w", err)
	}
	m, err := dataset.LoadMask(maskPath)
	if err != nil {
		return fmt.Errorf("rto: %w", err)
	}
	if m.W != cfg.Width || m.H != cfg.Height {
		return fmt.Errorf("rto: mask %s is %dx%d, expected %dx%d like its image %s", maskPath, m.W, m.H, cfg.Width, cfg.Height, imgRel)
	}
	rec, err := TransformFor(o, imgRel, cfg.Width, cfg.Height)
	if err != nil {
		return err
	}
	out := WarpMask(m, rec.Matrix, o.Border)
	return writePNG(filepath.Join(dst, filepath.FromSlash(strings.TrimSuffix(maskRel, filepath.Ext(maskRel))))+".png", out)
}

// Warp resamples img bilinearly so that source pixel p lands on m·p; the
// output has the input's size. Grey inputs (any bit depth) give
// *image.Gray, others *image.RGBA. Samples outside the source follow border
// (BorderReplicate or BorderConstant, black).
func Warp(img image.Image, m [2][3]float64, border string) (image.Image, error) {
	inv, err := preprocess.Affine(m).Invert()
	if err != nil {
		return nil, err
	}
	if border != BorderReplicate && border != BorderConstant {
		return nil, fmt.Errorf("border mode %q, expected %q or %q", border, BorderReplicate, BorderConstant)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	var in []byte
	var ch int
	var out image.Image
	var outPix []byte
	switch img.(type) {
	case *image.Gray, *image.Gray16:
		g := image.NewGray(image.Rect(0, 0, w, h))
		draw.Draw(g, g.Rect, img, b.Min, draw.Src)
		in, ch = g.Pix, 1
		o := image.NewGray(g.Rect)
		out, outPix = o, o.Pix
	default:
		c := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(c, c.Rect, img, b.Min, draw.Src)
		in, ch = c.Pix, 4
		o := image.NewRGBA(c.Rect)
		out, outPix = o, o.Pix
	}
	replicate := border == BorderReplicate
	// at returns channel k of source pixel (x, y) under the border rule.
	at := func(x, y, k int) float64 {
		if x < 0 || y < 0 || x >= w || y >= h {
			if !replicate {
				if ch == 4 && k == 3 {
					return 255 // opaque black
				}
				return 0
			}
			x, y = min(max(x, 0), w-1), min(max(y, 0), h-1)
		}
		return float64(in[(y*w+x)*ch+k])
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			sx := inv[0][0]*float64(x) + inv[0][1]*float64(y) + inv[0][2]
			sy := inv[1][0]*float64(x) + inv[1][1]*float64(y) + inv[1][2]
			x0, y0 := math.Floor(sx), math.Floor(sy)
			fx, fy := sx-x0, sy-y0
			ix, iy := int(x0), int(y0)
			o := (y*w + x) * ch
			if ix >= 0 && iy >= 0 && ix+1 < w && iy+1 < h { // interior: no border rule
				w00, w10, w01, w11 := (1-fx)*(1-fy), fx*(1-fy), (1-fx)*fy, fx*fy
				i00 := (iy*w + ix) * ch
				i01 := i00 + w*ch
				for k := 0; k < ch; k++ {
					v := w00*float64(in[i00+k]) + w10*float64(in[i00+ch+k]) + w01*float64(in[i01+k]) + w11*float64(in[i01+ch+k])
					outPix[o+k] = uint8(math.Round(math.Max(0, math.Min(255, v))))
				}
				continue
			}
			for k := 0; k < ch; k++ {
				v := (1-fy)*((1-fx)*at(ix, iy, k)+fx*at(ix+1, iy, k)) + fy*((1-fx)*at(ix, iy+1, k)+fx*at(ix+1, iy+1, k))
				outPix[o+k] = uint8(math.Round(math.Max(0, math.Min(255, v))))
			}
		}
	}
	return out, nil
}

// WarpMask resamples a mask with nearest-neighbour sampling so that source
// pixel p lands on m·p, and returns it as a 0/255 grey image of the same
// size. Outside the source, BorderReplicate repeats the edge and
// BorderConstant gives 0. A singular matrix gives an empty mask.
func WarpMask(mask *dataset.Mask, m [2][3]float64, border string) *image.Gray {
	out := image.NewGray(image.Rect(0, 0, mask.W, mask.H))
	inv, err := preprocess.Affine(m).Invert()
	if err != nil {
		return out
	}
	for y := 0; y < mask.H; y++ {
		for x := 0; x < mask.W; x++ {
			sx := int(math.Round(inv[0][0]*float64(x) + inv[0][1]*float64(y) + inv[0][2]))
			sy := int(math.Round(inv[1][0]*float64(x) + inv[1][1]*float64(y) + inv[1][2]))
			if sx < 0 || sy < 0 || sx >= mask.W || sy >= mask.H {
				if border != BorderReplicate {
					continue
				}
				sx, sy = min(max(sx, 0), mask.W-1), min(max(sy, 0), mask.H-1)
			}
			if mask.Pix[sy*mask.W+sx] {
				out.Pix[y*out.Stride+x] = 255
			}
		}
	}
	return out
}

// writePNG encodes img as PNG into path, creating its directory.
func writePNG(path string, img image.Image) error {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return fmt.Errorf("rto: encoding %s: %w", path, err)
	}
	return writeFile(path, b.Bytes())
}

// writeFile writes b to path, creating its directory.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("rto: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("rto: %w", err)
	}
	return nil
}

// Package dataset lists and loads inspection data in the MVTec AD layout:
//
//	<root>/<category>/train/good/<name>.<ext>
//	<root>/<category>/test/good/<name>.<ext>
//	<root>/<category>/test/<defect>/<name>.<ext>
//	<root>/<category>/ground_truth/<defect>/<name>_mask.<ext>
//
// Images are PNG, JPEG or BMP, grey or colour, of any size. Masks are grey
// images of the same size as their image, non-zero (>= 128) on defect pixels.
// A category either has a mask for every defect image or no ground_truth at
// all (then HasMasks is false and only image-level metrics apply).
//
// Opening a category lists files and checks the layout (including that every
// mask has its image's size, read from the file headers) but decodes no pixel
// data; images and masks are decoded on demand with Sample.Load,
// LoadImage and LoadMask. Files with other extensions (e.g. the .pose.json or
// .rto.json records written by models/synth and models/rto) are ignored.
package dataset

import (
	"errors"
	"fmt"
	"image"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Split is the part of a category a sample belongs to.
type Split string

// The two splits of the MVTec AD layout.
const (
	Train Split = "train"
	Test  Split = "test"
)

// Good is the defect directory name of defect-free images.
const Good = "good"

// Sample is one listed image of a category; nothing is decoded until Load.
type Sample struct {
	// Path is the image file.
	Path string
	// MaskPath is the ground-truth mask file, "" when the sample has none
	// (defect-free samples, and every sample of a category without masks).
	MaskPath string
	// Split is Train or Test.
	Split Split
	// Defect is the name of the directory under the split: Good or a defect type.
	Defect string
	// Name is the file name without its extension.
	Name string
	// HasMasks is true when the sample's category has ground-truth masks.
	HasMasks bool
}

// Anomalous reports whether the sample is a defect image (Defect != Good).
func (s Sample) Anomalous() bool { return s.Defect != Good }

// Load decodes the sample's image and its mask. The mask is nil when the
// category has no masks; for defect-free samples of a category with masks it
// is all false, with the image's size.
func (s Sample) Load() (image.Image, *Mask, error) {
	img, err := LoadImage(s.Path)
	if err != nil {
		return nil, nil, err
	}
	b := img.Bounds()
	if s.MaskPath == "" {
		if !s.HasMasks {
			return img, nil, nil
		}
		return img, &Mask{W: b.Dx(), H: b.Dy(), Pix: make([]bool, b.Dx()*b.Dy())}, nil
	}
	m, err := LoadMask(s.MaskPath)
	if err != nil {
		return nil, nil, err
	}
	if m.W != b.Dx() || m.H != b.Dy() {
		return nil, nil, fmt.Errorf("dataset: mask %s is %dx%d, expected %dx%d like its image %s", s.MaskPath, m.W, m.H, b.Dx(), b.Dy(), s.Path)
	}
	return img, m, nil
}

// Category is one listed category: its samples in name order.
type Category struct {
	// Name is the category directory's base name.
	Name string
	// Dir is the category directory.
	Dir string
	// HasMasks is true when the category has ground-truth masks for its
	// defect images; false means image-level metrics only.
	HasMasks bool
	// Train holds the defect-free training images (train/good).
	Train []Sample
	// Test holds the test images, good first, then defect types by name.
	Test []Sample
	// Notes names anything in the folder that was ignored, for reports.
	Notes []string
}

// Defects returns the defect types of the test split (not Good), sorted.
func (c *Category) Defects() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range c.Test {
		if s.Anomalous() && !seen[s.Defect] {
			seen[s.Defect] = true
			out = append(out, s.Defect)
		}
	}
	sort.Strings(out)
	return out
}

// IsImageFile reports whether name has an image extension this package
// reads: .png, .jpg, .jpeg or .bmp (any case).
func IsImageFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg", ".bmp":
		return true
	}
	return false
}

// listImages returns the image files of dir by name without extension,
// sorted by name. A missing dir gives no files and no error when
// missingOK is set.
func listImages(dir string, missingOK bool) ([]string, map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if missingOK && errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("dataset: listing %s: %w", dir, err)
	}
	files := map[string]string{}
	var names []string
	for _, e := range entries {
		if e.IsDir() || !IsImageFile(e.Name()) {
			continue
		}
		name := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
		if prev, dup := files[name]; dup {
			return nil, nil, fmt.Errorf("dataset: %s and %s have the same name %q, expected one image per name", filepath.Join(dir, prev), filepath.Join(dir, e.Name()), name)
		}
		files[name] = e.Name()
		names = append(names, name)
	}
	sort.Strings(names)
	return names, files, nil
}

// subdirs returns the sorted sub-directory names of dir; a missing dir has none.
func subdirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("dataset: listing %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// OpenCategory lists the category in dir and checks its layout. It is an
// error when train/good holds no image, when a mask has no image of the
// same name in test/<defect>, when a mask file is not named <name>_mask,
// when the category has masks but a defect image has none, or when a mask's
// size differs from its image's; every error names the file concerned.
// The test split may be absent (training-only data).
func OpenCategory(dir string) (*Category, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dataset: category %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("dataset: category %s is not a directory, expected <category>/train/good", dir)
	}
	c := &Category{Name: filepath.Base(dir), Dir: dir}

	trainDir := filepath.Join(dir, "train", Good)
	names, files, err := listImages(trainDir, true)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("dataset: category %s is empty: no PNG, JPEG or BMP image in %s", dir, trainDir)
	}
	for _, n := range names {
		c.Train = append(c.Train, Sample{Path: filepath.Join(trainDir, files[n]), Split: Train, Defect: Good, Name: n})
	}

	// Masks: ground_truth/<defect>/<name>_mask.<ext>.
	gtDir := filepath.Join(dir, "ground_truth")
	gtDefects, err := subdirs(gtDir)
	if err != nil {
		return nil, err
	}
	masks := map[string]map[string]string{} // defect -> image name -> mask path
	for _, d := range gtDefects {
		mnames, mfiles, err := listImages(filepath.Join(gtDir, d), false)
		if err != nil {
			return nil, err
		}
		if d == Good {
			// Good images are defect-free by definition: a mask beside them
			// (an all-black one from a converted dataset, or a labelling
			// slip) must not turn their pixels into defects in the pixel
			// metrics. Ignore it, and say so.
			if len(mnames) > 0 {
				c.Notes = append(c.Notes, fmt.Sprintf("ignored %d mask(s) in %s (first: %s): test/good images are defect-free, all their pixels count as normal",
					len(mnames), filepath.Join(gtDir, Good), mfiles[mnames[0]]))
			}
			continue
		}
		for _, mn := range mnames {
			p := filepath.Join(gtDir, d, mfiles[mn])
			base, ok := strings.CutSuffix(mn, "_mask")
			if !ok {
				return nil, fmt.Errorf("dataset: mask %s: name does not end in _mask, expected <image name>_mask%s", p, filepath.Ext(p))
			}
			if masks[d] == nil {
				masks[d] = map[string]string{}
			}
			masks[d][base] = p
			c.HasMasks = true
		}
	}

	testDir := filepath.Join(dir, "test")
	defects, err := subdirs(testDir)
	if err != nil {
		return nil, err
	}
	// good first, then defects by name.
	sort.SliceStable(defects, func(i, j int) bool { return defects[i] == Good && defects[j] != Good })
	seen := map[string]map[string]bool{}
	for _, d := range defects {
		dd := filepath.Join(testDir, d)
		names, files, err := listImages(dd, false)
		if err != nil {
			return nil, err
		}
		seen[d] = map[string]bool{}
		for _, n := range names {
			s := Sample{Path: filepath.Join(dd, files[n]), Split: Test, Defect: d, Name: n, HasMasks: c.HasMasks}
			seen[d][n] = true
			if mp, ok := masks[d][n]; ok {
				s.MaskPath = mp
				if err := checkSameSize(s.Path, mp); err != nil {
					return nil, err
				}
			} else if c.HasMasks && s.Anomalous() {
				return nil, fmt.Errorf("dataset: defect image %s has no mask, expected %s (the category has masks for other images)",
					s.Path, filepath.Join(gtDir, d, n+"_mask.png"))
			}
			c.Test = append(c.Test, s)
		}
	}
	for _, d := range gtDefects {
		mnames := make([]string, 0, len(masks[d]))
		for n := range masks[d] {
			mnames = append(mnames, n)
		}
		sort.Strings(mnames)
		for _, n := range mnames {
			if !seen[d][n] {
				return nil, fmt.Errorf("dataset: mask %s has no image, expected %s.<png|jpg|bmp>", masks[d][n], filepath.Join(testDir, d, n))
			}
		}
	}
	for i := range c.Train {
		c.Train[i].HasMasks = c.HasMasks
	}
	return c, nil
}

// checkSameSize compares the header sizes of an image and its mask.
func checkSameSize(imgPath, maskPath string) error {
	ic, err := DecodeConfig(imgPath)
	if err != nil {
		return err
	}
	mc, err := DecodeConfig(maskPath)
	if err != nil {
		return err
	}
	if ic.Width != mc.Width || ic.Height != mc.Height {
		return fmt.Errorf("dataset: mask %s is %dx%d, expected %dx%d like its image %s", maskPath, mc.Width, mc.Height, ic.Width, ic.Height, imgPath)
	}
	return nil
}

// Open lists every category of a dataset root: each sub-directory of root
// that has a train directory. It is an error when root has none.
func Open(root string) ([]*Category, error) {
	st, err := os.Stat(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("dataset: %s does not exist, expected a directory of <category>/train/good/ folders: %w", root, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("dataset: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("dataset: %s is not a directory, expected a directory of <category>/train/good/ folders", root)
	}
	dirs, err := subdirs(root)
	if err != nil {
		return nil, err
	}
	var out []*Category
	for _, d := range dirs {
		dir := filepath.Join(root, d)
		if st, err := os.Stat(filepath.Join(dir, "train")); err != nil || !st.IsDir() {
			continue
		}
		c, err := OpenCategory(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dataset: %s holds no category, expected <category>/train/good/ directories", root)
	}
	return out, nil
}

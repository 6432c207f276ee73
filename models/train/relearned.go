//go:build workstation

package train

import (
	"fmt"
	"image"
	"path/filepath"

	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/relearn"
)

// loadRelearned loads Options.RelearnedDir, a category written by
// `inspectd dataset from-archive`: the good parts the station passed
// (confirmed or sampled OK parts) are ordinary good images — trained on,
// held out and calibrated on like --good — and the parts it rejected that
// a reviewer labelled good are trained on only, as --reviewed-good. size
// is the good images' size, which every image must have unless stretch.
func (t *trainer) loadRelearned(size image.Point, stretch bool) (passed, rejected []goodImage, err error) {
	dir := t.opts.RelearnedDir
	if dir == "" {
		return nil, nil, nil
	}
	split, err := relearn.ReadReviewedGood(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("train: --relearned: %w", err)
	}
	load := func(files []string, reviewed bool) ([]goodImage, error) {
		var out []goodImage
		for _, f := range files {
			img, err := dataset.LoadImage(f)
			if err != nil {
				return nil, fmt.Errorf("train: --relearned: %w", err)
			}
			if got := img.Bounds().Size(); !stretch && got != size {
				return nil, fmt.Errorf("train: relearned good part %s is %v, the good images are %v; set input.mixed_sizes = \"stretch\" to resize them", f, got, size)
			}
			out = append(out, goodImage{name: "relearned/" + filepath.Base(f), img: img, reviewed: reviewed})
		}
		return out, nil
	}
	if passed, err = load(split.Passed, false); err != nil {
		return nil, nil, err
	}
	if rejected, err = load(split.Rejected, true); err != nil {
		return nil, nil, err
	}
	return passed, rejected, nil
}

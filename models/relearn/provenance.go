package relearn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/dataset"
)

// ProvenanceName is the provenance file FromArchive writes at the root of
// the category it creates.
const ProvenanceName = "provenance.json"

// ReviewedGood is the good half of a relearned category, split by what
// the station had said about each part.
type ReviewedGood struct {
	// Passed are the parts the station passed (verdict OK): confirmed by
	// a reviewer or drawn by --ok-sample. They are ordinary good parts.
	Passed []string
	// Rejected are the parts the station rejected that a reviewer
	// labelled good: its false rejects, by construction its hardest good
	// parts rather than a sample of them.
	Rejected []string
}

// ReadReviewedGood reads <category>/provenance.json, as FromArchive wrote
// it, and returns the absolute paths of the images in <category>/train/good
// split by the station's verdict. Every image in train/good must be named
// in the provenance and every train/good entry of the provenance must
// exist: a folder edited by hand is refused rather than half-understood.
func ReadReviewedGood(category string) (*ReviewedGood, error) {
	provPath := filepath.Join(category, ProvenanceName)
	data, err := os.ReadFile(provPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: the folder was not written by `inspectd dataset from-archive` (give plain folders of good images with --good or --reviewed-good)", provPath)
		}
		return nil, err
	}
	var prov Provenance
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&prov); err != nil {
		return nil, fmt.Errorf("%s: %w", provPath, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: data after the JSON object", provPath)
	}
	goodDir := filepath.Join(category, "train", "good")
	listed := map[string]bool{}
	var out ReviewedGood
	for i, im := range prov.Images {
		if !strings.HasPrefix(im.File, "train/good/") {
			continue
		}
		name := strings.TrimPrefix(im.File, "train/good/")
		if name == "" || name != path.Base(name) || name == ".." {
			return nil, fmt.Errorf("%s: images[%d].file %q is not a file directly in train/good", provPath, i, im.File)
		}
		if listed[name] {
			return nil, fmt.Errorf("%s: images[%d].file %q is listed twice", provPath, i, im.File)
		}
		listed[name] = true
		file := filepath.Join(goodDir, name)
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("%s: images[%d].file: %w", provPath, i, err)
		}
		switch im.Verdict {
		case string(inspection.OK):
			out.Passed = append(out.Passed, file)
		case string(inspection.NG), string(inspection.Error):
			out.Rejected = append(out.Rejected, file)
		default:
			return nil, fmt.Errorf("%s: images[%d].verdict %q: expected OK, NG or ERROR", provPath, i, im.Verdict)
		}
	}
	entries, err := os.ReadDir(goodDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if dataset.IsImageFile(e.Name()) && !listed[e.Name()] {
			return nil, fmt.Errorf("%s is not in %s: the folder was changed after `inspectd dataset from-archive` wrote it (give extra good images with --good)", filepath.Join(goodDir, e.Name()), provPath)
		}
	}
	if len(out.Passed)+len(out.Rejected) == 0 {
		return nil, fmt.Errorf("%s holds no good parts (train/good is empty)", provPath)
	}
	return &out, nil
}

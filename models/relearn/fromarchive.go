// Package relearn turns the judgement of a station's reviewers into
// training data: FromArchive reads the daemon's archive (package
// io/archive) and the review view's label log and writes an MVTec-layout
// category that `inspectd train` and `inspectd eval` read.
//
// # What goes where
//
//   - train/good: every result whose current label is "good" (a false
//     reject when the daemon said NG, or an OK part a reviewer confirmed),
//     plus, with OKSample > 0, that many unlabelled OK parts drawn at
//     random (by Seed). An unlabelled OK part may be an escape nobody
//     looked at; the sample is for stations whose escapes are rare.
//   - test/<defect_type>: every result whose current label is "defect",
//     with ground_truth/<defect_type>/<name>_mask.png: the daemon's
//     regions (boxes in frame pixels) filled white on black, the size of
//     the frame. Such masks are approximate — boxes, not outlines, and
//     only what the daemon found — and provenance.json says so; a defect
//     the daemon found no region for gets an empty mask.
//   - "unsure" labels, labels of results without a frame image (e.g. a
//     camera timeout), labels naming results the archive no longer
//     holds (deleted by its size budget) and results of another product
//     than Options.Product are counted and reported, never written. One
//     dataset holds one product: results of several without a Product
//     are an error.
//
// The image written is the archived frame (<name>.jpg, copied byte for
// byte, never the heatmap overlay), named by the result ID as the
// archive's file names spell it. Everything is written into a staging
// directory beside Out and renamed into place when complete (package
// models/staging): an existing non-empty Out is refused, a failure leaves
// nothing behind.
package relearn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/staging"
)

// MasksNote is provenance.json's "masks" value.
const MasksNote = "approximate, from daemon regions"

// Options configures FromArchive.
type Options struct {
	// Archive is the daemon's [archive] dir.
	Archive string
	// Labels is the label log; "" means <Archive>/labels.jsonl.
	Labels string
	// Out is the category directory to create (…/<category>).
	Out string
	// OKSample is the number of unlabelled OK parts added to train/good.
	OKSample int
	// Seed makes the OK sample reproducible.
	Seed uint64
	// Product keeps only results of this product (Result.Model.Product):
	// a station inspecting several products archives them all in one
	// place, and one dataset must hold one product. "" is allowed when
	// the results to write are all of one product.
	Product string
	// Now stamps provenance.json; nil means time.Now.
	Now func() time.Time
}

// Summary says what FromArchive wrote and what it left out.
type Summary struct {
	// Out is the dataset written.
	Out string
	// Archived is the number of results in the archive; Labels the label
	// entries read and Labelled the results they label (current labels).
	Archived, Labels, Labelled int
	// Good is the number of labelled-good images in train/good, OKSampled
	// the unlabelled OK parts added to it.
	Good, OKSampled int
	// Defects counts the test images per defect type; EmptyMasks the
	// defect images the daemon found no region in.
	Defects    map[string]int
	EmptyMasks int
	// Unsure counts results labelled "unsure" (not written);
	// OtherProduct the labelled results of another product than
	// Options.Product.
	Unsure, OtherProduct int
	// Missing lists label result IDs with no archived result (sorted);
	// NoFrame those whose set holds no frame image.
	Missing, NoFrame []string
	// Warnings describe anything tolerated: a torn last label line.
	Warnings []string
}

// Provenance is provenance.json: where every image came from.
type Provenance struct {
	Created      time.Time   `json:"created"`
	Tool         string      `json:"tool"`
	Archive      string      `json:"archive"`
	Labels       string      `json:"labels"`
	Masks        string      `json:"masks"`
	Stations     []string    `json:"stations"`
	Products     []string    `json:"products"`
	BundleHashes []string    `json:"bundle_hashes"`
	OKSample     int         `json:"ok_sample"`
	Seed         uint64      `json:"seed"`
	Images       []ProvImage `json:"images"`
	// Missing lists labelled result IDs the archive no longer holds;
	// NoFrame those archived without a frame; Unsure those labelled unsure.
	Missing  []string `json:"missing_results"`
	NoFrame  []string `json:"no_frame_results"`
	Unsure   []string `json:"unsure_results"`
	Warnings []string `json:"warnings,omitempty"`
}

// ProvImage is one written image in provenance.json.
type ProvImage struct {
	File       string    `json:"file"`
	Mask       string    `json:"mask,omitempty"`
	MaskNote   string    `json:"mask_note,omitempty"`
	Source     string    `json:"source"` // "label" or "ok_sample"
	ResultID   string    `json:"result_id"`
	Station    string    `json:"station"`
	Product    string    `json:"product"`
	BundleHash string    `json:"bundle_hash"`
	Verdict    string    `json:"verdict"`
	Reason     string    `json:"reason"`
	Score      float64   `json:"score"`
	Threshold  float64   `json:"threshold"`
	Regions    int       `json:"regions"`
	Label      string    `json:"label,omitempty"`
	DefectType string    `json:"defect_type,omitempty"`
	LabelTime  time.Time `json:"label_time,omitzero"`
	User       string    `json:"user,omitempty"`
	Archived   string    `json:"archived"` // the frame file, relative to the archive
}

// FromArchive writes the dataset described in the package documentation
// and returns what it did. Errors name the file (and label line) at fault.
// It is an error when nothing would be written.
func FromArchive(ctx context.Context, o Options) (*Summary, error) {
	if o.Archive == "" || o.Out == "" {
		return nil, errors.New("from-archive: the archive and the output directory are required")
	}
	if o.OKSample < 0 {
		return nil, fmt.Errorf("from-archive: OK sample %d must be 0 or more", o.OKSample)
	}
	if o.Labels == "" {
		o.Labels = filepath.Join(o.Archive, "labels.jsonl")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if overlap, err := staging.Overlaps(o.Out, o.Archive); err != nil {
		return nil, fmt.Errorf("from-archive: %w", err)
	} else if overlap {
		return nil, fmt.Errorf("from-archive: output %s lies inside the archive %s (or contains it); write the dataset elsewhere", o.Out, o.Archive)
	}
	if err := staging.Check(o.Out); err != nil {
		return nil, fmt.Errorf("from-archive: output: %w", err)
	}
	entries, warnings, err := ReadLabels(o.Labels)
	if err != nil {
		return nil, fmt.Errorf("from-archive: %w", err)
	}
	records, err := ScanArchive(o.Archive)
	if err != nil {
		return nil, fmt.Errorf("from-archive: %w", err)
	}
	cur := CurrentLabels(entries)
	sum := &Summary{Out: o.Out, Archived: len(records), Labels: len(entries), Labelled: len(cur),
		Defects: map[string]int{}, Warnings: warnings}
	prov := &Provenance{Created: o.Now().UTC(), Tool: "inspectd dataset from-archive", Archive: abs(o.Archive), Labels: abs(o.Labels),
		Masks: MasksNote, OKSample: o.OKSample, Seed: o.Seed, Warnings: warnings}

	byID := make(map[string]*Record, len(records))
	otherProduct := map[string]bool{}
	for i := range records {
		if o.Product != "" && records[i].Result.Model.Product != o.Product {
			otherProduct[records[i].Result.ID] = true
			continue
		}
		byID[records[i].Result.ID] = &records[i]
	}
	type item struct {
		rec    *Record
		label  *LabelEntry
		source string
	}
	var goods, defects []item
	ids := make([]string, 0, len(cur))
	for id := range cur {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := cur[id]
		rec, ok := byID[id]
		switch {
		case otherProduct[id]:
			sum.OtherProduct++
			continue
		case !ok:
			sum.Missing = append(sum.Missing, id)
			continue
		case e.Label == LabelUnsure:
			sum.Unsure++
			prov.Unsure = append(prov.Unsure, id)
			continue
		case rec.FramePath == "":
			sum.NoFrame = append(sum.NoFrame, id)
			continue
		}
		it := item{rec: rec, label: &e, source: "label"}
		if e.Label == LabelGood {
			goods = append(goods, it)
		} else {
			defects = append(defects, it)
		}
	}
	sum.Good = len(goods)
	if o.OKSample > 0 {
		var pool []*Record
		for i := range records {
			r := &records[i]
			if _, labelled := cur[r.Result.ID]; !labelled && !otherProduct[r.Result.ID] && r.Result.Verdict == inspection.OK && r.FramePath != "" {
				pool = append(pool, r)
			}
		}
		rng := rand.New(rand.NewPCG(o.Seed, 0x72656c6561726e)) // "relearn"
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		if len(pool) < o.OKSample {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("asked for %d unlabelled OK parts, the archive holds %d: all taken", o.OKSample, len(pool)))
		}
		pool = pool[:min(len(pool), o.OKSample)]
		sort.Slice(pool, func(i, j int) bool { return pool[i].JSONPath < pool[j].JSONPath })
		for _, r := range pool {
			goods = append(goods, item{rec: r, source: "ok_sample"})
		}
		sum.OKSampled = len(pool)
	}
	prov.Missing, prov.NoFrame = sum.Missing, sum.NoFrame
	if o.Product == "" {
		products := map[string]bool{}
		for _, it := range append(append([]item(nil), goods...), defects...) {
			products[it.rec.Result.Model.Product] = true
		}
		if len(products) > 1 {
			return sum, fmt.Errorf("from-archive: the results to write are of %d products (%s); one dataset holds one product: choose it (--product)",
				len(products), strings.Join(keys(products), ", "))
		}
	}
	if len(goods)+len(defects) == 0 {
		return sum, fmt.Errorf("from-archive: nothing to write: %d label entries for %d results in %s, none labels an archived result with a frame as good or defect (%d missing from the archive, %d without a frame, %d unsure)",
			len(entries), len(cur), o.Labels, len(sum.Missing), len(sum.NoFrame), sum.Unsure)
	}

	st, err := staging.New(o.Out)
	if err != nil {
		return nil, fmt.Errorf("from-archive: output: %w", err)
	}
	defer st.Abort()
	root := st.Path()
	stations, products, hashes := map[string]bool{}, map[string]bool{}, map[string]bool{}
	write := func(it item, dir string, withMask bool) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("from-archive: %w", err)
		}
		r := &it.rec.Result
		data, err := readRegular(it.rec.FramePath, maxImageBytes)
		if err != nil {
			return fmt.Errorf("from-archive: %w", err)
		}
		cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("from-archive: %s: %v, expected the frame JPEG the archive wrote", it.rec.FramePath, err)
		}
		name := it.rec.Name
		rel := filepath.Join(dir, name+".jpg")
		if err := writeNew(filepath.Join(root, rel), data); err != nil {
			return fmt.Errorf("from-archive: %w", err)
		}
		pi := ProvImage{File: filepath.ToSlash(rel), Source: it.source, ResultID: r.ID, Station: r.Station, Product: r.Model.Product,
			BundleHash: r.Model.BundleHash, Verdict: string(r.Verdict), Reason: r.Reason, Score: r.Score, Threshold: r.Threshold,
			Regions: len(r.Regions), Archived: relTo(o.Archive, it.rec.FramePath)}
		if it.label != nil {
			pi.Label, pi.DefectType, pi.LabelTime, pi.User = it.label.Label, it.label.DefectType, it.label.Time, it.label.User
		}
		if withMask {
			mrel := filepath.Join("ground_truth", it.label.DefectType, name+"_mask.png")
			png, n, err := regionMask(cfg.Width, cfg.Height, r.Regions)
			if err != nil {
				return fmt.Errorf("from-archive: mask of %s: %w", it.rec.JSONPath, err)
			}
			if err := writeNew(filepath.Join(root, mrel), png); err != nil {
				return fmt.Errorf("from-archive: %w", err)
			}
			pi.Mask = filepath.ToSlash(mrel)
			pi.MaskNote = MasksNote
			if n == 0 {
				pi.MaskNote = "empty: the daemon found no region in this part"
				sum.EmptyMasks++
			}
		}
		stations[r.Station], products[r.Model.Product], hashes[r.Model.BundleHash] = true, true, true
		prov.Images = append(prov.Images, pi)
		return nil
	}
	for _, it := range goods {
		if err := write(it, filepath.Join("train", dataset.Good), false); err != nil {
			return nil, err
		}
	}
	for _, it := range defects {
		if err := write(it, filepath.Join("test", it.label.DefectType), true); err != nil {
			return nil, err
		}
		sum.Defects[it.label.DefectType]++
	}
	prov.Stations, prov.Products, prov.BundleHashes = keys(stations), keys(products), keys(hashes)
	prov.Warnings = sum.Warnings
	js, err := json.MarshalIndent(prov, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("from-archive: provenance: %w", err)
	}
	if err := writeNew(filepath.Join(root, "provenance.json"), append(js, '\n')); err != nil {
		return nil, fmt.Errorf("from-archive: %w", err)
	}
	if err := syncTree(root); err != nil {
		return nil, fmt.Errorf("from-archive: %w", err)
	}
	if err := st.Commit(); err != nil {
		return nil, fmt.Errorf("from-archive: output: %w", err)
	}
	return sum, nil
}

// regionMask draws the regions (frame pixels, clipped to the frame)
// filled with 255 on a w×h black grey image and encodes it as PNG; n is
// the number of regions that overlap the frame.
func regionMask(w, h int, regions []inspection.Region) ([]byte, int, error) {
	if w <= 0 || h <= 0 {
		return nil, 0, fmt.Errorf("frame is %dx%d", w, h)
	}
	m := image.NewGray(image.Rect(0, 0, w, h))
	n := 0
	for _, rg := range regions {
		box := image.Rect(rg.X, rg.Y, rg.X+rg.Width, rg.Y+rg.Height).Intersect(m.Rect)
		if box.Empty() {
			continue
		}
		n++
		for y := box.Min.Y; y < box.Max.Y; y++ {
			for x := box.Min.X; x < box.Max.X; x++ {
				m.SetGray(x, y, color.Gray{Y: 255})
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), n, nil
}

// writeNew creates p (and its directory) with data; p must not exist.
func writeNew(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return staging.WriteFileSync(p, data, 0o644)
}

// syncTree fsyncs every directory under root (and root), so that the
// rename of a complete dataset never exposes missing entries after a crash.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func relTo(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

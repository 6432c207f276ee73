// Package evaluate measures a model bundle on labelled test data in the
// MVTec AD layout (DESIGN.md §1 "Evaluation"): image AUROC, pixel AUROC,
// pixel AP, AUPRO (FPR ≤ 0.3, normalised), precision/recall/F1 of the
// daemon's own verdicts and at the F1-optimal threshold, a per-defect-type
// table, and the latency of the align and localise stages. Run produces a
// Report, which writes itself as JSON (WriteJSON) and as a self-contained
// HTML page with ROC and PR curves and overlay images of the worst false
// positives and false negatives (WriteHTML).
//
// # What is measured
//
// Every test image of a category is decoded, aligned with Engine.Align and
// localised with Engine.Localize, with the whole image as the region of
// interest, exactly as the daemon would process a frame. The image score is
// the value Localize returns (the maximum of the heatmap). Each image's
// verdict is the daemon's: decision.Decider.Decide on the score and the
// heatmap with the bundle's image and pixel thresholds (or the overrides of
// Options.Decision), min_defect_area and max_regions, so that an image is
// rejected by its score or by a defect region exactly as `inspectd run`
// rejects it; precision, recall, F1, false rejects and escapes "at the
// threshold" count those verdicts. Latency is the
// wall time of each of the two calls; decoding is not included and runs
// between them, never concurrently, so that it does not steal cores from
// inference.
//
// # Pixel metrics and mask resampling
//
// Heatmaps are at the model input size and in the aligned frame (the engine
// warps the image by the alignment transform before localising). Ground
// truth masks are therefore brought into the same frame: through the same
// alignment warp and onto the same grid as the engine maps the image, and
// a heatmap pixel is a defect pixel when more than half of its footprint
// is defect ("area > 0.5": exact without a warp, measured at 8×8 points
// per pixel under one). Regions thinner than about half a heatmap pixel
// can vanish; a category whose defects all vanish gets a note
// and no pixel metrics. Pixel metrics are accumulated image by image in a
// metrics.PixelAccumulator over [0, 1], so memory does not grow with the
// number of images.
//
// Categories without masks get image-level metrics only: their pixel
// metrics are absent from the report (not zero) and a note says so.
package evaluate

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"path/filepath"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/decision"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Engine is what Run needs of an inference engine. *infer.Engine satisfies
// it; tests use fakes. When the engine also has ModelHash() string or
// Provider() string methods, the report records their results.
type Engine interface {
	// Manifest returns the bundle's manifest (input size, calibration).
	Manifest() bundle.Manifest
	// NewHeatmap allocates a heatmap of the model input size.
	NewHeatmap() *preprocess.Heatmap
	// Align predicts the transform of the part in roi (empty: whole frame).
	Align(frame image.Image, roi image.Rectangle) (preprocess.Transform, error)
	// Localize writes the heatmap of the aligned roi into dst and returns
	// the image score.
	Localize(frame image.Image, roi image.Rectangle, t preprocess.Transform, dst *preprocess.Heatmap) (float32, error)
}

// DefaultOverlays is the number of worst false positives and of worst false
// negatives per category kept for overlays when Options.Overlays is 0.
const DefaultOverlays = 4

// AUPROMaxFPR is the false-positive rate up to which AUPRO is integrated
// (the MVTec AD protocol).
const AUPROMaxFPR = 0.3

// NoMasksNote is the note of a category without ground-truth masks.
const NoMasksNote = "no masks: image-level metrics only"

// Options configures Run.
type Options struct {
	// Threshold on the image score; when > 0 it overrides the bundle's
	// calibrated Manifest.Calibration.ImageThreshold and
	// Decision.Threshold.
	Threshold float64
	// Decision is the [decision] section the verdicts are taken with, as
	// the daemon applies it: Threshold and PixelThreshold, when > 0,
	// override the bundle's calibrated thresholds; MinDefectArea (in
	// pixels of the test image, the daemon's frame) and MaxRegions as in
	// the daemon; MaxOutsideFraction when Options.MaxOutsideFraction is 0.
	// The zero value decides with the bundle's thresholds and no minimum
	// defect area, the daemon's default.
	Decision config.Decision
	// Overlays is the number of worst false positives (highest-scoring good
	// images) and worst false negatives (lowest-scoring defect images) kept
	// per category for WriteHTML: 0 means DefaultOverlays, negative none.
	Overlays int
	// Progress, when not nil, receives the progress of each category: on a
	// terminal a single-line bar redrawn with '\r' and ended with '\n';
	// anywhere else (a file, a pipe) plain lines, at most one every 5 s
	// and the last. Write errors are ignored.
	Progress io.Writer
	// Bins is the number of score bins of the pixel accumulator; 0 means
	// metrics.DefaultBins.
	Bins int
	// MaxOutsideFraction: a part whose alignment pulls more than this
	// fraction of the model input from outside the image scores 1, as the
	// daemon rejects it (decision.max_outside_fraction); 0 means
	// config.DefaultMaxOutsideFraction.
	MaxOutsideFraction float64
	// MapsDir, when not empty, is an existing directory that receives
	// <category>_maps.npz per category: every test image's heatmap with
	// its score, label and path relative to the dataset root, in the
	// layout of `peers.py --save-maps`, so that the peers' metric code can
	// score inspectd's heatmaps and the two can be diffed. The heatmaps
	// are in the image's own frame, as the peers' are: an aligned image's
	// is warped back (preprocess.ToFrame), 0 where the alignment left the
	// image out of view.
	MapsDir string

	// now is the clock for latency and progress (nil: time.Now); tests set it.
	now func() time.Time
	// terminal tells whether Progress is a terminal (nil:
	// logging.IsTerminal); tests set it.
	terminal func(io.Writer) bool
}

// modelHasher and providerNamer are optional Engine methods.
type modelHasher interface{ ModelHash() string }
type providerNamer interface{ Provider() string }

// Run evaluates eng on the test split of every category and returns the
// report. It stops with an error wrapping ctx.Err() when ctx is cancelled,
// and with an error naming the file when an image cannot be decoded or
// processed. Categories must have distinct names and at least one test
// image each.
func Run(ctx context.Context, eng Engine, cats []*dataset.Category, opts Options) (*Report, error) {
	if eng == nil {
		return nil, errors.New("evaluate: no engine")
	}
	if len(cats) == 0 {
		return nil, errors.New("evaluate: no category to evaluate")
	}
	seen := map[string]bool{}
	for _, c := range cats {
		if seen[c.Name] {
			return nil, fmt.Errorf("evaluate: two categories named %q (%s), expected distinct names", c.Name, c.Dir)
		}
		seen[c.Name] = true
		if len(c.Test) == 0 {
			return nil, fmt.Errorf("evaluate: category %s has no test images, expected %s/test/<good|defect>/", c.Name, c.Dir)
		}
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.Bins == 0 {
		opts.Bins = metrics.DefaultBins
	}
	switch {
	case opts.Overlays == 0:
		opts.Overlays = DefaultOverlays
	case opts.Overlays < 0:
		opts.Overlays = 0
	}
	m := eng.Manifest()
	thr, source := m.Calibration.ImageThreshold, "calibration"
	switch {
	case opts.Threshold > 0:
		thr, source = opts.Threshold, "override"
	case opts.Decision.Threshold > 0:
		thr, source = opts.Decision.Threshold, "config"
	}
	if math.IsNaN(thr) || math.IsInf(thr, 0) {
		return nil, fmt.Errorf("evaluate: image threshold %v, expected a number", thr)
	}
	px, pxSource := m.Calibration.PixelThreshold, "calibration"
	if opts.Decision.PixelThreshold > 0 {
		px, pxSource = opts.Decision.PixelThreshold, "config"
	}
	if !(px > 0) || math.IsInf(px, 0) {
		return nil, fmt.Errorf("evaluate: pixel threshold %v, expected a number above 0 (the bundle's calibration or [decision] pixel_threshold)", px)
	}
	if opts.MaxOutsideFraction <= 0 {
		opts.MaxOutsideFraction = opts.Decision.MaxOutsideFraction
	}
	rep := &Report{Bundle: BundleInfo{
		Product:             m.Product,
		InputWidth:          m.Input.Width,
		InputHeight:         m.Input.Height,
		AlignMethod:         m.Align.Method,
		CalibratedThreshold: m.Calibration.ImageThreshold,
		Threshold:           thr,
		ThresholdSource:     source,

		CalibratedPixelThreshold: m.Calibration.PixelThreshold,
		PixelThreshold:           px,
		PixelThresholdSource:     pxSource,
		MinDefectArea:            opts.Decision.MinDefectArea,
	}}
	if h, ok := eng.(modelHasher); ok {
		rep.Bundle.ModelHash = h.ModelHash()
	}
	if p, ok := eng.(providerNamer); ok {
		rep.Bundle.Provider = p.Provider()
	}
	hm := eng.NewHeatmap()
	if hm == nil || hm.Width <= 0 || hm.Height <= 0 || len(hm.Values) != hm.Width*hm.Height {
		return nil, errors.New("evaluate: engine returned an invalid heatmap from NewHeatmap")
	}
	for _, c := range cats {
		cr, err := runCategory(ctx, eng, c, hm, thr, px, opts)
		if err != nil {
			return nil, err
		}
		rep.Categories = append(rep.Categories, cr)
	}
	return rep, nil
}

// runCategory evaluates one category.
func runCategory(ctx context.Context, eng Engine, c *dataset.Category, hm *preprocess.Heatmap, thr, px float64, opts Options) (*CategoryReport, error) {
	cr := &CategoryReport{Name: c.Name, Dir: c.Dir, HasMasks: c.HasMasks, Threshold: thr, PixelThreshold: px, heatW: hm.Width, heatH: hm.Height}
	var dec decision.Decider
	cr.Notes = append(cr.Notes, c.Notes...)
	cr.worstGood = worstList{n: opts.Overlays, high: true}
	cr.worstDefect = worstList{n: opts.Overlays, high: false}
	var acc *metrics.PixelAccumulator
	var mr maskRenderer
	if c.HasMasks {
		var err error
		if acc, err = metrics.NewPixelAccumulator(0, 1, opts.Bins); err != nil {
			return nil, fmt.Errorf("evaluate: category %s: %w", c.Name, err)
		}
	}
	prog := newProgress(opts.Progress, c.Name, len(c.Test), opts.now, opts.terminal)
	alignMs := make([]float64, 0, len(c.Test))
	locMs := make([]float64, 0, len(c.Test))
	vanished := 0   // defect images whose mask has no pixel left at heatmap resolution
	outOfFrame := 0 // images aligned mostly outside the frame, scored 1
	maxOutside := opts.MaxOutsideFraction
	if maxOutside <= 0 {
		maxOutside = config.DefaultMaxOutsideFraction
	}
	var empty []string // defect images whose mask marks no pixel at all
	var maps *mapsArchive
	var frameMap []float32 // an aligned heatmap in the image's frame, for maps
	if opts.MapsDir != "" {
		var err error
		if maps, err = newMapsArchive(filepath.Join(opts.MapsDir, c.Name+"_maps.npz"), len(c.Test), hm.Width, hm.Height); err != nil {
			return nil, fmt.Errorf("evaluate: category %s: heatmap archive: %w", c.Name, err)
		}
		defer maps.abort() // after close: a no-op
	}
	for i := range c.Test {
		if err := ctx.Err(); err != nil {
			prog.abort()
			return nil, fmt.Errorf("evaluate: category %s: stopped after %d of %d images: %w", c.Name, i, len(c.Test), err)
		}
		// Images are decoded here, between the timed stages, not in a
		// concurrent goroutine: on a small box a parallel decoder would
		// compete with inference for the cores and inflate the latencies.
		sample := c.Test[i]
		img, m, err := sample.Load()
		if err != nil {
			prog.abort()
			return nil, fmt.Errorf("evaluate: category %s: %w", c.Name, err)
		}
		it := struct {
			s    dataset.Sample
			img  image.Image
			mask *dataset.Mask
		}{sample, img, m}
		t0 := opts.now()
		tr, err := eng.Align(it.img, image.Rectangle{})
		t1 := opts.now()
		if err != nil {
			prog.abort()
			return nil, fmt.Errorf("evaluate: %s: %w", it.s.Path, err)
		}
		score, err := eng.Localize(it.img, image.Rectangle{}, tr, hm)
		t2 := opts.now()
		if err != nil {
			prog.abort()
			return nil, fmt.Errorf("evaluate: %s: %w", it.s.Path, err)
		}
		if math.IsNaN(float64(score)) || math.IsInf(float64(score), 0) {
			prog.abort()
			return nil, fmt.Errorf("evaluate: %s: image score %v, expected a number", it.s.Path, score)
		}
		alignMs = append(alignMs, ms(t1.Sub(t0)))
		locMs = append(locMs, ms(t2.Sub(t1)))
		if acc != nil {
			mask, err := mr.render(it.mask, tr, hm.Width, hm.Height)
			if err != nil {
				prog.abort()
				return nil, fmt.Errorf("evaluate: mask of %s: %w", it.s.Path, err)
			}
			switch {
			case !it.s.Anomalous():
			case it.mask != nil && it.mask.Count() == 0:
				empty = append(empty, it.s.MaskPath)
			case mask == nil:
				vanished++
			}
			if err := acc.Add(hm.Values, mask, hm.Width, hm.Height); err != nil {
				prog.abort()
				return nil, fmt.Errorf("evaluate: %s: %w", it.s.Path, err)
			}
		}
		res := ImageResult{Sample: it.s, Score: float64(score), Transform: tr}
		if hm.Outside > maxOutside {
			// The daemon answers ERROR out_of_frame before deciding.
			res.Score, res.OutOfFrame = 1, true
			res.Verdict, res.Reason = inspection.Error, inspection.ReasonOutOfFrame
			outOfFrame++
		} else {
			// The daemon's decision on the whole image as its ROI, as the
			// engine localised it.
			res.Verdict, res.Reason, _ = dec.Decide(decision.Input{
				Score: float64(score), Heatmap: hm, ROI: it.img.Bounds(), Transform: tr,
				Threshold: thr, PixelThreshold: px,
				MinDefectArea: opts.Decision.MinDefectArea, MaxRegions: opts.Decision.MaxRegions,
			})
		}
		if maps != nil {
			rel, err := filepath.Rel(filepath.Dir(c.Dir), it.s.Path)
			if err != nil {
				rel = it.s.Path
			}
			inFrame := hm.Values
			if !tr.IsIdentity() {
				if len(frameMap) != len(hm.Values) {
					frameMap = make([]float32, len(hm.Values))
				}
				b := it.img.Bounds()
				if err := preprocess.ToFrame(frameMap, hm.Values, hm.Width, hm.Height, tr.Pixel(b.Dx(), b.Dy()), b.Dx(), b.Dy()); err != nil {
					prog.abort()
					return nil, fmt.Errorf("evaluate: %s: heatmap back to the image's frame: %w", it.s.Path, err)
				}
				inFrame = frameMap
			}
			if err := maps.add(inFrame, res.Score, it.s.Anomalous(), filepath.ToSlash(rel)); err != nil {
				prog.abort()
				return nil, fmt.Errorf("evaluate: category %s: heatmap archive: %w", c.Name, err)
			}
		}
		cr.Images = append(cr.Images, res)
		if res.Sample.Anomalous() {
			cr.worstDefect.offer(res, hm)
		} else {
			cr.worstGood.offer(res, hm)
		}
		prog.update(i + 1)
	}
	prog.finish()
	if maps != nil {
		if err := maps.close(); err != nil {
			return nil, fmt.Errorf("evaluate: category %s: heatmap archive: %w", c.Name, err)
		}
	}
	if len(empty) > 0 {
		cr.Notes = append(cr.Notes, fmt.Sprintf("%d defect images have an empty mask, which marks no pixel (first: %s); masks mark defects with grey >= 128, or any non-zero value when the brightest pixel is below 128 (0/1 label masks)", len(empty), empty[0]))
	}
	if outOfFrame > 0 {
		cr.Notes = append(cr.Notes, fmt.Sprintf("%d images were aligned with more than %g of the model input outside the image: scored 1, as the daemon rejects them (ERROR out_of_frame)", outOfFrame, maxOutside))
	}
	if vanished > 0 {
		cr.Notes = append(cr.Notes, fmt.Sprintf("%d defect images have no defect pixel left after resampling their mask to the %dx%d heatmap (coverage > 0.5)", vanished, hm.Width, hm.Height))
	}
	cr.Latency = LatencyReport{Align: latencyOf(alignMs), Localize: latencyOf(locMs)}
	if err := cr.computeMetrics(acc); err != nil {
		return nil, fmt.Errorf("evaluate: category %s: %w", c.Name, err)
	}
	return cr, nil
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ptr returns a pointer to v.
func ptr(v float64) *float64 { return &v }

// computeMetrics fills the image, pixel and per-defect metrics from the
// recorded results and the pixel accumulator (nil without masks).
// Undefined metrics (one class only) are left absent with a note.
func (cr *CategoryReport) computeMetrics(acc *metrics.PixelAccumulator) error {
	scores := make([]float64, len(cr.Images))
	labels := make([]bool, len(cr.Images))
	for i, r := range cr.Images {
		scores[i], labels[i] = r.Score, r.Sample.Anomalous()
		if labels[i] {
			cr.Anomalous++
		}
		cr.MaxScore = math.Max(cr.MaxScore, r.Score)
	}
	cr.Count = len(cr.Images)
	undefined := func(what string, err error) error {
		if errors.Is(err, metrics.ErrOneClass) {
			cr.Notes = append(cr.Notes, fmt.Sprintf("%s undefined: %v", what, err))
			return nil
		}
		return err
	}
	if v, err := metrics.AUROC(scores, labels); err == nil {
		cr.ImageAUROC = ptr(v)
	} else if err := undefined("image AUROC", err); err != nil {
		return err
	}
	// The operating point "at the threshold" is the decision's verdicts:
	// rejected (NG by score or by region, or ERROR) counts as predicted
	// defective, whatever the score.
	rejected := make([]float64, len(cr.Images))
	for i, r := range cr.Images {
		if r.Verdict.Rejects() {
			rejected[i] = 1
		}
		switch {
		case labels[i] && !r.Verdict.Rejects():
			cr.Escapes++
		case !labels[i] && r.Verdict.Rejects():
			cr.FalseRejects++
			if r.Reason == inspection.ReasonRegion {
				cr.GoodRejectedByRegion++
			}
		}
	}
	if good := len(cr.Images) - cr.Anomalous; good > 0 {
		cr.FRR = ptr(float64(cr.FalseRejects) / float64(good))
	}
	if cr.Anomalous > 0 {
		cr.EscapeRate = ptr(float64(cr.Escapes) / float64(cr.Anomalous))
	}
	if p, err := metrics.PRF1At(rejected, labels, 1); err == nil {
		p.Threshold = cr.Threshold
		op := operatingPoint(p)
		cr.AtThreshold = &op
	} else if err := undefined("F1 at threshold", err); err != nil {
		return err
	}
	if p, err := metrics.BestF1(scores, labels); err == nil {
		op := operatingPoint(p)
		cr.BestF1 = &op
	} else if err := undefined("best F1", err); err != nil {
		return err
	}

	for _, r := range cr.Images {
		rel, err := filepath.Rel(cr.Dir, r.Sample.Path)
		if err != nil {
			rel = r.Sample.Path
		}
		cr.Scores = append(cr.Scores, ImageScore{Path: rel, Defect: r.Sample.Defect, Score: r.Score,
			Align: [3]float64{r.Transform.Tx, r.Transform.Ty, r.Transform.Degrees()}, OutOfFrame: r.OutOfFrame,
			Verdict: r.Verdict, Reason: r.Reason})
	}
	cr.PerDefect = map[string]*DefectStats{}
	var goodScores []float64
	byDefect := map[string][]float64{}
	detected := map[string]int{} // rejected by the decision
	for _, r := range cr.Images {
		byDefect[r.Sample.Defect] = append(byDefect[r.Sample.Defect], r.Score)
		if r.Verdict.Rejects() {
			detected[r.Sample.Defect]++
		}
		if !r.Sample.Anomalous() {
			goodScores = append(goodScores, r.Score)
		}
	}
	for d, ss := range byDefect {
		st := &DefectStats{Count: len(ss)}
		det := detected[d]
		for _, s := range ss {
			st.MeanScore += s
		}
		st.MeanScore /= float64(len(ss))
		st.DetectionRate = float64(det) / float64(len(ss))
		if d != dataset.Good && len(goodScores) > 0 {
			sc := append(append([]float64(nil), goodScores...), ss...)
			lb := make([]bool, len(sc))
			for i := len(goodScores); i < len(sc); i++ {
				lb[i] = true
			}
			v, err := metrics.AUROC(sc, lb)
			if err != nil {
				return err
			}
			st.ImageAUROC = ptr(v)
		}
		cr.PerDefect[d] = st
	}

	if acc == nil {
		cr.Notes = append(cr.Notes, NoMasksNote)
		return nil
	}
	if v, err := acc.AUROC(); err == nil {
		cr.PixelAUROC = ptr(v)
	} else if err := undefined("pixel AUROC", err); err != nil {
		return err
	}
	if v, err := acc.AP(); err == nil {
		cr.PixelAP = ptr(v)
	} else if err := undefined("pixel AP", err); err != nil {
		return err
	}
	if v, err := acc.AUPRO(AUPROMaxFPR); err == nil {
		cr.AUPRO = ptr(v)
	} else if err := undefined("AUPRO", err); err != nil {
		return err
	}
	if n := acc.Clamped(); n > 0 {
		cr.Notes = append(cr.Notes, fmt.Sprintf("%d heatmap values outside [0, 1] were clamped for the pixel metrics", n))
	}
	return nil
}

// maskRenderer brings ground-truth masks into the heatmap's frame; it keeps
// its buffers between images.
type maskRenderer struct {
	out []bool
	row []float64
}

// coverageSamples is the side of the grid of points at which render
// measures, under an alignment warp, the part of each heatmap pixel's
// footprint that is defect.
const coverageSamples = 8

// render brings m into the heatmap's frame — the alignment transform t of
// the whole frame, as the engine warps the image, then the model input's
// w×h grid — and returns the heatmap pixels whose footprint is more than
// half defect ("area > 0.5"): exactly (the overlap of each mask pixel with
// the footprint) without a warp, and at coverageSamples² points per pixel
// through one, each point the mask pixel it falls in (none beyond the
// mask's edge). Area, not the mask sampled where the heatmap pixel's
// centre falls (the peers' nearest-neighbour masks, or the image's
// resampler as before): whether a crack narrower than a heatmap pixel
// counts depends on how much of the pixel it covers, not on where the
// centres happen to fall. A nil m (or one without defect pixels) gives
// nil: no defect pixel. The returned slice is reused by the next call.
func (r *maskRenderer) render(m *dataset.Mask, t preprocess.Transform, w, h int) ([]bool, error) {
	if m == nil || m.Count() == 0 {
		return nil, nil
	}
	if len(m.Pix) != m.W*m.H || m.W <= 0 || m.H <= 0 {
		return nil, fmt.Errorf("mask is %dx%d with %d pixels", m.W, m.H, len(m.Pix))
	}
	if len(r.out) != w*h {
		r.out = make([]bool, w*h)
	}
	if t.IsIdentity() {
		r.area(m, w, h)
	} else {
		r.sampled(m, t.Pixel(m.W, m.H), w, h)
	}
	found := false
	for _, d := range r.out {
		found = found || d
	}
	if !found {
		return nil, nil
	}
	return r.out, nil
}

// area sets r.out from the exact overlap of each heatmap pixel's footprint
// (pixel x covers mask columns [x·W/w, (x+1)·W/w)) with the defect pixels,
// one axis at a time.
func (r *maskRenderer) area(m *dataset.Mask, w, h int) {
	sx, sy := float64(m.W)/float64(w), float64(m.H)/float64(h)
	if cap(r.row) < m.W {
		r.row = make([]float64, m.W)
	}
	row := r.row[:m.W]
	for y := range h {
		// row: the defect length of each mask column within this row's
		// footprint.
		clear(row)
		y0, y1 := float64(y)*sy, float64(y+1)*sy
		for j := int(y0); j < m.H && float64(j) < y1; j++ {
			o := min(y1, float64(j+1)) - max(y0, float64(j))
			for i, d := range m.Pix[j*m.W : (j+1)*m.W] {
				if d {
					row[i] += o
				}
			}
		}
		for x := range w {
			x0, x1 := float64(x)*sx, float64(x+1)*sx
			var a float64
			for i := int(x0); i < m.W && float64(i) < x1; i++ {
				a += (min(x1, float64(i+1)) - max(x0, float64(i))) * row[i]
			}
			r.out[y*w+x] = a > 0.5*sx*sy
		}
	}
}

// sampled sets r.out from coverageSamples² points per heatmap pixel,
// mapped through warp as preprocess.Fill maps output to input.
func (r *maskRenderer) sampled(m *dataset.Mask, warp preprocess.Affine, w, h int) {
	const k = coverageSamples
	sx, sy := float64(m.W)/float64(w), float64(m.H)/float64(h)
	for y := range h {
		for x := range w {
			n := 0
			for j := range k {
				// Mask coordinates with pixel centres on whole numbers.
				v := (float64(y)+(float64(j)+0.5)/k)*sy - 0.5
				for i := range k {
					u := (float64(x)+(float64(i)+0.5)/k)*sx - 0.5
					xs, ys := warp.Apply(u, v)
					px, py := int(math.Floor(xs+0.5)), int(math.Floor(ys+0.5))
					if px >= 0 && px < m.W && py >= 0 && py < m.H && m.Pix[py*m.W+px] {
						n++
					}
				}
			}
			r.out[y*w+x] = 2*n > k*k
		}
	}
}

package evaluate

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/inspectd/inspectd/infer/latency"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Report is the result of Run: what was evaluated and every category's
// figures, in the order the categories were given.
type Report struct {
	// Bundle describes the model and the threshold used.
	Bundle BundleInfo
	// Categories holds one entry per evaluated category.
	Categories []*CategoryReport
}

// BundleInfo identifies the evaluated model. Its JSON form is the report's
// "bundle" object.
type BundleInfo struct {
	Product string `json:"product"`
	// ModelHash and Provider are set when the engine reports them.
	ModelHash   string `json:"model_hash,omitempty"`
	Provider    string `json:"provider,omitempty"`
	InputWidth  int    `json:"input_width"`
	InputHeight int    `json:"input_height"`
	AlignMethod string `json:"align_method"`
	// CalibratedThreshold is the bundle's image threshold.
	CalibratedThreshold float64 `json:"calibrated_threshold"`
	// Threshold is the image threshold used: Options.Threshold when > 0,
	// else CalibratedThreshold.
	Threshold float64 `json:"threshold"`
	// ThresholdSource is "calibration", "config" (Options.Decision) or
	// "override" (Options.Threshold).
	ThresholdSource string `json:"threshold_source"`
	// CalibratedPixelThreshold is the bundle's pixel threshold.
	CalibratedPixelThreshold float64 `json:"calibrated_pixel_threshold"`
	// PixelThreshold is the pixel threshold the verdicts' defect regions
	// were found with: Options.Decision.PixelThreshold when > 0, else
	// CalibratedPixelThreshold.
	PixelThreshold float64 `json:"pixel_threshold"`
	// PixelThresholdSource is "calibration" or "config".
	PixelThresholdSource string `json:"pixel_threshold_source"`
	// MinDefectArea is the decision's min_defect_area, in pixels of the
	// test image.
	MinDefectArea int `json:"min_defect_area"`
}

// OperatingPoint is precision, recall and F1 with the confusion counts:
// at the F1-optimal threshold, images scored >= Threshold are predicted
// defective; at the decision's threshold (CategoryReport.AtThreshold) the
// images the decision rejects (by score or by region) are.
type OperatingPoint struct {
	Threshold float64 `json:"threshold"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	TP        uint64  `json:"tp"`
	FP        uint64  `json:"fp"`
	FN        uint64  `json:"fn"`
	TN        uint64  `json:"tn"`
}

// operatingPoint converts a metrics.PRF; an infinite threshold (nothing
// predicted defective) becomes the largest float so that JSON can hold it.
func operatingPoint(p metrics.PRF) OperatingPoint {
	t := p.Threshold
	if math.IsInf(t, 1) {
		t = math.MaxFloat64
	}
	return OperatingPoint{Threshold: t, Precision: p.Precision, Recall: p.Recall, F1: p.F1, TP: p.TP, FP: p.FP, FN: p.FN, TN: p.TN}
}

// DefectStats summarises the test images of one defect type (or of the
// good images, under the key "good").
type DefectStats struct {
	// Count is the number of images.
	Count int `json:"count"`
	// MeanScore is their mean image score.
	MeanScore float64 `json:"mean_score"`
	// DetectionRate is the fraction the decision rejects (by score or by
	// region): the recall of this defect type, or for "good" the
	// false-reject rate.
	DetectionRate float64 `json:"detection_rate"`
	// ImageAUROC is the AUROC of this defect type against the good images;
	// absent for "good" and when there are no good images.
	ImageAUROC *float64 `json:"image_auroc,omitempty"`
}

// Latency summarises the wall times of one stage over a category's images,
// exactly as `inspectd bench` does (latency.Summarise): the median of an even
// count is the mean of the two middle values; P99 is the nearest-rank 99th
// percentile (the ⌈0.99·n⌉-th smallest).
type Latency = latency.StageTiming

// LatencyReport holds the per-stage latencies.
type LatencyReport struct {
	Align    Latency `json:"align"`
	Localize Latency `json:"localize"`
}

// latencyOf summarises durations in milliseconds (zero for none).
func latencyOf(v []float64) Latency {
	return latency.Summarise(append([]float64(nil), v...))
}

// ImageResult is the outcome of one test image.
type ImageResult struct {
	// Sample is the test image (its Defect gives the label).
	Sample dataset.Sample
	// Score is the image score.
	Score float64
	// Transform is the alignment the engine predicted.
	Transform preprocess.Transform
	// OutOfFrame is true when the alignment pulled more than
	// Options.MaxOutsideFraction of the input from outside the image: the
	// daemon rejects such a part (ERROR out_of_frame), so Score is 1.
	OutOfFrame bool
	// Verdict and Reason are the daemon's decision on the image
	// (decision.Decider.Decide): NG by "score" or by "region", OK "pass",
	// or ERROR "out_of_frame".
	Verdict inspection.Verdict
	Reason  string
}

// ImageScore is one test image's outcome in the JSON report.
type ImageScore struct {
	// Path is the image file relative to the category folder.
	Path string `json:"path"`
	// Defect is the defect type, "good" for a good part.
	Defect string `json:"defect"`
	// Score is the image score.
	Score float64 `json:"score"`
	// Align is the predicted alignment (tx, ty in normalised units, θ in
	// degrees); all 0 without alignment.
	Align [3]float64 `json:"align"`
	// OutOfFrame marks a part the daemon would reject as out_of_frame
	// (its Score is then 1).
	OutOfFrame bool `json:"out_of_frame,omitempty"`
	// Verdict and Reason are the daemon's decision (OK pass, NG score,
	// NG region, ERROR out_of_frame).
	Verdict inspection.Verdict `json:"verdict"`
	Reason  string             `json:"reason"`
}

// CategoryReport holds one category's figures. Pointer fields are nil when
// the figure is undefined or does not apply (then Notes says why); in JSON
// they are absent.
type CategoryReport struct {
	// Name and Dir identify the category.
	Name string `json:"-"`
	Dir  string `json:"-"`
	// HasMasks is true when pixel metrics were computed.
	HasMasks bool `json:"-"`
	// Count and Anomalous are the numbers of test images and defect images.
	Count     int `json:"images"`
	Anomalous int `json:"anomalous"`

	ImageAUROC *float64 `json:"image_auroc,omitempty"`
	PixelAUROC *float64 `json:"pixel_auroc,omitempty"`
	PixelAP    *float64 `json:"pixel_ap,omitempty"`
	AUPRO      *float64 `json:"aupro,omitempty"`

	// Threshold is the image threshold used (BundleInfo.Threshold).
	Threshold float64 `json:"threshold"`
	// PixelThreshold is the pixel threshold used
	// (BundleInfo.PixelThreshold).
	PixelThreshold float64 `json:"pixel_threshold"`
	// AtThreshold is the operating point of the decision's verdicts.
	AtThreshold *OperatingPoint `json:"-"`
	// FalseRejects counts the good images the decision rejects, and FRR
	// is their fraction (absent without good images); GoodRejectedByRegion
	// counts those rejected by a defect region with a score at or under
	// the image threshold.
	FalseRejects         int      `json:"false_rejects"`
	FRR                  *float64 `json:"frr,omitempty"`
	GoodRejectedByRegion int      `json:"good_rejected_by_region"`
	// Escapes counts the defect images the decision passes, and
	// EscapeRate is their fraction (absent without defect images).
	Escapes    int      `json:"escapes"`
	EscapeRate *float64 `json:"escape_rate,omitempty"`
	// BestF1 is the F1-optimal operating point.
	BestF1 *OperatingPoint `json:"best_f1,omitempty"`
	// PerDefect maps defect types (and "good") to their statistics.
	PerDefect map[string]*DefectStats `json:"per_defect"`
	// Latency is the per-stage latency.
	Latency LatencyReport `json:"latency_ms"`
	// Notes explains absent figures and anything unusual.
	Notes []string `json:"notes,omitempty"`
	// MaxScore is the highest image score of the category.
	MaxScore float64 `json:"-"`
	// Images holds every image's result in evaluation order.
	Images []ImageResult `json:"-"`
	// Scores lists every test image's score and alignment, in evaluation
	// order: enough to place any other threshold (false-reject and escape
	// rates) or to compare alignments with a known truth.
	Scores []ImageScore `json:"image_scores"`

	// Overlay candidates and the heatmap size they were recorded at.
	worstGood, worstDefect worstList
	heatW, heatH           int
}

// categoryJSON adds the flattened operating point at the threshold.
type categoryJSON struct {
	*CategoryReport
	F1AtThreshold        *float64 `json:"f1_at_threshold,omitempty"`
	PrecisionAtThreshold *float64 `json:"precision_at_threshold,omitempty"`
	RecallAtThreshold    *float64 `json:"recall_at_threshold,omitempty"`
}

// WriteJSON writes the report as one indented JSON object:
//
//	{"categories": {"<name>": {"image_auroc", "pixel_auroc", "pixel_ap",
//	  "aupro", "f1_at_threshold", "precision_at_threshold",
//	  "recall_at_threshold", "threshold", "best_f1": {...},
//	  "per_defect": {...}, "latency_ms": {"align": {"min_ms", "median_ms",
//	  "p99_ms"}, "localize": {...}}, "images", "anomalous", "notes"}},
//	 "bundle": {...}}
//
// Figures that are undefined or do not apply (pixel metrics without masks)
// are absent, never null or 0, and "notes" says why.
func (r *Report) WriteJSON(w io.Writer) error {
	out := struct {
		Categories map[string]categoryJSON `json:"categories"`
		Bundle     BundleInfo              `json:"bundle"`
	}{Categories: map[string]categoryJSON{}, Bundle: r.Bundle}
	for _, c := range r.Categories {
		cj := categoryJSON{CategoryReport: c}
		if p := c.AtThreshold; p != nil {
			cj.F1AtThreshold, cj.PrecisionAtThreshold, cj.RecallAtThreshold = ptr(p.F1), ptr(p.Precision), ptr(p.Recall)
		}
		out.Categories[c.Name] = cj
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("evaluate: writing JSON report: %w", err)
	}
	return nil
}

// candidate is an overlay candidate: an image result and its heatmap,
// quantised to 16 bits (value·65535).
type candidate struct {
	res  ImageResult
	heat []uint16
}

// worstList keeps the n worst images seen so far, worst first: the
// highest-scoring ones when high is set (false positives among good
// images), else the lowest-scoring (false negatives among defect images).
// Ties keep the earlier image.
type worstList struct {
	n     int
	high  bool
	items []candidate
}

// worse reports whether score a is worse than score b.
func (l *worstList) worse(a, b float64) bool {
	if l.high {
		return a > b
	}
	return a < b
}

// offer considers an image; its heatmap is copied only when it is kept.
func (l *worstList) offer(res ImageResult, hm *preprocess.Heatmap) {
	if l.n <= 0 {
		return
	}
	if len(l.items) == l.n && !l.worse(res.Score, l.items[l.n-1].Score()) {
		return
	}
	var heat []uint16
	if len(l.items) == l.n {
		heat = l.items[l.n-1].heat // reuse the evicted buffer
		l.items = l.items[:l.n-1]
	}
	if len(heat) != len(hm.Values) {
		heat = make([]uint16, len(hm.Values))
	}
	for i, v := range hm.Values {
		heat[i] = uint16(math.Round(float64(min(max(v, 0), 1)) * 65535))
	}
	pos := sort.Search(len(l.items), func(i int) bool { return l.worse(res.Score, l.items[i].Score()) })
	l.items = append(l.items, candidate{})
	copy(l.items[pos+1:], l.items[pos:])
	l.items[pos] = candidate{res: res, heat: heat}
}

// Score returns the candidate's image score.
func (c candidate) Score() float64 { return c.res.Score }

// WorstGood returns the kept highest-scoring good images (worst false
// positives), worst first.
func (c *CategoryReport) WorstGood() []ImageResult { return c.worstGood.results() }

// WorstDefective returns the kept lowest-scoring defect images (worst false
// negatives), worst first.
func (c *CategoryReport) WorstDefective() []ImageResult { return c.worstDefect.results() }

// results lists the kept image results.
func (l *worstList) results() []ImageResult {
	out := make([]ImageResult, len(l.items))
	for i, c := range l.items {
		out[i] = c.res
	}
	return out
}

package evaluate

import (
	"bytes"
	"fmt"
	"html"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Overlay is one overlay image written by WriteHTML.
type Overlay struct {
	// File is the PNG's name inside the report directory.
	File string
	// Kind is "false positive" or "false negative".
	Kind string
	// Result is the image shown.
	Result ImageResult
}

// WriteHTML writes the report to dir (created if needed): dir/index.html,
// a self-contained page (inline CSS and SVG, no scripts, nothing fetched)
// with the metrics table, then per category a ROC curve, a PR curve, the
// per-defect table and the overlays; and the overlay PNGs it shows, one per
// kept worst false positive and worst false negative, named
// <category>_fp<k>_<defect>_<name>.png and <category>_fn<k>_... . Each
// overlay has four panels: original (resized) | aligned | heatmap | ground
// truth mask. Images are decoded again from their files.
func (r *Report) WriteHTML(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("evaluate: HTML report: %w", err)
	}
	overlays := make([][]Overlay, len(r.Categories))
	for ci, c := range r.Categories {
		ov, err := c.writeOverlays(dir)
		if err != nil {
			return err
		}
		overlays[ci] = ov
	}
	var b strings.Builder
	r.writePage(&b, overlays)
	p := filepath.Join(dir, "index.html")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("evaluate: writing %s: %w", p, err)
	}
	return nil
}

// writeOverlays renders and writes the category's overlay PNGs.
func (c *CategoryReport) writeOverlays(dir string) ([]Overlay, error) {
	if c.heatW <= 0 || c.heatH <= 0 {
		return nil, nil
	}
	hi := c.heatScale()
	var out []Overlay
	for _, set := range []struct {
		kind, tag string
		l         *worstList
	}{{"false positive", "fp", &c.worstGood}, {"false negative", "fn", &c.worstDefect}} {
		for k, cand := range set.l.items {
			s := cand.res.Sample
			name := fmt.Sprintf("%s_%s%d_%s_%s.png", fileSafe(c.Name), set.tag, k+1, fileSafe(s.Defect), fileSafe(s.Name))
			p := filepath.Join(dir, name)
			img, err := c.renderOverlay(cand, hi)
			if err != nil {
				return nil, fmt.Errorf("evaluate: overlay %s: %w", p, err)
			}
			var buf bytes.Buffer
			if err := png.Encode(&buf, img); err != nil {
				return nil, fmt.Errorf("evaluate: encoding %s: %w", p, err)
			}
			if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
				return nil, fmt.Errorf("evaluate: writing %s: %w", p, err)
			}
			out = append(out, Overlay{File: name, Kind: set.kind, Result: cand.res})
		}
	}
	return out, nil
}

// fileSafe replaces every character other than ASCII letters, digits, '-'
// and '.' by '_'.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}

// pageCSS is the page's inline style sheet.
const pageCSS = `body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #bbb;padding:.2em .5em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
.plots{display:flex;gap:1.5em;flex-wrap:wrap}
.note{color:#a40}
figure{display:inline-block;margin:.5em 1em .5em 0}
figure img{image-rendering:pixelated;max-width:100%;border:1px solid #888}
figcaption{font-size:.85em}`

// fmtOpt formats an optional figure, "–" when absent.
func fmtOpt(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.4f", *v)
}

// writePage writes index.html.
func (r *Report) writePage(b *strings.Builder, overlays [][]Overlay) {
	e := html.EscapeString
	fmt.Fprintf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>inspectd evaluation: %s</title>\n<style>%s</style></head><body>\n",
		e(r.Bundle.Product), pageCSS)
	fmt.Fprintf(b, "<h1>inspectd evaluation</h1>\n")
	bi := r.Bundle
	fmt.Fprintf(b, "<table class=\"bundle\"><tr><th>product</th><td>%s</td></tr><tr><th>model hash</th><td>%s</td></tr><tr><th>provider</th><td>%s</td></tr>"+
		"<tr><th>input</th><td>%d×%d</td></tr><tr><th>align</th><td>%s</td></tr><tr><th>threshold</th><td>%.4g (%s; calibrated %.4g)</td></tr>"+
		"<tr><th>pixel threshold</th><td>%.4g (%s; calibrated %.4g), min_defect_area %d px: the daemon's decision gives the verdicts</td></tr></table>\n",
		e(bi.Product), e(bi.ModelHash), e(bi.Provider), bi.InputWidth, bi.InputHeight, e(bi.AlignMethod), bi.Threshold, e(bi.ThresholdSource), bi.CalibratedThreshold,
		bi.PixelThreshold, e(bi.PixelThresholdSource), bi.CalibratedPixelThreshold, bi.MinDefectArea)

	b.WriteString("<h2>Metrics</h2>\n<table class=\"metrics\"><tr><th>category</th><th>images</th><th>defective</th><th>image AUROC</th><th>pixel AUROC</th><th>pixel AP</th><th>AUPRO (FPR≤0.3)</th>" +
		"<th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>best F1</th><th>at</th><th>align ms (median / p99)</th><th>localize ms (median / p99)</th></tr>\n")
	for _, c := range r.Categories {
		p, rc, f1 := "–", "–", "–"
		if a := c.AtThreshold; a != nil {
			p, rc, f1 = fmt.Sprintf("%.4f", a.Precision), fmt.Sprintf("%.4f", a.Recall), fmt.Sprintf("%.4f", a.F1)
		}
		bf, bt := "–", "–"
		if a := c.BestF1; a != nil {
			bf, bt = fmt.Sprintf("%.4f", a.F1), fmt.Sprintf("%.4g", a.Threshold)
		}
		fmt.Fprintf(b, "<tr><td><a href=\"#cat-%s\">%s</a></td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.4g</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.2f / %.2f</td><td>%.2f / %.2f</td></tr>\n",
			e(fileSafe(c.Name)), e(c.Name), c.Count, c.Anomalous, fmtOpt(c.ImageAUROC), fmtOpt(c.PixelAUROC), fmtOpt(c.PixelAP), fmtOpt(c.AUPRO),
			c.Threshold, p, rc, f1, bf, bt, c.Latency.Align.MedianMs, c.Latency.Align.P99Ms, c.Latency.Localize.MedianMs, c.Latency.Localize.P99Ms)
	}
	b.WriteString("</table>\n")

	for ci, c := range r.Categories {
		fmt.Fprintf(b, "<h2 id=\"cat-%s\">%s</h2>\n", e(fileSafe(c.Name)), e(c.Name))
		fmt.Fprintf(b, "<p>Verdicts: %d of %d good images rejected (%d by a region alone), %d of %d defective passed.</p>\n",
			c.FalseRejects, c.Count-c.Anomalous, c.GoodRejectedByRegion, c.Escapes, c.Anomalous)
		for _, n := range c.Notes {
			fmt.Fprintf(b, "<p class=\"note\">%s</p>\n", e(n))
		}
		roc, pr := curves(c.Images)
		var rocMark, prMark *[2]float64
		if a := c.AtThreshold; a != nil && a.FP+a.TN > 0 {
			rocMark = &[2]float64{float64(a.FP) / float64(a.FP+a.TN), a.Recall}
			prMark = &[2]float64{a.Recall, a.Precision}
			if a.TP+a.FP == 0 {
				prMark = nil
			}
		}
		b.WriteString("<div class=\"plots\">\n")
		b.WriteString(svgPlot("roc", "ROC curve (image level)", "false positive rate", "true positive rate", roc, true, rocMark))
		b.WriteString(svgPlot("pr", "Precision–recall curve (image level)", "recall", "precision", pr, false, prMark))
		b.WriteString("</div>\n")

		b.WriteString("<h3>Per defect type</h3>\n<table class=\"per-defect\"><tr><th>defect</th><th>images</th><th>mean score</th><th>detection rate</th><th>image AUROC vs good</th></tr>\n")
		names := make([]string, 0, len(c.PerDefect))
		for d := range c.PerDefect {
			names = append(names, d)
		}
		sort.Slice(names, func(i, j int) bool {
			if (names[i] == "good") != (names[j] == "good") {
				return names[i] == "good"
			}
			return names[i] < names[j]
		})
		for _, d := range names {
			s := c.PerDefect[d]
			fmt.Fprintf(b, "<tr><td>%s</td><td>%d</td><td>%.4f</td><td>%.3f</td><td>%s</td></tr>\n", e(d), s.Count, s.MeanScore, s.DetectionRate, fmtOpt(s.ImageAUROC))
		}
		b.WriteString("</table>\n<p>Detection rate: fraction scored at or above the threshold (for good images, the false-positive rate).</p>\n")

		if len(overlays[ci]) > 0 {
			fmt.Fprintf(b, "<h3>Worst images</h3>\n<p>Panels: original (resized) | aligned | heatmap (jet, 0 to %.3g) | ground-truth mask (aligned frame).</p>\n", c.heatScale())
			for _, o := range overlays[ci] {
				res := o.Result
				fmt.Fprintf(b, "<figure><img src=\"%s\" alt=\"%s\"><figcaption>%s: %s/%s, score %.4f (threshold %.4g), align θ %.2f°</figcaption></figure>\n",
					e(o.File), e(o.Kind), e(o.Kind), e(res.Sample.Defect), e(res.Sample.Name), res.Score, c.Threshold, res.Transform.Degrees())
			}
		}
	}
	b.WriteString("</body></html>\n")
}

// curves returns the image-level ROC points (FPR, TPR) and PR points
// (recall, precision) over descending distinct scores; tied scores make one
// point. The ROC curve starts at (0, 0) and needs both classes; the PR
// curve starts at (0, 1) and needs defect images. A curve that cannot be
// drawn is nil.
func curves(res []ImageResult) (roc, pr [][2]float64) {
	idx := make([]int, len(res))
	var P, N float64
	for i, r := range res {
		idx[i] = i
		if r.Sample.Anomalous() {
			P++
		} else {
			N++
		}
	}
	if P == 0 {
		return nil, nil
	}
	sort.SliceStable(idx, func(a, b int) bool { return res[idx[a]].Score > res[idx[b]].Score })
	if N > 0 {
		roc = append(roc, [2]float64{0, 0})
	}
	pr = append(pr, [2]float64{0, 1})
	var tp, fp float64
	for k, i := range idx {
		if res[i].Sample.Anomalous() {
			tp++
		} else {
			fp++
		}
		if k+1 < len(idx) && res[idx[k+1]].Score == res[i].Score {
			continue
		}
		if N > 0 {
			roc = append(roc, [2]float64{fp / N, tp / P})
		}
		pr = append(pr, [2]float64{tp / P, tp / (tp + fp)})
	}
	return roc, pr
}

// svgPlot draws points in the unit square as an inline SVG line plot, with
// an optional dashed diagonal and an optional marked operating point.
func svgPlot(class, title, xlabel, ylabel string, pts [][2]float64, diagonal bool, mark *[2]float64) string {
	const size, left, top, plot = 300, 50, 30, 220
	e := html.EscapeString
	X := func(v float64) float64 { return left + v*plot }
	Y := func(v float64) float64 { return top + (1-v)*plot }
	var b strings.Builder
	fmt.Fprintf(&b, "<svg class=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-size=\"11\">\n", class, size, size, size, size)
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"16\" font-weight=\"bold\">%s</text>\n", left, e(title))
	fmt.Fprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", left, top, plot, plot)
	for _, t := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/><line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
			X(t), top, X(t), top+plot, left, Y(t), left+plot, Y(t))
		fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
			X(t), top+plot+14, t, left-4, Y(t)+4, t)
	}
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", left+plot/2, top+plot+30, e(xlabel))
	fmt.Fprintf(&b, "<text x=\"14\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 14 %d)\">%s</text>\n", top+plot/2, top+plot/2, e(ylabel))
	if diagonal {
		fmt.Fprintf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n", X(0), Y(0), X(1), Y(1))
	}
	if len(pts) == 0 {
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#a40\">undefined: one class only</text>\n", left+plot/2, top+plot/2)
	} else {
		b.WriteString("<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\" points=\"")
		for i, p := range pts {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.2f,%.2f", X(p[0]), Y(p[1]))
		}
		b.WriteString("\"/>\n")
	}
	if mark != nil {
		fmt.Fprintf(&b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"#d33\"><title>operating point at the threshold</title></circle>\n", X(mark[0]), Y(mark[1]))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

package evaluate

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/metrics"
)

// AllDefects is the Defect of a comparison row over every image of a
// category.
const AllDefects = "all"

// Comparison sets two reports of the same data side by side: an old
// bundle (the one in service) and a new one (a candidate, e.g. retrained
// on reviewed parts), each at its own threshold.
type Comparison struct {
	// OldName and NewName label the two bundles (their directories).
	OldName, NewName string
	// Old and New are the two reports.
	Old, New *Report
	// Rows holds, per category, one row over all images (Defect
	// AllDefects) and one per defect type, by name.
	Rows []CompareRow
}

// CompareRow is one line of the comparison table.
type CompareRow struct {
	Category string `json:"category"`
	// Defect is a defect type, or AllDefects for the category's row.
	Defect string `json:"defect"`
	// Good and Defective count the images behind the row: the category's
	// good images and the row's defect images.
	Good      int         `json:"good"`
	Defective int         `json:"defective"`
	Old       CompareSide `json:"old"`
	New       CompareSide `json:"new"`
}

// CompareSide is one bundle's figures in a row, at the bundle's own
// thresholds: an image is rejected when the daemon's decision rejects it
// (its verdict: NG by score or by region, or ERROR).
type CompareSide struct {
	// ImageAUROC of the row's defect images against the good images;
	// absent when undefined (one class only).
	ImageAUROC *float64 `json:"image_auroc,omitempty"`
	// Threshold is the image threshold used.
	Threshold float64 `json:"threshold"`
	// FalseRejects counts good images rejected; FRR is FalseRejects/Good
	// (absent without good images). Both are the category's: the same on
	// every row of a category.
	FalseRejects int      `json:"false_rejects"`
	FRR          *float64 `json:"frr,omitempty"`
	// FalseRejectsByRegion counts the false rejects NG by a defect
	// region, their score at or under the image threshold.
	FalseRejectsByRegion int `json:"false_rejects_by_region"`
	// Escapes counts the row's defect images passed (verdict OK);
	// EscapeRate is Escapes/Defective.
	Escapes    int      `json:"escapes"`
	EscapeRate *float64 `json:"escape_rate,omitempty"`
}

// Compare builds the comparison of two reports of the same data: the same
// categories with the same test images in the same order (as two Runs
// over the same dataset give). Anything else is an error naming the
// first difference.
func Compare(oldName string, old *Report, newName string, cand *Report) (*Comparison, error) {
	if old == nil || cand == nil {
		return nil, errors.New("evaluate: compare: a report is missing")
	}
	if len(old.Categories) != len(cand.Categories) {
		return nil, fmt.Errorf("evaluate: compare: %d categories against %d, expected the same data", len(old.Categories), len(cand.Categories))
	}
	c := &Comparison{OldName: oldName, NewName: newName, Old: old, New: cand}
	for i, oc := range old.Categories {
		nc := cand.Categories[i]
		if oc.Name != nc.Name || len(oc.Images) != len(nc.Images) {
			return nil, fmt.Errorf("evaluate: compare: category %s (%d images) against %s (%d images), expected the same data", oc.Name, len(oc.Images), nc.Name, len(nc.Images))
		}
		for j := range oc.Images {
			if oc.Images[j].Sample.Path != nc.Images[j].Sample.Path {
				return nil, fmt.Errorf("evaluate: compare: category %s image %d is %s in one report and %s in the other, expected the same data",
					oc.Name, j, oc.Images[j].Sample.Path, nc.Images[j].Sample.Path)
			}
		}
		defects := map[string]bool{}
		for _, r := range oc.Images {
			if r.Sample.Anomalous() {
				defects[r.Sample.Defect] = true
			}
		}
		names := make([]string, 0, len(defects))
		for d := range defects {
			names = append(names, d)
		}
		sort.Strings(names)
		for _, d := range append([]string{AllDefects}, names...) {
			row := CompareRow{Category: oc.Name, Defect: d}
			var err error
			if row.Old, row.Good, row.Defective, err = side(oc, d); err != nil {
				return nil, fmt.Errorf("evaluate: compare: %s: %w", oc.Name, err)
			}
			if row.New, _, _, err = side(nc, d); err != nil {
				return nil, fmt.Errorf("evaluate: compare: %s: %w", nc.Name, err)
			}
			c.Rows = append(c.Rows, row)
		}
	}
	return c, nil
}

// side computes one bundle's figures for defect type d (or AllDefects) of
// category c at c.Threshold.
func side(c *CategoryReport, d string) (CompareSide, int, int, error) {
	s := CompareSide{Threshold: c.Threshold}
	var scores []float64
	var labels []bool
	good, defective := 0, 0
	for _, r := range c.Images {
		anomalous := r.Sample.Anomalous()
		rejected := r.Verdict.Rejects()
		switch {
		case !anomalous:
			good++
			if rejected {
				s.FalseRejects++
			}
			if r.Verdict == inspection.NG && r.Reason == inspection.ReasonRegion {
				s.FalseRejectsByRegion++
			}
		case d == AllDefects || r.Sample.Defect == d:
			defective++
			if !rejected {
				s.Escapes++
			}
		default:
			continue
		}
		scores = append(scores, r.Score)
		labels = append(labels, anomalous)
	}
	if good > 0 {
		s.FRR = ptr(float64(s.FalseRejects) / float64(good))
	}
	if defective > 0 {
		s.EscapeRate = ptr(float64(s.Escapes) / float64(defective))
	}
	v, err := metrics.AUROC(scores, labels)
	switch {
	case err == nil:
		s.ImageAUROC = ptr(v)
	case !errors.Is(err, metrics.ErrOneClass):
		return s, 0, 0, err
	}
	return s, good, defective, nil
}

// WriteText writes the comparison as a plain-text table, one line per row.
func (c *Comparison) WriteText(w io.Writer) error {
	f := func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%.3f", *p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "old: %s (threshold %.4g, pixel threshold %.4g)\nnew: %s (threshold %.4g, pixel threshold %.4g)\n",
		c.OldName, c.Old.Bundle.Threshold, c.Old.Bundle.PixelThreshold, c.NewName, c.New.Bundle.Threshold, c.New.Bundle.PixelThreshold)
	fmt.Fprintf(&b, "%-16s %-12s %5s %5s | %-14s %-14s | %-17s %-17s | %-17s %-17s\n", "category", "defect", "good", "def",
		"imgAUROC old", "new", "FRR old", "new", "escapes old", "new")
	for _, r := range c.Rows {
		frr := func(s CompareSide) string {
			if r.Defect != AllDefects {
				return ""
			}
			if s.FalseRejectsByRegion > 0 {
				return fmt.Sprintf("%s (%d, %d region)", f(s.FRR), s.FalseRejects, s.FalseRejectsByRegion)
			}
			return fmt.Sprintf("%s (%d)", f(s.FRR), s.FalseRejects)
		}
		esc := func(s CompareSide) string { return fmt.Sprintf("%s (%d)", f(s.EscapeRate), s.Escapes) }
		fmt.Fprintf(&b, "%-16s %-12s %5d %5d | %-14s %-14s | %-17s %-17s | %-17s %-17s\n", r.Category, r.Defect, r.Good, r.Defective,
			f(r.Old.ImageAUROC), f(r.New.ImageAUROC), frr(r.Old), frr(r.New), esc(r.Old), esc(r.New))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the comparison as one JSON object: {"categories":
// [rows], "old": {bundle}, "new": {bundle}, "old_dir", "new_dir"}.
func (c *Comparison) WriteJSON(w io.Writer) error {
	out := struct {
		Categories []CompareRow `json:"categories"`
		Old        BundleInfo   `json:"old"`
		New        BundleInfo   `json:"new"`
		OldDir     string       `json:"old_dir"`
		NewDir     string       `json:"new_dir"`
	}{c.Rows, c.Old.Bundle, c.New.Bundle, c.OldName, c.NewName}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("evaluate: writing the comparison JSON: %w", err)
	}
	return nil
}

// comparePage returns the comparison's index.html: both bundles, the
// table with better/worse marked, and per category both ROC curves on one
// plot; oldHref and newHref link each bundle's own report.
func (c *Comparison) comparePage(oldHref, newHref string) string {
	e := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>inspectd comparison</title>\n<style>%s%s</style></head><body>\n", pageCSS, compareCSS)
	b.WriteString("<h1>inspectd comparison: old against new bundle</h1>\n<table class=\"bundle\"><tr><th></th><th>bundle</th><th>product</th><th>model hash</th><th>threshold</th><th>report</th></tr>\n")
	for _, x := range []struct {
		tag, name, href string
		bi              BundleInfo
	}{{"old", c.OldName, oldHref, c.Old.Bundle}, {"new", c.NewName, newHref, c.New.Bundle}} {
		fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td><td>%s</td><td>%s</td><td>%.4g (%s)</td><td><a href=\"%s\">full report</a></td></tr>\n",
			x.tag, e(x.name), e(x.bi.Product), e(x.bi.ModelHash), x.bi.Threshold, e(x.bi.ThresholdSource), e(x.href))
	}
	b.WriteString("</table>\n<p>Each bundle at its own thresholds; an image is rejected when the daemon's decision rejects it (score above the image threshold, or a defect region above the pixel threshold). FRR: good images rejected (false rejects); escapes: defect images passed.</p>\n")
	b.WriteString("<table class=\"metrics compare\"><tr><th>category</th><th>defect</th><th>good</th><th>defective</th><th>image AUROC old</th><th>new</th><th>FRR old</th><th>new</th><th>escapes old</th><th>new</th></tr>\n")
	f := func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%.4f", *p)
	}
	// cls marks the new value better or worse than the old (higher is
	// better when up is set).
	cls := func(o, n *float64, up bool) string {
		if o == nil || n == nil || *o == *n {
			return ""
		}
		if (*n > *o) == up {
			return " class=\"better\""
		}
		return " class=\"worse\""
	}
	for _, r := range c.Rows {
		frrO, frrN, frrC := "", "", ""
		if r.Defect == AllDefects {
			frrO = fmt.Sprintf("%s (%d)", f(r.Old.FRR), r.Old.FalseRejects)
			frrN = fmt.Sprintf("%s (%d)", f(r.New.FRR), r.New.FalseRejects)
			frrC = cls(r.Old.FRR, r.New.FRR, false)
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%s</td><td%s>%s</td><td>%s</td><td%s>%s</td><td>%s (%d)</td><td%s>%s (%d)</td></tr>\n",
			e(r.Category), e(r.Defect), r.Good, r.Defective, f(r.Old.ImageAUROC), cls(r.Old.ImageAUROC, r.New.ImageAUROC, true), f(r.New.ImageAUROC),
			frrO, frrC, frrN, f(r.Old.EscapeRate), r.Old.Escapes, cls(r.Old.EscapeRate, r.New.EscapeRate, false), f(r.New.EscapeRate), r.New.Escapes)
	}
	b.WriteString("</table>\n")
	for i, oc := range c.Old.Categories {
		nc := c.New.Categories[i]
		fmt.Fprintf(&b, "<h2>%s</h2>\n<div class=\"plots\">\n", e(oc.Name))
		oroc, _ := curves(oc.Images)
		nroc, _ := curves(nc.Images)
		b.WriteString(svgPlot2("Image ROC: old (grey), new (blue)", "false positive rate", "true positive rate", oroc, nroc))
		b.WriteString("</div>\n")
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

// compareCSS marks better and worse figures.
const compareCSS = `
table.compare td.better, table.compare td.worse { font-weight: bold; }
table.compare td.better { color: #176b2c; }
table.compare td.worse { color: #b3261e; }
`

// svgPlot2 draws the old curve (grey, dashed) and the new one (blue) in the
// unit square, as svgPlot does one.
func svgPlot2(title, xlabel, ylabel string, old, cand [][2]float64) string {
	s := svgPlot("roc", title, xlabel, ylabel, cand, true, nil)
	if len(old) == 0 {
		return s
	}
	const left, top, plot = 50, 30, 220
	var b strings.Builder
	b.WriteString("<polyline fill=\"none\" stroke=\"#888\" stroke-width=\"2\" stroke-dasharray=\"5 3\" points=\"")
	for i, p := range old {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.2f,%.2f", left+p[0]*plot, top+(1-p[1])*plot)
	}
	b.WriteString("\"><title>old</title></polyline>\n</svg>\n")
	return strings.TrimSuffix(s, "</svg>\n") + b.String()
}

// WriteHTML writes the comparison into dir (which must exist):
// dir/index.html with both bundles, the table and the curves, and each
// bundle's own full report (WriteHTML) in dir/old and dir/new.
func (c *Comparison) WriteHTML(dir string) error {
	for _, x := range []struct {
		sub string
		r   *Report
	}{{"old", c.Old}, {"new", c.New}} {
		if err := x.r.WriteHTML(filepath.Join(dir, x.sub)); err != nil {
			return err
		}
	}
	p := filepath.Join(dir, "index.html")
	if err := os.WriteFile(p, []byte(c.comparePage("old/index.html", "new/index.html")), 0o644); err != nil {
		return fmt.Errorf("evaluate: writing %s: %w", p, err)
	}
	return nil
}

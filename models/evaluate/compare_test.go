package evaluate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/dataset"
)

// report builds a one-category report from (defect, score) pairs at thr.
func report(name string, thr float64, imgs ...any) *Report {
	c := &CategoryReport{Name: name, Dir: "/d/" + name, Threshold: thr}
	for i := 0; i < len(imgs); i += 2 {
		d := imgs[i].(string)
		r := ImageResult{Sample: dataset.Sample{Path: "/d/" + name + "/" + d + "/" + string(rune('a'+i/2)) + ".png", Defect: d, Name: string(rune('a' + i/2))},
			Score: imgs[i+1].(float64), Verdict: inspection.OK, Reason: inspection.ReasonPass}
		if r.Score > thr {
			r.Verdict, r.Reason = inspection.NG, inspection.ReasonScore
		}
		c.Images = append(c.Images, r)
	}
	return &Report{Bundle: BundleInfo{Product: name, Threshold: thr, CalibratedThreshold: thr, ThresholdSource: "calibration"}, Categories: []*CategoryReport{c}}
}

func TestCompare(t *testing.T) {
	// Old at 0.5: goods 0.6 and 0.55 rejected (FRR 2/4), scratch 0.4 escapes.
	// New at 0.7: goods all pass, scratch 0.4 and dent 0.65 escape.
	old := report("plate", 0.5, "good", 0.6, "good", 0.55, "good", 0.2, "good", 0.1, "scratch", 0.4, "scratch", 0.9, "dent", 0.65)
	cand := report("plate", 0.7, "good", 0.3, "good", 0.2, "good", 0.1, "good", 0.1, "scratch", 0.4, "scratch", 0.95, "dent", 0.65)
	c, err := Compare("old-bundle", old, "new-bundle", cand)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rows) != 3 || c.Rows[0].Defect != AllDefects || c.Rows[1].Defect != "dent" || c.Rows[2].Defect != "scratch" {
		t.Fatalf("rows %+v", c.Rows)
	}
	all := c.Rows[0]
	if all.Good != 4 || all.Defective != 3 || all.Old.FalseRejects != 2 || *all.Old.FRR != 0.5 || all.New.FalseRejects != 0 || *all.New.FRR != 0 ||
		all.Old.Escapes != 1 || all.New.Escapes != 2 || all.Old.Threshold != 0.5 || all.New.Threshold != 0.7 {
		t.Errorf("overall row %+v", all)
	}
	if d := c.Rows[1]; d.Defective != 1 || d.Old.Escapes != 0 || d.New.Escapes != 1 || d.Old.ImageAUROC == nil || *d.New.ImageAUROC != 1 {
		t.Errorf("dent row %+v", d)
	}
	var txt bytes.Buffer
	if err := c.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"old: old-bundle (threshold 0.5,", "new: new-bundle (threshold 0.7,", "0.500 (2)", "0.000 (0)", "0.667 (2)"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, txt.String())
		}
	}
	var js bytes.Buffer
	if err := c.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Categories []CompareRow `json:"categories"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Categories) != 3 || back.Categories[0].New.FalseRejects != 0 {
		t.Errorf("JSON %s (%v)", js.String(), err)
	}
	dir := t.TempDir()
	if err := c.WriteHTML(dir); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"old-bundle", "new-bundle", `href="old/index.html"`, `href="new/index.html"`, `<td class="better">0.0000 (0)</td>`, `<td class="worse">0.6667 (2)</td>`, "<svg"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	for _, sub := range []string{"old", "new"} {
		if _, err := os.Stat(filepath.Join(dir, sub, "index.html")); err != nil {
			t.Errorf("no %s report: %v", sub, err)
		}
	}
}

// TestCompareCountsVerdicts: a side counts the decision's verdicts, not
// the scores: a good image NG by region under the threshold is a false
// reject, a defect image ERROR (out of frame) is not an escape, one OK
// above the threshold (a stricter override elsewhere) is.
func TestCompareCountsVerdicts(t *testing.T) {
	old := report("plate", 0.5, "good", 0.3, "good", 0.2, "dent", 0.4, "dent", 0.9)
	cand := report("plate", 0.5, "good", 0.3, "good", 0.2, "dent", 0.4, "dent", 0.9)
	im := cand.Categories[0].Images
	im[0].Verdict, im[0].Reason = inspection.NG, inspection.ReasonRegion
	im[2].Verdict, im[2].Reason = inspection.Error, inspection.ReasonOutOfFrame
	im[3].Verdict, im[3].Reason = inspection.OK, inspection.ReasonPass
	c, err := Compare("old", old, "new", cand)
	if err != nil {
		t.Fatal(err)
	}
	all := c.Rows[0]
	if all.Old.FalseRejects != 0 || all.Old.Escapes != 1 || all.New.FalseRejects != 1 || *all.New.FRR != 0.5 || all.New.FalseRejectsByRegion != 1 || all.New.Escapes != 1 {
		t.Errorf("row %+v", all)
	}
	var txt bytes.Buffer
	if err := c.WriteText(&txt); err != nil || !strings.Contains(txt.String(), "0.500 (1, 1 region)") {
		t.Errorf("table (%v):\n%s", err, txt.String())
	}
}

func TestCompareRefusesDifferentData(t *testing.T) {
	base := report("plate", 0.5, "good", 0.1, "dent", 0.9)
	for _, tc := range []struct {
		name string
		b    *Report
		want string
	}{
		{"other category", report("gear", 0.5, "good", 0.1, "dent", 0.9), "category plate (2 images) against gear (2 images), expected the same data"},
		{"more images", report("plate", 0.5, "good", 0.1, "dent", 0.9, "dent", 0.8), "category plate (2 images) against plate (3 images)"},
		{"other image", report("plate", 0.5, "good", 0.1, "scratch", 0.9), "image 1 is /d/plate/dent/b.png in one report and /d/plate/scratch/b.png in the other"},
		{"two categories", &Report{Categories: append(report("plate", 0.5, "good", 0.1, "dent", 0.9).Categories, report("gear", 0.5).Categories...)}, "1 categories against 2"},
		{"missing", nil, "a report is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compare("a", base, "b", tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

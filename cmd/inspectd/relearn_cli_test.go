//go:build workstation

package main

import (
	"context"
	"encoding/json"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/netdef"
)

type discardEvents struct{}

func (discardEvents) ReportEvent(inspection.Event) {}

// TestDatasetFromArchiveCommand archives three results with io/archive,
// labels them as a reviewer would and builds the dataset with the command.
func TestDatasetFromArchiveCommand(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "archive")
	a, err := archive.New(archive.Options{Config: config.Archive{Save: archive.SaveAll, Dir: arch, MaxSizeMB: 16, JPEGQuality: 90}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Start(ctx, discardEvents{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	for i, v := range []inspection.Verdict{inspection.NG, inspection.NG, inspection.OK} {
		r := &inspection.Result{ID: "st-" + string(rune('1'+i)), Station: "st", Verdict: v, VerdictTime: t0.Add(time.Duration(i) * time.Second),
			Regions:  []inspection.Region{{X: 2, Y: 2, Width: 4, Height: 4, Area: 16}},
			Snapshot: &inspection.Snapshot{Frame: image.NewGray(image.Rect(0, 0, 16, 16)), ROI: image.Rect(0, 0, 16, 16)}}
		if err := a.Deliver(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	a.Close(ctx)
	line := func(id, label, typ string) string {
		b, _ := json.Marshal(map[string]string{"time": "2026-12-07T22:00:00Z", "user": "qe", "result_id": id, "label": label, "defect_type": typ})
		return string(b) + "\n"
	}
	if err := os.WriteFile(filepath.Join(arch, "labels.jsonl"), []byte(line("st-1", "good", "")+line("st-2", "defect", "scratch")+line("gone", "good", "")+`{"ti`), 0o640); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "relearn", "plate")
	code, stdout, stderr := runCLI(t, "dataset", "from-archive", "--archive", arch, "--out", out, "--ok-sample", "5", "--seed", "2")
	if code != 0 {
		t.Fatalf("from-archive: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"wrote " + out + " from 3 archived results and 3 label entries", "train/good: 1 labelled good, 1 unlabelled OK parts sampled", "test: scratch 1", "1 missing from the archive"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	for _, want := range []string{"line ignored: torn last line", "1 labelled results are not in the archive", "gone", "asked for 5 unlabelled OK parts, the archive holds 1"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("warnings lack %q:\n%s", want, stderr)
		}
	}
	c, err := dataset.OpenCategory(out)
	if err != nil || len(c.Train) != 2 || len(c.Test) != 1 || !c.HasMasks {
		t.Errorf("dataset %+v (%v)", c, err)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--archive", arch}, 2, "dataset from-archive: --archive and --out are required"},
		{[]string{"--archive", arch, "--out", filepath.Join(dir, "o2"), "--ok-sample", "-1"}, 2, "dataset from-archive: --ok-sample -1 is out of range"},
		{[]string{"--archive", arch, "--out", out}, 1, "exists and is not empty"},
		{[]string{"--archive", arch, "--out", filepath.Join(dir, "o3"), "--labels", filepath.Join(dir, "nope.jsonl")}, 1, "nope.jsonl: no such file"},
		{[]string{"--archive", filepath.Join(dir, "noarchive"), "--out", filepath.Join(dir, "o4"), "--labels", filepath.Join(arch, "labels.jsonl")}, 1, "noarchive: no such file"},
	} {
		code, _, stderr := runCLI(t, append([]string{"dataset", "from-archive"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestEvalCompareCommand scores two random-weight bundles on a tiny
// synthetic set with eval --compare.
func TestEvalCompareCommand(t *testing.T) {
	dir := t.TempDir()
	synth := filepath.Join(dir, "synth")
	if code, _, stderr := runCLI(t, "dataset", "synth", "--dst", synth, "--objects", "plate", "--size", "64",
		"--train", "2", "--test-good", "3", "--test-per-defect", "1", "--seed", "4"); code != 0 {
		t.Fatalf("dataset synth: exit %d: %s", code, stderr)
	}
	oldB, newB := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	for i, b := range []string{oldB, newB} {
		if _, err := netdef.WriteRandomBundle(b, netdef.RandomBundleOptions{Height: 64, Width: 64, D: 8, AlignSize: 32, Seed: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	report, jsonPath := filepath.Join(dir, "report"), filepath.Join(dir, "cmp.json")
	code, stdout, stderr := runCLI(t, "eval", "--compare", oldB, newB, "--data", synth, "--report", report, "--json", jsonPath, "--quiet")
	if code != 0 {
		t.Fatalf("eval --compare: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "old: "+oldB) || !strings.Contains(stdout, "new: "+newB) || !strings.Contains(stdout, "plate            all") {
		t.Errorf("table:\n%s", stdout)
	}
	var got struct {
		Categories []struct {
			Category, Defect string
			Good             int `json:"good"`
			Old, New         struct {
				ImageAUROC *float64 `json:"image_auroc"`
				Threshold  float64  `json:"threshold"`
				FRR        *float64 `json:"frr"`
			}
		} `json:"categories"`
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	// One overall row and one per painted defect kind.
	if len(got.Categories) < 2 || got.Categories[0].Defect != "all" || got.Categories[0].Good != 3 || got.Categories[0].Old.ImageAUROC == nil ||
		got.Categories[0].New.FRR == nil {
		t.Errorf("comparison JSON %s", data)
	}
	for _, f := range []string{"index.html", "old/index.html", "new/index.html"} {
		if _, err := os.Stat(filepath.Join(report, f)); err != nil {
			t.Errorf("report lacks %s: %v", f, err)
		}
	}
	// The same comparison again may replace its own JSON.
	if code, _, stderr := runCLI(t, "eval", "--compare", oldB, newB, "--data", synth, "--json", jsonPath, "--quiet"); code != 0 {
		t.Errorf("second comparison over its JSON: exit %d: %s", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--compare", oldB}, "--compare takes two bundles: --compare OLD NEW"},
		{[]string{"--compare", oldB, "--data", synth}, "--compare takes two bundles"},
		{[]string{"--compare=" + oldB, newB, "--data", synth}, "--compare takes two bundles"},
		{[]string{"--compare", oldB, newB, "--compare", oldB, newB, "--data", synth}, "--compare given twice"},
		{[]string{"--compare", oldB, newB}, "--compare needs --data"},
		{[]string{"--compare", oldB, newB, "--bundle", oldB, "--data", synth}, "--bundle and --compare exclude each other"},
		{[]string{"--compare", oldB, newB, "--data", synth, "--threshold", "0.5"}, "--threshold does not apply to --compare"},
		{[]string{"--compare", oldB, newB, "--data", synth, "--save-maps", filepath.Join(dir, "m")}, "--save-maps does not apply to --compare"},
		{[]string{"--compare", oldB, oldB, "--data", synth}, "the same bundle twice"},
		{[]string{"--compare", oldB, newB, "--data", synth, "--report", report}, "exists and is not empty"},
		{[]string{"--compare", oldB, newB, "--data", synth, "--json", filepath.Join(newB, "x.json")}, "--json " + filepath.Join(newB, "x.json") + " lies inside --compare"},
	} {
		code, _, stderr := runCLI(t, append([]string{"eval"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

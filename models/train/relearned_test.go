//go:build workstation

package train

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/relearn"
)

// TestRunRelearnedSplitsByVerdict: of a relearned category's good parts,
// the one the station passed is calibrated on like any good image and the
// one it rejected (a false reject a reviewer labelled good) is trained on
// only: one good score more than training on --good alone, not two.
func TestRunRelearnedSplitsByVerdict(t *testing.T) {
	good, _ := synthGood(t)
	entries, err := filepath.Glob(filepath.Join(good, "*.png"))
	if err != nil || len(entries) < 2 {
		t.Fatalf("synthetic good images: %v %v", entries, err)
	}
	category := t.TempDir()
	if err := os.MkdirAll(filepath.Join(category, "train", "good"), 0o755); err != nil {
		t.Fatal(err)
	}
	prov := relearn.Provenance{Tool: "inspectd dataset from-archive"}
	for i, verdict := range []string{"OK", "NG"} {
		data, err := os.ReadFile(entries[i])
		if err != nil {
			t.Fatal(err)
		}
		name := "part-" + verdict + ".png"
		if err := os.WriteFile(filepath.Join(category, "train", "good", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		prov.Images = append(prov.Images, relearn.ProvImage{File: "train/good/" + name, Source: "label", Verdict: verdict, Label: "good"})
	}
	js, err := json.Marshal(prov)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(category, relearn.ProvenanceName), js, 0o644); err != nil {
		t.Fatal(err)
	}
	train := func(relearned string) (bundle.Calibration, string) {
		t.Helper()
		r := tinyRecipe()
		r.Align.Method = bundle.AlignNone
		var progress strings.Builder
		out := filepath.Join(t.TempDir(), "bundle")
		if _, err := Run(context.Background(), Options{GoodDir: good, RelearnedDir: relearned, Backbone: backbonePath(t), Out: out,
			Recipe: r, Backend: testBackend(t), Progress: &progress}); err != nil {
			t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
		}
		b, err := bundle.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		return b.Manifest.Calibration, progress.String()
	}
	plain, _ := train("")
	relearned, progress := train(category)
	for _, want := range []string{"1 reviewed good parts the station had rejected", "1 good parts the station passed"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress does not say %q:\n%s", want, progress)
		}
	}
	if relearned.GoodScores.Count != plain.GoodScores.Count+1 {
		t.Errorf("calibrated on %d good scores with the relearned category, %d without; want exactly one more (the passed part, not the false reject)",
			relearned.GoodScores.Count, plain.GoodScores.Count)
	}
}

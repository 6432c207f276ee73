//go:build workstation

package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/synth"
)

// tinyRecipe trains in seconds on 64×64 images.
func tinyRecipe() *Recipe {
	r := DefaultRecipe()
	r.Product = "plate"
	r.HoldoutFraction = 0.25
	r.Input.Height, r.Input.Width = 64, 64
	r.Align.Size, r.Align.Steps, r.Align.Batch = 32, 30, 4
	r.ALM.D, r.ALM.Epochs, r.ALM.LocationsPerStep = 16, 1, 512
	r.DGM.PoolSize, r.DGM.RefreshEpochs = 4, 1
	return &r
}

func synthGood(t *testing.T) (goodDir, category string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "synth")
	if err := synth.Generate(context.Background(), root, synth.Options{Seed: 3, Objects: []string{"plate"}, Width: 64, Height: 64,
		TrainGood: 10, TestGood: 2, TestPerDefect: 1, MaxRotationDeg: 20, MaxShiftFrac: 0.05}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "plate", "train", "good"), filepath.Join(root, "plate")
}

func backbonePath(t *testing.T) string {
	t.Helper()
	p, err := backbone.Locate()
	if err != nil {
		t.Fatalf("%v (the shared ResNet-18 weights are needed)", err)
	}
	return p
}

func TestRunWritesVerifiedBundle(t *testing.T) {
	good, category := synthGood(t)
	out := filepath.Join(t.TempDir(), "bundle")
	var progress strings.Builder
	res, err := Run(context.Background(), Options{GoodDir: good, Backbone: backbonePath(t), Out: out,
		Recipe: tinyRecipe(), Defects: category, Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	b, err := bundle.Load(out)
	if err != nil {
		t.Fatalf("the written bundle does not load: %v", err)
	}
	m := b.Manifest
	if m.Align.Method != bundle.AlignIMM || m.Product != "plate" || m.Input.Width != 64 || m.Localize.D != 16 {
		t.Errorf("manifest = %+v", m)
	}
	if m.Calibration.GoodScores.Count != len(res.Holdout) || len(res.Holdout) != 3 {
		t.Errorf("holdout %v, calibration count %d", res.Holdout, m.Calibration.GoodScores.Count)
	}
	if m.Calibration.ImageThreshold < m.Calibration.GoodScores.Max {
		t.Errorf("image threshold %v below the held-out maximum %v", m.Calibration.ImageThreshold, m.Calibration.GoodScores.Max)
	}
	t.Logf("verify max diff %g, F1-optimal %+v, thresholds %+v", res.MaxVerify, res.F1Optimal, m.Calibration)
	if res.MaxVerify > VerifyTolerance {
		t.Errorf("verification difference %g", res.MaxVerify)
	}
	if res.F1Optimal == nil || m.Calibration.F1OptimalThreshold <= 0 {
		t.Errorf("--defects gave no F1-optimal threshold: %+v", res.F1Optimal)
	}
	if len(res.IMMLosses) == 0 || len(res.ALMLosses) == 0 {
		t.Errorf("no losses recorded")
	}
	for _, phase := range []string{"data", "align", "localise", "calibrate", "export"} {
		if !strings.Contains(progress.String(), phase) {
			t.Errorf("progress lacks phase %q:\n%s", phase, progress.String())
		}
	}
	// Nothing but the bundle is left beside it.
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("%d entries beside the bundle, want none", len(entries)-1)
	}

	// Deterministic: the same seed gives the same graphs.
	out2 := filepath.Join(t.TempDir(), "bundle")
	if _, err := Run(context.Background(), Options{GoodDir: good, Backbone: backbonePath(t), Out: out2, Recipe: tinyRecipe()}); err != nil {
		t.Fatal(err)
	}
	b2, err := bundle.Load(out2)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{bundle.AlignGraphName, bundle.LocalizeGraphName, bundle.TemplateName} {
		if b.Manifest.Files[f] != b2.Manifest.Files[f] {
			t.Errorf("%s differs between two runs with the same seed", f)
		}
	}
}

func TestRunCancelledLeavesNoBundle(t *testing.T) {
	good, _ := synthGood(t)
	out := filepath.Join(t.TempDir(), "bundle")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Options{GoodDir: good, Backbone: backbonePath(t), Out: out, Recipe: tinyRecipe()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Errorf("a cancelled run left %d entries", len(entries))
	}
}

func TestRunInputErrors(t *testing.T) {
	good, _ := synthGood(t)
	empty := t.TempDir()
	few := t.TempDir()
	for _, n := range []string{"000.png", "001.png"} {
		data, err := os.ReadFile(filepath.Join(good, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(few, n), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	badTemplate := tinyRecipe()
	badTemplate.Align.Template = "nope.png"
	roi := tinyRecipe()
	roi.Input.ROI = RecipeROI{X: 40, Y: 40, Width: 64, Height: 64}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no images", Options{GoodDir: empty, Recipe: tinyRecipe()}, "holds no PNG, JPEG or BMP images"},
		{"missing folder", Options{GoodDir: filepath.Join(empty, "x"), Recipe: tinyRecipe()}, "no such file or directory"},
		{"too few", Options{GoodDir: few, Recipe: tinyRecipe()}, "has 2 good images; need at least 3"},
		{"roi outside", Options{GoodDir: good, Recipe: roi}, "input.roi"},
		{"bad backbone", Options{GoodDir: good, Backbone: filepath.Join(empty, "w.pth"), Recipe: tinyRecipe()}, "backbone"},
		{"unknown template", Options{GoodDir: good, Backbone: backbonePath(t), Recipe: badTemplate}, `align.template "nope.png"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Out = filepath.Join(t.TempDir(), "b")
			_, err := Run(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if _, statErr := os.Stat(tc.opts.Out); statErr == nil {
				t.Error("a failed run left a bundle")
			}
		})
	}
}

//go:build workstation

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// TestDatasetAndEvalCommands runs `dataset synth`, `dataset rto` and `eval`
// end to end on tiny data with a random-weight bundle.
func TestDatasetAndEvalCommands(t *testing.T) {
	dir := t.TempDir()
	synth := filepath.Join(dir, "synth")
	code, _, stderr := runCLI(t, "dataset", "synth", "--dst", synth, "--objects", "plate", "--size", "64",
		"--train", "2", "--test-good", "3", "--test-per-defect", "1", "--seed", "4")
	if code != 0 {
		t.Fatalf("dataset synth: exit %d: %s", code, stderr)
	}
	rtoDir := filepath.Join(dir, "rto")
	if code, _, stderr := runCLI(t, "dataset", "rto", "--src", synth, "--dst", rtoDir, "--max-rotation", "20", "--seed", "2"); code != 0 {
		t.Fatalf("dataset rto: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(rtoDir, "plate", "test", "good", "000.rto.json")); err != nil {
		t.Errorf("rto wrote no transform record: %v", err)
	}

	bundleDir := filepath.Join(dir, "bundle")
	if _, err := netdef.WriteRandomBundle(bundleDir, netdef.RandomBundleOptions{Height: 64, Width: 64, D: 8, AlignSize: 32, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(dir, "eval.json")
	report := filepath.Join(dir, "report")
	code, stdout, stderr := runCLI(t, "eval", "--bundle", bundleDir, "--data", rtoDir, "--categories", "plate",
		"--json", jsonPath, "--report", report, "--save-maps", filepath.Join(dir, "maps"), "--quiet")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	if st, err := os.Stat(filepath.Join(dir, "maps", "plate_maps.npz")); err != nil || st.Size() == 0 {
		t.Errorf("--save-maps wrote no plate_maps.npz: %v", err)
	}
	if !strings.Contains(stdout, "plate") {
		t.Errorf("summary lacks the category: %q", stdout)
	}
	var got struct {
		Categories map[string]struct {
			ImageAUROC    *float64 `json:"image_auroc"`
			PixelAUROC    *float64 `json:"pixel_auroc"`
			F1AtThreshold *float64 `json:"f1_at_threshold"`
			Latency       struct {
				Localize struct {
					Median float64 `json:"median_ms"`
				} `json:"localize"`
			} `json:"latency_ms"`
		} `json:"categories"`
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	c, ok := got.Categories["plate"]
	if !ok || c.ImageAUROC == nil || c.PixelAUROC == nil || c.F1AtThreshold == nil || c.Latency.Localize.Median <= 0 {
		t.Errorf("eval JSON incomplete: %s", data)
	}
	if _, err := os.Stat(filepath.Join(report, "index.html")); err != nil {
		t.Errorf("no HTML report: %v", err)
	}
	// An existing eval report may be replaced by a new one.
	if code, _, stderr := runCLI(t, "eval", "--bundle", bundleDir, "--data", rtoDir, "--categories", "plate", "--json", jsonPath, "--quiet"); code != 0 {
		t.Errorf("eval over its own earlier report: exit %d: %s", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "--bundle", bundleDir, "--data", filepath.Join(dir, "nonexistent")}, "eval: --data: dataset: " + filepath.Join(dir, "nonexistent") + " does not exist"},
		{[]string{"dataset", "synth", "--dst", synth, "--objects", "plate", "--size", "64", "--train", "1", "--test-good", "1", "--test-per-defect", "0"}, "exists and is not empty"},
		{[]string{"dataset", "rto", "--src", synth, "--dst", rtoDir}, "exists and is not empty"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "--data", rtoDir}, "--bundle and --data are required"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--categories", "nope"}, `no category "nope"`},
		{[]string{"dataset", "frobnicate"}, `unknown subcommand "frobnicate"`},
		{[]string{"dataset", "rto", "--src", synth}, "--src and --dst are required"},
		// Hostile outputs: nothing an eval did not write is overwritten.
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--json", filepath.Join(bundleDir, "manifest.toml")}, "lies inside --bundle"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--json", filepath.Join(synth, "plate", "test", "good", "000.pose.json")}, "is not an eval report"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--report", synth}, "exists and is not empty"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--save-maps", synth}, "--save-maps: "},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--save-maps", filepath.Join(bundleDir, "maps")}, "--save-maps " + filepath.Join(bundleDir, "maps") + " lies inside --bundle"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--report", filepath.Join(dir, "out"), "--save-maps", filepath.Join(dir, "out", "maps")}, "must be separate directories"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--json", filepath.Join(dir, "out", "eval.json"), "--report", filepath.Join(dir, "out")}, "outputs must be separate"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--threads", "0"}, "--threads 0 is out of range"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--overlays", "-1"}, "--overlays -1"},
		{[]string{"eval", "--bundle", bundleDir, "--data", rtoDir, "--threshold", "NaN"}, "--threshold NaN"},
		// Flags are named by their flag names, not the library's fields.
		{[]string{"dataset", "synth", "--dst", filepath.Join(dir, "s2"), "--train", "0"}, "dataset synth: --train 0 is out of range; allowed 1 to"},
		{[]string{"dataset", "synth", "--dst", filepath.Join(dir, "s2"), "--objects", "plate,widget"}, `dataset synth: --objects "widget" is not one of gear, bracket, plate`},
		{[]string{"dataset", "synth", "--dst", filepath.Join(dir, "s2"), "--max-rotation", "200"}, "dataset synth: --max-rotation 200 is out of range; allowed 0 to 180 degrees"},
		{[]string{"dataset", "synth", "--dst", filepath.Join(dir, "s2"), "--test-per-defect", "-1"}, "--test-per-defect -1 is out of range"},
		{[]string{"dataset", "rto", "--src", synth, "--dst", filepath.Join(dir, "r2"), "--max-shift", "NaN"}, "dataset rto: --max-shift NaN is out of range; allowed 0 to 0.5"},
		{[]string{"dataset", "rto", "--src", synth, "--dst", filepath.Join(dir, "r2"), "--border", "wrap"}, `dataset rto: --border "wrap" is not one of replicate, constant`},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestTrainCommand trains a tiny bundle from a recipe file and evaluates it.
func TestTrainCommand(t *testing.T) {
	dir := t.TempDir()
	synthRoot := filepath.Join(dir, "synth")
	if code, _, stderr := runCLI(t, "dataset", "synth", "--dst", synthRoot, "--objects", "gear", "--size", "64",
		"--train", "10", "--test-good", "2", "--test-per-defect", "1", "--max-rotation", "15", "--seed", "5"); code != 0 {
		t.Fatalf("dataset synth: exit %d: %s", code, stderr)
	}
	recipe := filepath.Join(dir, "recipe.toml")
	if err := os.WriteFile(recipe, []byte(`recipe_version = 1
product = "gear"
holdout_fraction = 0.25
[input]
height = 64
width = 64
[align]
size = 32
steps = 20
batch = 4
[memory]
d = 16
entries = 8
radius = 1
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bundle")
	code, stdout, stderr := runCLI(t, "train", "--good", filepath.Join(synthRoot, "gear", "train", "good"), "--out", out,
		"--recipe", recipe, "--defects", filepath.Join(synthRoot, "gear"), "--quiet", "--tflite")
	if code != 0 {
		t.Fatalf("train: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if b, err := bundle.Load(out); err != nil || len(b.LocalizeTFLite) == 0 || (b.Manifest.Align.Method == bundle.AlignIMM && len(b.AlignTFLite) == 0) {
		t.Errorf("train --tflite: the bundle does not load with its TFLite twins (error %v)", err)
	} else {
		checkTrainedTwins(t, out)
	}
	for _, want := range []string{"wrote " + out, "localise memory of 16-value entries, 8 per location", "alignment: 20 steps", "thresholds: image", "F1-optimal threshold", "verified"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("train output lacks %q:\n%s", want, stdout)
		}
	}
	if code, _, stderr := runCLI(t, "eval", "--bundle", out, "--data", synthRoot, "--quiet"); code != 0 {
		t.Errorf("eval of the trained bundle: exit %d: %s", code, stderr)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("recipe_version = 1\n[alm]\nd = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badBefore, _ := os.ReadFile(bad)
	defer func() {
		if after, _ := os.ReadFile(bad); string(after) != string(badBefore) {
			t.Error("train replaced a recipe file given as --out")
		}
		if _, err := os.Stat(filepath.Join(synthRoot, "gear", "train", "good")); err != nil {
			t.Error("train deleted the category given as --out")
		}
	}()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", "--good", synthRoot}, 2, "--good and --out are required"},
		{[]string{"train", "--good", synthRoot, "--out", out, "--recipe", bad}, 1, "bad.toml:3: alm.d: 3 is out of range"},
		{[]string{"train", "--help"}, 0, ""},
		// Data loss: --out must be a bundle, a new or an empty directory.
		{[]string{"train", "--good", filepath.Join(synthRoot, "gear", "train", "good"), "--out", filepath.Join(synthRoot, "gear")}, 1, "non-empty directory without manifest.toml"},
		{[]string{"train", "--good", filepath.Join(synthRoot, "gear", "train", "good"), "--out", bad}, 1, "is a file"},
		{[]string{"train", "--good", filepath.Join(synthRoot, "gear", "train", "good"), "--out", filepath.Join(dir, "b2"), "--backbone", bad}, 1,
			"bad.toml is neither a directory of .npy files nor a torchvision resnet18 .pth"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

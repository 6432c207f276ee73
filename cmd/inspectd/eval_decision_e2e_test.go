//go:build workstation

package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// evalJSON is the part of `inspectd eval --json` this test reads.
type evalJSON struct {
	Categories map[string]struct {
		FalseRejects         int `json:"false_rejects"`
		GoodRejectedByRegion int `json:"good_rejected_by_region"`
		Escapes              int `json:"escapes"`
		Scores               []struct {
			Path    string             `json:"path"`
			Defect  string             `json:"defect"`
			Score   float64            `json:"score"`
			Verdict inspection.Verdict `json:"verdict"`
			Reason  string             `json:"reason"`
		} `json:"image_scores"`
	} `json:"categories"`
}

func runEvalJSON(t *testing.T, bin string, args ...string) evalJSON {
	t.Helper()
	path := filepath.Join(t.TempDir(), "eval.json")
	if out, err := exec.Command(bin, append([]string{"eval", "--json", path, "--quiet"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("inspectd eval %v: %v\n%s", args, err, out)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e evalJSON
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("eval JSON: %v\n%s", err, out)
	}
	return e
}

// TestEvalDecidesAsTheDaemon: `inspectd eval --config station.toml` and
// `inspectd run` with that config, on the same images, give every image
// the same verdict and reason, and eval's false rejects and escapes count
// those verdicts. The pixel threshold is set to the median good score and
// the image threshold above every score, so that half the good parts and
// the painted defects are NG by region alone: the case where eval and the
// daemon used to disagree.
func TestEvalDecidesAsTheDaemon(t *testing.T) {
	env := setupE2E(t)
	dir, replay, goods := goodReplay(t, env, 6)
	data := filepath.Join(dir, "data")
	for _, sub := range []string{"train/good", "test/good", "test/paint"} {
		if err := os.MkdirAll(filepath.Join(data, "plate", sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, goods[0], filepath.Join(data, "plate", "train", "good", "000.png")) // the layout wants one
	type part struct{ rel, replayed string }
	var parts []part
	for i, g := range goods {
		img := loadPNG(t, g)
		good := filepath.Join("good", fmt.Sprintf("%03d.png", i))
		writePNG(t, filepath.Join(data, "plate", "test", good), img)
		parts = append(parts, part{good, fmt.Sprintf("%02d_good.png", 2*i)})
		b := img.Bounds()
		def := image.Rect(b.Dx()/3+i, b.Dy()/3, b.Dx()/3+i+12, b.Dy()/3+8)
		bad := image.NewRGBA(b)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := img.At(x, y)
				if (image.Point{x, y}).In(def) {
					c = color.RGBA{R: 10, G: 200, B: 240, A: 255}
				}
				bad.Set(x, y, c)
			}
		}
		painted := filepath.Join("paint", fmt.Sprintf("%03d.png", i))
		writePNG(t, filepath.Join(data, "plate", "test", painted), bad)
		parts = append(parts, part{painted, fmt.Sprintf("%02d_defect.png", 2*i+1)})
	}
	for _, p := range parts {
		copyFile(t, filepath.Join(data, "plate", "test", p.rel), filepath.Join(replay, p.replayed))
	}

	// The bundle's own thresholds first, to place the test's.
	first := runEvalJSON(t, env.bin, "--bundle", env.bundle, "--data", data)
	var goodScores []float64
	for _, s := range first.Categories["plate"].Scores {
		if s.Defect == "good" {
			goodScores = append(goodScores, s.Score)
		}
	}
	sort.Float64s(goodScores)
	pixel := (goodScores[2] + goodScores[3]) / 2

	archive := filepath.Join(dir, "archive")
	cfg := writeRunConfig(t, dir, env.bundle, fmt.Sprintf(`[camera]
source = "images"
path = %q
[trigger]
mode = "free_run"
[archive]
save = "all"
dir = %q
[decision]
threshold = 0.999
pixel_threshold = %.6f
`, replay, archive, pixel))
	ev := runEvalJSON(t, env.bin, "--bundle", env.bundle, "--data", data, "--config", cfg)
	p := startDaemon(t, env.bin, "-c", cfg, "--max-parts", fmt.Sprint(len(parts)))
	if err := p.wait(60 * time.Second); err != nil {
		t.Fatalf("inspectd run: %v\nstderr:\n%s", err, p.stderr.String())
	}
	res := archivedResults(t, archive)
	if len(res) != len(parts) {
		t.Fatalf("%d archived results for %d parts", len(res), len(parts))
	}
	daemon := map[string]inspection.Result{} // by the image's path in the category, as eval names it
	for _, r := range res {
		daemon[filepath.Join("test", parts[r.FrameSeq-1].rel)] = r
	}
	cat := ev.Categories["plate"]
	if len(cat.Scores) != len(parts) {
		t.Fatalf("eval scored %d images, want %d", len(cat.Scores), len(parts))
	}
	falseRejects, byRegion, escapes := 0, 0, 0
	for _, s := range cat.Scores {
		d, ok := daemon[s.Path]
		if !ok {
			t.Fatalf("no daemon result for %s", s.Path)
		}
		if s.Verdict != d.Verdict || s.Reason != d.Reason {
			t.Errorf("%s: eval %s %s (score %.4f), daemon %s %s (score %.4f)", s.Path, s.Verdict, s.Reason, s.Score, d.Verdict, d.Reason, d.Score)
		}
		switch {
		case s.Defect == "good" && d.Verdict.Rejects():
			falseRejects++
			if d.Reason == inspection.ReasonRegion {
				byRegion++
			}
		case s.Defect != "good" && !d.Verdict.Rejects():
			escapes++
		}
	}
	t.Logf("pixel threshold %.4f: the daemon rejects %d of %d good parts (%d by region) and passes %d of %d painted ones; eval says %d (%d), %d",
		pixel, falseRejects, len(goods), byRegion, escapes, len(goods), cat.FalseRejects, cat.GoodRejectedByRegion, cat.Escapes)
	if cat.FalseRejects != falseRejects || cat.GoodRejectedByRegion != byRegion || cat.Escapes != escapes {
		t.Errorf("eval counts %d false rejects (%d by region), %d escapes; the daemon's verdicts %d (%d), %d",
			cat.FalseRejects, cat.GoodRejectedByRegion, cat.Escapes, falseRejects, byRegion, escapes)
	}
	if byRegion == 0 || falseRejects == len(goods) {
		t.Errorf("the test does not separate the rules: %d of %d good parts rejected, %d by region", falseRejects, len(goods), byRegion)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEvalDecisionFlags: the decision flags' refusals.
func TestEvalDecisionFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bundle", dir, "--data", dir, "--pixel-threshold", "1.5"}, "--pixel-threshold 1.5: want a value in (0, 1]"},
		{[]string{"--bundle", dir, "--data", dir, "--min-defect-area", "-1"}, "--min-defect-area -1: want 0 or more pixels"},
		{[]string{"--bundle", dir, "--data", dir, "--product", "gear"}, "--product needs --config"},
		{[]string{"--bundle", dir, "--data", dir, "--config", filepath.Join(dir, "none.toml")}, "eval: --config: read config:"},
		{[]string{"--compare", dir, dir + "2", "--data", dir, "--pixel-threshold", "0.5"}, "--pixel-threshold does not apply to --compare"},
	} {
		code, _, stderr := runCLI(t, append([]string{"eval"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

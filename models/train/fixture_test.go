//go:build workstation

package train

import (
	"context"
	"errors"
	"image"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
)

// synthPosed writes a synthetic plate set whose good parts lie within
// ±maxDeg and ±maxShift of the canonical pose and returns its category
// directory.
func synthPosed(t *testing.T, maxDeg, maxShift float64) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "synth")
	if err := synth.Generate(context.Background(), root, synth.Options{Seed: 5, Objects: []string{"plate"}, Width: 96, Height: 96,
		TrainGood: 16, TestGood: 2, TestPerDefect: 1, MaxRotationDeg: maxDeg, MaxShiftFrac: maxShift}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "plate")
}

// spreadOf measures the pose spread of a folder's good images as training
// does: every image at the align input, against the medoid.
func spreadOf(t *testing.T, dir string, r *Recipe) PoseSpread {
	t.Helper()
	goods, err := loadGoodImages(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trainer{r: r, trainSet: goods, man: bundle.Manifest{Input: bundle.Input{Width: r.Input.Width, Height: r.Input.Height}}}
	spec := tr.alignSpec()
	inputs := make([][]float32, len(goods))
	for i, g := range goods {
		inputs[i] = make([]float32, spec.Len())
		if err := preprocess.Fill(inputs[i], g.img, spec); err != nil {
			t.Fatal(err)
		}
	}
	_, source, err := chooseTemplate(r, goods, inputs)
	if err != nil {
		t.Fatal(err)
	}
	tpl := inputs[slices.IndexFunc(goods, func(g goodImage) bool { return g.name == source })]
	return tr.measureSpread(inputs, tpl, source)
}

// TestPoseSpreadTellsFixturedFromMoved: the classical alignment measures
// parts drawn at one pose as fixtured (within a memory cell) and parts
// drawn within ±25° and ±8 % as moving; its rotations reach the drawn
// range.
func TestPoseSpreadTellsFixturedFromMoved(t *testing.T) {
	r := tinyRecipe()
	fixed := spreadOf(t, filepath.Join(synthPosed(t, 0, 0), "train", "good"), r)
	moved := spreadOf(t, filepath.Join(synthPosed(t, 25, 0.08), "train", "good"), r)
	t.Logf("fixtured: %s", fixed)
	t.Logf("moved:    %s", moved)
	if !fixed.Measurable() || !fixed.Fixtured() || skipReason(fixed) == "" || fixed.Images != 15 {
		t.Errorf("parts at one pose: fixtured %v, measurable %v, %d images, reason %q", fixed.Fixtured(), fixed.Measurable(), fixed.Images, skipReason(fixed))
	}
	if !moved.Measurable() || moved.Fixtured() || skipReason(moved) != "" {
		t.Errorf("moved parts: fixtured %v, measurable %v, reason %q", moved.Fixtured(), moved.Measurable(), skipReason(moved))
	}
	if moved.QuantileRotationDeg < 15 || moved.QuantilePx < 2*moved.CellPx {
		t.Errorf("moved parts measured at %.1f° / %.1f px (90th percentile); drawn within ±25° of a turned template", moved.QuantileRotationDeg, moved.QuantilePx)
	}
}

// TestPoseSpreadFindsNoPoseInNoise: images that match the template at no
// pose (independent noise, as one texture tile against another) leave the
// spread unmeasurable, and "auto" trains no module for them, saying so.
func TestPoseSpreadFindsNoPoseInNoise(t *testing.T) {
	const size, n = 32, 12
	rng := rand.New(rand.NewPCG(7, 7))
	inputs := make([][]float32, n)
	crops := make([]image.Point, n)
	for i := range inputs {
		inputs[i] = make([]float32, size*size)
		for k := range inputs[i] {
			inputs[i][k] = rng.Float32()
		}
		crops[i] = image.Pt(200, 200)
	}
	s := measurePoseSpread(inputs, crops, inputs[0], 0, 1, size, 64, 64, 8)
	why := skipReason(s)
	if s.Images != n-1 || s.Measurable() || !strings.Contains(why, "good images match the template at any pose tried") {
		t.Errorf("noise: %s; measurable %v, reason %q", s, s.Measurable(), why)
	}
}

// TestRunAutoSkipsIMMOnFixturedParts: with align.method = "auto" a set of
// fixtured parts trains no image matching module; the bundle aligns
// nothing and the progress, result and manifest say why, with the measured
// spread, and warn that moved parts will be rejected.
func TestRunAutoSkipsIMMOnFixturedParts(t *testing.T) {
	category := synthPosed(t, 0, 0)
	out := filepath.Join(t.TempDir(), "bundle")
	r := tinyRecipe()
	r.Align.Method = "auto"
	var progress strings.Builder
	res, err := Run(context.Background(), Options{GoodDir: filepath.Join(category, "train", "good"), Backbone: backbonePath(t), Out: out,
		Recipe: r, Backend: testBackend(t), Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	b, err := bundle.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	if m.Align.Method != bundle.AlignNone || res.IMMSteps != 0 || len(res.IMMLosses) != 0 {
		t.Errorf("align %q after %d IMM steps, want none and no training", m.Align.Method, res.IMMSteps)
	}
	if _, err := os.Stat(filepath.Join(out, bundle.AlignGraphName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s in the bundle: %v", bundle.AlignGraphName, err)
	}
	if res.PoseSpread == nil || !res.PoseSpread.Fixtured() {
		t.Fatalf("pose spread %+v, want fixtured", res.PoseSpread)
	}
	for what, s := range map[string]string{"progress": progress.String(), "result": res.AlignSkipped, "notes": m.Training.Notes} {
		for _, want := range []string{"the parts are fixtured", "no image matching module is trained"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s lacks %q:\n%s", what, want, s)
			}
		}
	}
	for what, s := range map[string]string{"progress": progress.String(), "notes": m.Training.Notes} {
		if !strings.Contains(s, "pose spread of 11 good images against the template") {
			t.Errorf("%s lacks the measured spread:\n%s", what, s)
		}
	}
	for what, s := range map[string]string{"progress": progress.String(), "result": res.AlignWarning, "notes": m.Training.Notes} {
		if !strings.Contains(s, "a bundle trained on fixtured parts rejects moved ones") {
			t.Errorf("%s lacks the coverage warning:\n%s", what, s)
		}
	}
	if res.MaxVerify > VerifyTolerance {
		t.Errorf("verification difference %g", res.MaxVerify)
	}
}

// TestRunAutoTrainsIMMOnMovedParts: with align.method = "auto" a set of
// moved parts trains the image matching module and, once it aligns
// clearly better than none, keeps it; a module that had no steps to learn
// in is dropped under "auto", saying why, and kept under "imm".
func TestRunAutoTrainsIMMOnMovedParts(t *testing.T) {
	category := synthPosed(t, 25, 0.08)
	good := filepath.Join(category, "train", "good")
	for _, tc := range []struct {
		name   string
		method string
		steps  int
		kept   bool
	}{
		{"auto, nothing learned", "auto", 1, false},
		{"imm keeps it", "imm", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "bundle")
			r := tinyRecipe()
			r.Align.Method, r.Align.Steps, r.Align.Batch, r.Align.LearningRate = tc.method, tc.steps, 8, 2e-3
			var progress strings.Builder
			res, err := Run(context.Background(), Options{GoodDir: good, Backbone: backbonePath(t), Out: out,
				Recipe: r, Backend: testBackend(t), Progress: &progress})
			if err != nil {
				t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
			}
			m := res.Manifest
			t.Logf("%s; IMM %d steps, pose error %.2f px (%.2f untrained)", res.PoseSpread, res.IMMSteps, res.IMMPoseError, res.IMMPoseErrorUntrained)
			if res.PoseSpread == nil || res.PoseSpread.Fixtured() || res.AlignSkipped != "" && tc.kept {
				t.Fatalf("spread %+v, skipped %q", res.PoseSpread, res.AlignSkipped)
			}
			if res.IMMSteps == 0 || !strings.Contains(progress.String(), "training the image matching module") {
				t.Errorf("the IMM was not trained (%d steps)", res.IMMSteps)
			}
			if kept := m.Align.Method == bundle.AlignIMM; kept != tc.kept {
				t.Fatalf("align %q, want kept %v:\n%s", m.Align.Method, tc.kept, progress.String())
			}
			if tc.kept {
				if tc.method == "auto" && !(res.IMMPoseError < KeepIMMRatio*res.IMMPoseErrorUntrained) {
					t.Errorf("kept a module of pose error %.2f px against %.2f untrained", res.IMMPoseError, res.IMMPoseErrorUntrained)
				}
				return
			}
			for what, s := range map[string]string{"progress": progress.String(), "result": res.AlignSkipped, "fallback": res.AlignFallback, "notes": m.Training.Notes} {
				if !strings.Contains(s, "not clearly better than none") {
					t.Errorf("%s does not say why the IMM was dropped:\n%s", what, s)
				}
			}
		})
	}
}

// TestIMMNotBetter: the keep rule of a trained module, at the figures the
// real sets logged.
func TestIMMNotBetter(t *testing.T) {
	for _, tc := range []struct {
		poseError, untrained float64
		dropped              bool
	}{
		{25.21, 26.22, true}, // bottle, fixtured
		{26.30, 26.22, true}, // the tall fixtured part
		{13.11, 26.22, true}, // exactly half: not clearly better
		{13.10, 26.22, false},
		{3.5, 26.22, false},
	} {
		why := immNotBetter(tc.poseError, tc.untrained)
		if (why != "") != tc.dropped {
			t.Errorf("pose error %.2f / %.2f untrained: dropped %v, want %v", tc.poseError, tc.untrained, why != "", tc.dropped)
		}
		if tc.dropped && !strings.Contains(why, "kept only below 0.5×") {
			t.Errorf("reason %q does not state the rule", why)
		}
	}
}

// TestCoverageWarning: what the good images' poses leave untested of the
// configured range, for a bundle with and without alignment.
func TestCoverageWarning(t *testing.T) {
	al := DefaultRecipe().Align // ±30°, ±0.1
	fixtured := PoseSpread{Images: 20, Measured: 20, CellPx: 8, QuantilePx: 2, QuantileRotationDeg: 0.4, QuantileShiftFrac: 0.004}
	moved := PoseSpread{Images: 20, Measured: 20, CellPx: 8, QuantilePx: 60, QuantileRotationDeg: 27, QuantileShiftFrac: 0.09}
	beyond := PoseSpread{Images: 20, Measured: 20, CellPx: 8, QuantilePx: 90, QuantileRotationDeg: 44, QuantileShiftFrac: 0.09}
	texture := PoseSpread{Images: 20, Measured: 3, CellPx: 8}
	for _, tc := range []struct {
		name    string
		s       PoseSpread
		aligned bool
		want    []string // empty: no warning
	}{
		{"fixtured, no alignment", fixtured, false, []string{"turns up to 0.4° of the ±30° of align.max_rotation_deg",
			"shifts up to 0.004 of the ±0.1 of align.max_shift_frac", "a bundle trained on fixtured parts rejects moved ones",
			"add good parts at the poses it produces", `align.method = "imm"`}},
		{"fixtured, aligned", fixtured, true, []string{"learned the rest of the range from turned copies only", "add good parts at those poses"}},
		{"moved, covered", moved, true, nil},
		{"beyond the range", beyond, true, []string{"turns up to 44.0°, beyond align.max_rotation_deg = 30"}},
		{"no pose measured", texture, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := coverageWarning(tc.s, al, tc.aligned)
			if len(tc.want) == 0 {
				if got != "" {
					t.Errorf("warning %q, want none", got)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("warning %q lacks %q", got, w)
				}
			}
		})
	}
}

// TestRecipeAlignMethod: "auto" is the default; "auto", "imm" and "none"
// are accepted, in code and in a file; anything else is refused naming the
// key and the choices.
func TestRecipeAlignMethod(t *testing.T) {
	if m := DefaultRecipe().Align.Method; m != "auto" {
		t.Errorf("default align.method %q, want auto", m)
	}
	const refused = `is not allowed; use one of "auto", "imm", "none"`
	for _, tc := range []struct {
		method string
		want   string // "" = valid
	}{
		{"auto", ""}, {"imm", ""}, {"none", ""},
		{"AUTO", `align.method: "AUTO" ` + refused},
		{"ecc", `align.method: "ecc" ` + refused},
		{"", `align.method: "" ` + refused},
	} {
		r := DefaultRecipe()
		r.Align.Method = tc.method
		err := r.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("method %q: %v", tc.method, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrInvalid) {
			t.Errorf("method %q: Validate() = %v, want %q", tc.method, err, tc.want)
		}
		file, err := ParseRecipe("r.toml", []byte("recipe_version = 1\n[align]\nmethod = \""+tc.method+"\"\n"))
		if tc.want == "" {
			if err != nil || file.Align.Method != tc.method {
				t.Errorf("file with method %q: %v", tc.method, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), "r.toml:3: "+tc.want) {
			t.Errorf("file with method %q: %v, want %q at line 3", tc.method, err, tc.want)
		}
	}
}

//go:build workstation

package alm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/preprocess"
)

// mvtecDir finds the MVTec AD root: $INSPECTD_MVTEC, else
// ../shared/datasets/mvtec above the working directory.
func mvtecDir(t *testing.T) string {
	if d := os.Getenv("INSPECTD_MVTEC"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "..", "shared", "datasets", "mvtec")
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c
		}
		if filepath.Dir(d) == d {
			t.Skip("no MVTec AD directory; set $INSPECTD_MVTEC")
		}
	}
}

// loadDir loads every PNG of dir, sorted, resized to s×s CHW tensors.
func loadDir(t *testing.T, dir string, s int) [][]float32 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(strings.ToLower(e.Name()), ".png") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	var out [][]float32
	for _, n := range names {
		img, err := decodeFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 3*s*s)
		if err := preprocess.Fill(x, img, preprocess.Spec{Width: s, Height: s, Channels: 3}); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

// TestMVTecLong trains on an MVTec AD category (default bottle) at 256×256
// and reports the image AUROC of Model.Score on its test set. Run with
//
//	INSPECTD_LONG=1 go test -tags workstation -run MVTecLong -v -timeout 30m ./models/train/alm/
//
// Optional: INSPECTD_ALM_CATEGORY, INSPECTD_ALM_EPOCHS, INSPECTD_ALM_REDUCTION,
// INSPECTD_ALM_DGM=0, INSPECTD_ALM_LOCATIONS, INSPECTD_ALM_MIN_AUROC (default 0.99).
func TestMVTecLong(t *testing.T) {
	if os.Getenv("INSPECTD_LONG") != "1" {
		t.Skip("set INSPECTD_LONG=1 to run")
	}
	const size = 256
	cat := cmp(os.Getenv("INSPECTD_ALM_CATEGORY"), "bottle")
	root := filepath.Join(mvtecDir(t), cat)
	cfg := DefaultConfig()
	cfg.Epochs = envInt(t, "INSPECTD_ALM_EPOCHS", 3)
	cfg.LocationsPerStep = envInt(t, "INSPECTD_ALM_LOCATIONS", cfg.LocationsPerStep)
	cfg.Reduction = cmp(os.Getenv("INSPECTD_ALM_REDUCTION"), cfg.Reduction)
	cfg.DGM.Enabled = os.Getenv("INSPECTD_ALM_DGM") != "0"
	minAUROC, err := strconv.ParseFloat(cmp(os.Getenv("INSPECTD_ALM_MIN_AUROC"), "0.99"), 64)
	if err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	train := loadDir(t, filepath.Join(root, "train", "good"), size)
	fe := testFeatures(t, infertest.Backbone(t), size, size)
	m, err := Train(context.Background(), cfg, train, size, size, fe, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	trainTime := time.Since(t0)

	t1 := time.Now()
	var scores []float64
	var labels []bool
	defects, err := os.ReadDir(filepath.Join(root, "test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defects {
		for _, img := range loadDir(t, filepath.Join(root, "test", d.Name()), size) {
			mixed, err := fe.Mixed(img)
			if err != nil {
				t.Fatal(err)
			}
			_, s, err := m.Score(mixed, 0)
			if err != nil {
				t.Fatal(err)
			}
			scores = append(scores, float64(s))
			labels = append(labels, d.Name() != "good")
		}
	}
	auroc, err := metrics.AUROC(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d train, %d test images; reduction %s, DGM %v, %d epochs × %d locations/step: image AUROC %.4f; train %s (%.0f locations/s), scoring %s",
		cat, len(train), len(scores), cfg.Reduction, cfg.DGM.Enabled, cfg.Epochs, cfg.LocationsPerStep, auroc,
		trainTime.Round(time.Second), m.LocationsPerSecond, time.Since(t1).Round(time.Second))
	if auroc < minAUROC {
		t.Errorf("image AUROC %.4f < %.4f", auroc, minAUROC)
	}
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("$%s: %v", name, err)
	}
	return v
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

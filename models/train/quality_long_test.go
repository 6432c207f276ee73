//go:build workstation

package train_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/evaluate"
	"github.com/inspectd/inspectd/models/train"
)

// TestLongQualityDefaultRecipe trains one bundle per shared category with
// the shipped default recipe — exactly what `inspectd train --good
// <set>/train/good --out B` does — evaluates it as `inspectd eval` does, and
// prints one table, so the figures in the notes can be reproduced. It takes
// tens of minutes; run it with `make quality-long` (INSPECTD_LONG=1).
// INSPECTD_LONG_SETS narrows the sets (comma-separated "set/category").
func TestLongQualityDefaultRecipe(t *testing.T) {
	if os.Getenv("INSPECTD_LONG") != "1" {
		t.Skip("a long quality run: set INSPECTD_LONG=1 (make quality-long)")
	}
	sets := []string{"mvtec/bottle", "mpdd/metal_plate"}
	if s := os.Getenv("INSPECTD_LONG_SETS"); s != "" {
		sets = strings.Split(s, ",")
	}
	datasets := infertest.Shared(t, "datasets")
	bb := infertest.Shared(t, "backbones/resnet18")
	rt := infertest.Runtime(t)
	be := infer.NewBackend(rt)

	var rows []string
	for _, set := range sets {
		root, cat, _ := strings.Cut(set, "/")
		catDir := filepath.Join(datasets, root, cat)
		out := filepath.Join(t.TempDir(), "bundle")
		recipe := train.DefaultRecipe()
		start := time.Now()
		res, err := train.Run(context.Background(), train.Options{GoodDir: filepath.Join(catDir, "train", "good"), Backbone: bb,
			Out: out, Recipe: &recipe, Backend: be, Progress: testWriter{t}})
		if err != nil {
			t.Fatalf("%s: train: %v", set, err)
		}
		trainTime := time.Since(start)
		b, err := bundle.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := infer.NewEngine(rt, b, infer.EngineOptions{IntraOpThreads: 2})
		if err != nil {
			t.Fatal(err)
		}
		cats, err := dataset.Open(filepath.Join(datasets, root))
		if err != nil {
			t.Fatal(err)
		}
		var c *dataset.Category
		for _, x := range cats {
			if x.Name == cat {
				c = x
			}
		}
		if c == nil {
			t.Fatalf("%s: no category %s", set, cat)
		}
		rep, err := evaluate.Run(context.Background(), eng, []*dataset.Category{c}, evaluate.Options{Overlays: -1})
		eng.Close()
		if err != nil {
			t.Fatal(err)
		}
		cr := rep.Categories[0]
		f := func(p *float64) string {
			if p == nil {
				return "–"
			}
			return fmt.Sprintf("%.3f", *p)
		}
		frr, escape, f1 := "–", "–", "–"
		if op := cr.AtThreshold; op != nil {
			f1 = fmt.Sprintf("%.3f", op.F1)
			if g := op.FP + op.TN; g > 0 {
				frr = fmt.Sprintf("%.1f%%", 100*float64(op.FP)/float64(g))
			}
			if d := op.TP + op.FN; d > 0 {
				escape = fmt.Sprintf("%.1f%%", 100*float64(op.FN)/float64(d))
			}
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s |", set, f(cr.ImageAUROC), f(cr.PixelAUROC),
			f(cr.PixelAP), f(cr.AUPRO), f1, frr, escape, cr.Latency.Localize.MedianMs, trainTime.Round(time.Second)))
		t.Logf("%s: trained in %s (IMM %d steps logged, holdout %d)", set, trainTime.Round(time.Second), len(res.IMMLosses), len(res.Holdout))
	}
	t.Logf("default recipe, %s:\n| set | img AUROC | px AUROC | px AP | AUPRO | F1@thr | good rejected | defects escaped | localise ms | train |\n|---|---|---|---|---|---|---|---|---|---|\n%s",
		time.Now().Format(time.DateOnly), strings.Join(rows, "\n"))
}

// testWriter sends training progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

//go:build workstation

package train_test

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
	"github.com/inspectd/inspectd/models/train"
)

// skewedBackend is the real backend whose engines (the ones export
// verification reloads the bundle with) report every score shifted by
// skew: a bundle that scores differently from training.
type skewedBackend struct {
	backend.Backend
	skew float32
}

func (b skewedBackend) NewEngine(bd *bundle.Bundle, threads int) (inspection.Engine, error) {
	e, err := b.Backend.NewEngine(bd, threads)
	return skewedEngine{e, b.skew}, err
}

type skewedEngine struct {
	inspection.Engine
	skew float32
}

func (e skewedEngine) Localize(frame image.Image, roi image.Rectangle, t preprocess.Transform, dst *preprocess.Heatmap) (float32, error) {
	s, err := e.Engine.Localize(frame, roi, t, dst)
	return s + e.skew, err
}

// TestExportVerificationRefuses: when the reloaded bundle scores the
// held-out images differently from training by more than VerifyTolerance,
// Run refuses, names the images, and leaves neither the bundle nor its
// staging directory behind; a skew within the tolerance is accepted.
func TestExportVerificationRefuses(t *testing.T) {
	bbDir, err := backbone.Locate()
	if err != nil {
		t.Skipf("skipped: needs the shared ResNet-18 weights: %v", err)
	}
	root := filepath.Join(t.TempDir(), "synth")
	if err := synth.Generate(context.Background(), root, synth.Options{Seed: 3, Objects: []string{"plate"}, Width: 64, Height: 64,
		TrainGood: 10, TestGood: 1, TestPerDefect: 1, MaxRotationDeg: 20, MaxShiftFrac: 0.05}); err != nil {
		t.Fatal(err)
	}
	r := train.DefaultRecipe()
	r.Product = "plate"
	r.HoldoutFraction = 0.25
	r.Input.Height, r.Input.Width = 64, 64
	r.Align.Size, r.Align.Steps, r.Align.Batch = 32, 30, 4
	r.ALM.D, r.ALM.Epochs, r.ALM.LocationsPerStep = 16, 1, 512
	r.DGM.PoolSize, r.DGM.RefreshEpochs = 4, 1
	real := infer.NewBackend(infertest.Runtime(t))

	for _, tc := range []struct {
		skew   float32
		refuse bool
	}{{10 * train.VerifyTolerance, true}, {train.VerifyTolerance / 4, false}} {
		parent := t.TempDir()
		out := filepath.Join(parent, "bundle")
		res, err := train.Run(context.Background(), train.Options{
			GoodDir: filepath.Join(root, "plate", "train", "good"), Backbone: bbDir, Out: out,
			Recipe: &r, Backend: skewedBackend{real, tc.skew},
		})
		entries, _ := os.ReadDir(parent)
		if !tc.refuse {
			if err != nil {
				t.Fatalf("skew %g within tolerance %g refused: %v", tc.skew, train.VerifyTolerance, err)
			}
			if res.MaxVerify < float64(tc.skew)*0.99 || res.MaxVerify > train.VerifyTolerance {
				t.Errorf("MaxVerify %g, want about the skew %g", res.MaxVerify, tc.skew)
			}
			if _, err := bundle.Load(out); err != nil {
				t.Errorf("accepted bundle does not load: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "refusing to write it") || !strings.Contains(err.Error(), "training ") {
			t.Fatalf("skew %g: Run returned %v; want a refusal naming the held-out images", tc.skew, err)
		}
		if _, statErr := os.Stat(out); !errors.Is(statErr, os.ErrNotExist) {
			t.Errorf("refused bundle left at %s (%v)", out, statErr)
		}
		if len(entries) != 0 {
			t.Errorf("refusal left %d entries beside the bundle (staging?): %v", len(entries), entries[0].Name())
		}
	}
}

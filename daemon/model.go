package daemon

import (
	"context"
	"fmt"
	"image"
	"math"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/preprocess"
)

// EngineFactory builds an engine for a verified bundle with the model
// settings of the configuration (execution provider, threads). cmd/inspectd
// passes one backed by ONNX Runtime.
type EngineFactory func(b *bundle.Bundle, m config.Model) (inspection.Engine, error)

// Model is a loaded, verified and warmed-up bundle with its engine.
type Model struct {
	Engine   inspection.Engine
	Bundle   *bundle.Bundle
	LoadedAt time.Time
	// Build is how long building the engine took: compiling the graphs,
	// and for TensorRT building (or loading from its cache) the engine.
	Build time.Duration
	// WarmUp is how long the first (dummy) frame took through the engine.
	WarmUp time.Duration
}

// LoadModel loads the bundle of cfg with every checksum verified, builds its
// engine, and runs one dummy frame of the camera's ROI size through align
// and localise, so that a model that cannot run is refused before the first
// part rather than failing on it. The error names the bundle and the step.
//
// ctx is checked between the steps (none of them can be interrupted): once
// it has ended, LoadModel closes whatever it built and returns ctx's error,
// so a load that finishes after its caller gave up leaves nothing open.
func LoadModel(ctx context.Context, cfg *config.Config, newEngine EngineFactory) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model.bundle: %w", err)
	}
	b, err := bundle.Load(cfg.Model.Bundle)
	if err != nil {
		return nil, fmt.Errorf("model.bundle: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model.bundle %s: %w", b.Dir, err)
	}
	buildStart := time.Now()
	eng, err := newEngine(b, cfg.Model)
	build := time.Since(buildStart)
	if err != nil {
		return nil, fmt.Errorf("model.bundle %s: %w", b.Dir, err)
	}
	// The engine holds the compiled graphs; the serialised copies (about
	// 12 MB for a 256² bundle) would only make the Go heap, and with it
	// the garbage collector's goal, bigger for the daemon's whole life.
	b.AlignGraph, b.LocalizeGraph = nil, nil
	m := &Model{Engine: eng, Bundle: b, LoadedAt: time.Now(), Build: build}
	start := time.Now()
	err = ctx.Err()
	if err == nil {
		if err = warmUp(eng, cfg.Camera, b.Manifest.Input); err != nil {
			err = fmt.Errorf("warm-up frame: %w", err)
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		eng.Close()
		return nil, fmt.Errorf("model.bundle %s: %w", b.Dir, err)
	}
	m.WarmUp = time.Since(start)
	return m, nil
}

// warmUp runs a mid-grey frame through the engine and checks the score.
func warmUp(eng inspection.Engine, cam config.Camera, in bundle.Input) error {
	w, h := cam.ROI.Width, cam.ROI.Height
	if w == 0 || h == 0 {
		w, h = cam.Width, cam.Height
	}
	if w == 0 || h == 0 {
		w, h = in.Width, in.Height
	}
	img := preprocess.NewBGR(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 128
	}
	t, err := eng.Align(img, image.Rectangle{})
	if err != nil {
		return err
	}
	hm := eng.NewHeatmap()
	score, err := eng.Localize(img, image.Rectangle{}, t, hm)
	if err != nil {
		return err
	}
	if s := float64(score); math.IsNaN(s) || math.IsInf(s, 0) {
		return fmt.Errorf("the engine returned score %v for a grey frame", score)
	}
	return nil
}

// Close releases the engine.
func (m *Model) Close() error {
	if m == nil || m.Engine == nil {
		return nil
	}
	return m.Engine.Close()
}

// thresholds are the image and pixel thresholds in force, with where they
// come from.
type thresholds struct {
	image, pixel float64
	source       string // "bundle", "config" or "runtime"
}

// resolveThresholds applies the precedence runtime > config > bundle.
func resolveThresholds(m *Model, d config.Decision, runtime *thresholds) thresholds {
	t := thresholds{image: m.Bundle.Manifest.Calibration.ImageThreshold, pixel: m.Bundle.Manifest.Calibration.PixelThreshold, source: "bundle"}
	if d.Threshold > 0 {
		t.image, t.source = d.Threshold, "config"
	}
	if d.PixelThreshold > 0 {
		t.pixel, t.source = d.PixelThreshold, "config"
	}
	if runtime != nil {
		if runtime.image > 0 {
			t.image = runtime.image
		}
		if runtime.pixel > 0 {
			t.pixel = runtime.pixel
		}
		t.source = "runtime"
	}
	return t
}

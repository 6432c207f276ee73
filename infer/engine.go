package infer

import (
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/ecc"
	"github.com/inspectd/inspectd/models/preprocess"
)

// EngineOptions configures the sessions of an Engine.
type EngineOptions = SessionOptions

// Engine runs one verified model bundle: Align predicts the transform of a
// frame against the template, Localize warps and resizes the frame and
// computes the heatmap and image score. Sessions, tensors and scratch
// buffers are created once; Localize allocates nothing per frame. An Engine
// is used by one goroutine at a time.
type Engine struct {
	m        bundle.Manifest
	hash     string
	align    *Session
	localize *Session

	alignIn, templateIn, transformOut []float32
	imageIn, heatmapOut, scoreOut     []float32

	prep   preprocess.Preparer
	inside []preprocess.Span // InsideSpans scratch
	rows   []preprocess.Span // SuppressOutside scratch

	// refine is the align.refine method (nil for none).
	refine  ecc.Method
	refiner ecc.Refiner
}

// NewEngine compiles the bundle's graphs. An alignment method the engine
// cannot run is an error, never a silent skip.
func NewEngine(rt *Runtime, b *bundle.Bundle, opts EngineOptions) (_ *Engine, err error) {
	e := &Engine{m: b.Manifest, hash: b.Hash}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if opts.Provider == ProviderTensorRT && opts.EngineCacheDir != "" {
		// TensorRT engines are specific to the model, the runtime and the
		// precision: keep each combination in its own directory.
		opts.EngineCacheDir = filepath.Join(opts.EngineCacheDir, EngineCacheKey(b.Hash, rt.Version(), opts.TensorRTFP16))
		if err := os.MkdirAll(opts.EngineCacheDir, 0o750); err != nil {
			return nil, fmt.Errorf("engine: TensorRT engine cache: %w", err)
		}
	}
	switch b.Manifest.Align.Method {
	case bundle.AlignNone:
	case bundle.AlignIMM:
		// The regressor is tiny (≈1 ms): run it on the calling thread. A
		// second multi-threaded session would keep its pool threads spinning
		// after each call and steal the cores from localisation (measured:
		// localise 30 ms → 50-70 ms when the two alternate on 2 cores).
		alignOpts := opts
		alignOpts.IntraOpThreads = 1
		if e.align, err = rt.NewSession(b.AlignGraph, alignOpts); err != nil {
			return nil, fmt.Errorf("engine: align graph of bundle %s: %w", b.Dir, err)
		}
		if e.alignIn, err = e.align.Input(bundle.InputImage); err != nil {
			return nil, err
		}
		if e.templateIn, err = e.align.Input(bundle.InputTemplate); err != nil {
			return nil, err
		}
		if e.transformOut, err = e.align.Output(bundle.OutputTransform); err != nil {
			return nil, err
		}
		// The template never changes: fill its tensor once.
		if err := preprocess.Fill(e.templateIn, b.Template, e.alignSpec()); err != nil {
			return nil, fmt.Errorf("engine: template of bundle %s: %w", b.Dir, err)
		}
		var known bool
		if e.refine, known = e.refiner.MethodNamed(b.Manifest.Align.Refine); !known {
			return nil, fmt.Errorf("engine: bundle %s refines its alignment with %q, which this engine cannot run (supported: %q, %q)",
				b.Dir, b.Manifest.Align.Refine, bundle.RefineECC, bundle.RefineSearch)
		}
	default:
		return nil, fmt.Errorf("engine: bundle %s uses align method %q, which this engine cannot run (supported: %q, %q)",
			b.Dir, b.Manifest.Align.Method, bundle.AlignNone, bundle.AlignIMM)
	}
	if e.localize, err = rt.NewSession(b.LocalizeGraph, opts); err != nil {
		return nil, fmt.Errorf("engine: localize graph of bundle %s: %w", b.Dir, err)
	}
	if e.imageIn, err = e.localize.Input(bundle.InputImage); err != nil {
		return nil, err
	}
	if e.heatmapOut, err = e.localize.Output(bundle.OutputHeatmap); err != nil {
		return nil, err
	}
	if e.scoreOut, err = e.localize.Output(bundle.OutputScore); err != nil {
		return nil, err
	}
	return e, nil
}

// EngineCacheKey names the TensorRT engine-cache subdirectory of a model:
// its hash, the ONNX Runtime version and the precision.
func EngineCacheKey(modelHash, runtimeVersion string, fp16 bool) string {
	prec := "fp32"
	if fp16 {
		prec = "fp16"
	}
	if len(modelHash) > 16 {
		modelHash = modelHash[:16]
	}
	return fmt.Sprintf("%s-ort%s-%s", modelHash, runtimeVersion, prec)
}

func (e *Engine) alignSpec() preprocess.Spec {
	return preprocess.Spec{Width: e.m.Align.Width, Height: e.m.Align.Height, Channels: e.m.Align.Channels}
}

// Manifest returns the bundle's manifest.
func (e *Engine) Manifest() bundle.Manifest { return e.m }

// ModelHash returns the bundle's identity (SHA-256 of its manifest).
func (e *Engine) ModelHash() string { return e.hash }

// Provider reports the execution provider the localisation graph runs on.
func (e *Engine) Provider() string {
	if e.localize == nil {
		return ""
	}
	return e.localize.Provider()
}

// NewHeatmap allocates a heatmap of the model input size for Localize.
func (e *Engine) NewHeatmap() *preprocess.Heatmap {
	return preprocess.NewHeatmap(e.m.Input.Width, e.m.Input.Height)
}

// Align predicts the transform that brings the part in roi of frame into
// the template's pose, refined against the template when the bundle says
// align.refine = "ecc" or "ecc-search" (models/ecc: kept only when it
// correlates better).
// For bundles with align method "none" it returns the identity. An empty
// roi means the whole frame.
func (e *Engine) Align(frame image.Image, roi image.Rectangle) (preprocess.Transform, error) {
	if e.align == nil {
		return preprocess.Transform{}, nil
	}
	spec := e.alignSpec()
	spec.Crop = roi
	if err := e.prep.Fill(e.alignIn, frame, spec); err != nil {
		return preprocess.Transform{}, fmt.Errorf("align: %w", err)
	}
	if err := e.align.Run(); err != nil {
		return preprocess.Transform{}, fmt.Errorf("align: %w", err)
	}
	t := preprocess.Transform{Tx: float64(e.transformOut[0]), Ty: float64(e.transformOut[1]), Theta: float64(e.transformOut[2])}
	if math.IsNaN(t.Tx) || math.IsNaN(t.Ty) || math.IsNaN(t.Theta) {
		return preprocess.Transform{}, errors.New("align: the regressor returned NaN")
	}
	if e.refine != nil {
		if roi.Empty() {
			roi = frame.Bounds()
		}
		t, _ = e.refine(e.alignIn, e.templateIn, spec.Channels, spec.Width, spec.Height, roi.Dx(), roi.Dy(), t)
	}
	return t, nil
}

// Localize warps roi of frame by t at full resolution, resizes it to the
// model input, and writes the heatmap into dst (from NewHeatmap). It returns
// the image score, the maximum of the heatmap. Where the warp pulled pixels
// from outside the ROI (replicated border, not the part), the heatmap is 0
// on them and within the manifest's OutsideMargin, and the score is the
// maximum of the rest — as training calibrated it; dst.Outside is the
// fraction of the input pulled from outside (before the margin).
func (e *Engine) Localize(frame image.Image, roi image.Rectangle, t preprocess.Transform, dst *preprocess.Heatmap) (float32, error) {
	if roi.Empty() {
		roi = frame.Bounds()
	}
	if len(dst.Values) != len(e.heatmapOut) {
		return 0, fmt.Errorf("localize: heatmap has %d values, want %d (use Engine.NewHeatmap)", len(dst.Values), len(e.heatmapOut))
	}
	spec := preprocess.Spec{Width: e.m.Input.Width, Height: e.m.Input.Height, Channels: 3, Crop: roi}
	var warp preprocess.Affine
	if t != (preprocess.Transform{}) {
		warp = t.Pixel(roi.Dx(), roi.Dy())
		spec.Warp = &warp
	}
	if err := e.prep.Fill(e.imageIn, frame, spec); err != nil {
		return 0, fmt.Errorf("localize: %w", err)
	}
	if err := e.localize.Run(); err != nil {
		return 0, fmt.Errorf("localize: %w", err)
	}
	copy(dst.Values, e.heatmapOut)
	score := e.scoreOut[0]
	var found int
	if e.inside, found = spec.InsideSpans(roi.Dx(), roi.Dy(), e.inside); found > 0 {
		score, _, e.rows = preprocess.SuppressOutside(dst.Values, spec.Width, spec.Height, e.inside, e.m.Localize.OutsideMargin(), e.rows)
	}
	dst.Outside = float64(found) / float64(len(dst.Values))
	return score, nil
}

// Close releases the sessions and returns the native memory they held to
// the system. It is safe to call more than once.
func (e *Engine) Close() error {
	defer trimNativeHeap()
	var errs []error
	if e.align != nil {
		errs = append(errs, e.align.Close())
		e.align = nil
	}
	if e.localize != nil {
		errs = append(errs, e.localize.Close())
		e.localize = nil
	}
	return errors.Join(errs...)
}

package infer

import (
	"errors"
	"fmt"
	"image"
	"math"

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
	align    GraphSession
	localize GraphSession

	alignIn, templateIn, transformOut []float32
	imageIn, heatmapOut, scoreOut     []float32

	prep   preprocess.Preparer
	inside []preprocess.Span // InsideSpans scratch
	rows   []preprocess.Span // SuppressOutside scratch

	// refine is the align.refine method (nil for none).
	refine  ecc.Method
	refiner ecc.Refiner
}

// NewEngine compiles the bundle's graphs with ONNX Runtime. An alignment
// method the engine cannot run is an error, never a silent skip.
func NewEngine(rt *Runtime, b *bundle.Bundle, opts EngineOptions) (*Engine, error) {
	if opts.Provider == ProviderTensorRT && opts.EngineCacheDir != "" {
		// TensorRT engines are specific to the model, the GPU, the runtime
		// and the precision: keep each combination in its own directory
		// (enginecache.go), and the GPU's layer timings beside them.
		var err error
		if opts.EngineCacheDir, opts.TimingCacheDir, err = tensorRTCacheDirs(opts.EngineCacheDir, "/", b.Hash, rt.Version(), opts.TensorRTFP16); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	return NewEngineWithSessions(b, func(g Graph) (GraphSession, error) {
		o, model := opts, b.LocalizeGraph
		if g == GraphAlign {
			// The regressor is tiny (≈1 ms): run it on the calling thread. A
			// second multi-threaded session would keep its pool threads spinning
			// after each call and steal the cores from localisation (measured:
			// localise 30 ms → 50-70 ms when the two alternate on 2 cores).
			o.IntraOpThreads = 1
			model = b.AlignGraph
		}
		s, err := rt.NewSession(model, o)
		if err != nil {
			return nil, err // never a typed nil inside the interface
		}
		return s, nil
	})
}

// GraphSession is one compiled graph of a bundle as the Engine runs it:
// float32 tensors named as in the bundle's ONNX graphs ([bundle.InputImage],
// [bundle.OutputHeatmap], ...), in the ONNX graphs' memory order (NCHW
// images; a heatmap [1,1,H,W]), allocated once. Input and Output return
// the tensors' memory, valid until Close; Run reads the inputs and
// overwrites the outputs in place. A runtime whose graphs are laid out
// otherwise (TFLite's NHWC twins) converts inside its GraphSession.
// *Session (ONNX Runtime) is one; infer/tflite provides another.
type GraphSession interface {
	Input(name string) ([]float32, error)
	Output(name string) ([]float32, error)
	Run() error
	Close() error
}

// Graph names one graph of a bundle for a [SessionOpener].
type Graph string

// The graphs of a bundle.
const (
	// GraphAlign is the alignment regressor (bundle.AlignIMM only): inputs
	// InputImage and InputTemplate, output OutputTransform. It takes about a
	// millisecond: openers run it on one thread.
	GraphAlign Graph = "align"
	// GraphLocalize is the localisation graph: input InputImage, outputs
	// OutputHeatmap and OutputScore.
	GraphLocalize Graph = "localize"
)

// SessionOpener opens the session of one graph of the bundle an engine is
// built for. It returns a nil GraphSession with every error.
type SessionOpener func(g Graph) (GraphSession, error)

// providerReporter is implemented by sessions that know where they run.
type providerReporter interface{ Provider() string }

// NewEngineWithSessions builds the Engine of bundle b over the sessions
// open returns: every runtime shares this one Engine (alignment, its
// refinement, preprocessing, localisation and outside suppression). An
// alignment method the engine cannot run is an error, never a silent skip.
func NewEngineWithSessions(b *bundle.Bundle, open SessionOpener) (_ *Engine, err error) {
	e := &Engine{m: b.Manifest, hash: b.Hash}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	openGraph := func(g Graph) (GraphSession, error) {
		s, err := open(g)
		if err != nil {
			return nil, fmt.Errorf("engine: %s graph of bundle %s: %w", g, b.Dir, err)
		}
		if s == nil {
			return nil, fmt.Errorf("engine: %s graph of bundle %s: the session opener returned no session", g, b.Dir)
		}
		return s, nil
	}
	switch b.Manifest.Align.Method {
	case bundle.AlignNone:
	case bundle.AlignIMM:
		if e.align, err = openGraph(GraphAlign); err != nil {
			return nil, err
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
		al := b.Manifest.Align
		if err := checkSizes(b, GraphAlign,
			sized{bundle.InputImage, e.alignIn, al.Channels * al.Width * al.Height},
			sized{bundle.InputTemplate, e.templateIn, al.Channels * al.Width * al.Height},
			sized{bundle.OutputTransform, e.transformOut, 3}); err != nil {
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
	if e.localize, err = openGraph(GraphLocalize); err != nil {
		return nil, err
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
	in := b.Manifest.Input
	if err := checkSizes(b, GraphLocalize,
		sized{bundle.InputImage, e.imageIn, 3 * in.Width * in.Height},
		sized{bundle.OutputHeatmap, e.heatmapOut, in.Width * in.Height},
		sized{bundle.OutputScore, e.scoreOut, 1}); err != nil {
		return nil, err
	}
	return e, nil
}

// sized is a tensor of a session and the number of values the manifest
// gives it.
type sized struct {
	name string
	data []float32
	want int
}

// checkSizes checks that each tensor of graph g holds the values the
// manifest implies, so that a session that disagrees with its bundle is
// an error here, never an index out of range on the first frame.
func checkSizes(b *bundle.Bundle, g Graph, ts ...sized) error {
	for _, t := range ts {
		if len(t.data) != t.want {
			return fmt.Errorf("engine: %s graph of bundle %s: tensor %q has %d values, the manifest implies %d", g, b.Dir, t.name, len(t.data), t.want)
		}
	}
	return nil
}

func (e *Engine) alignSpec() preprocess.Spec {
	return preprocess.Spec{Width: e.m.Align.Width, Height: e.m.Align.Height, Channels: e.m.Align.Channels}
}

// Manifest returns the bundle's manifest.
func (e *Engine) Manifest() bundle.Manifest { return e.m }

// ModelHash returns the bundle's identity (SHA-256 of its manifest).
func (e *Engine) ModelHash() string { return e.hash }

// Provider reports the execution provider the localisation graph runs on
// ("" when its session does not say).
func (e *Engine) Provider() string {
	if p, ok := e.localize.(providerReporter); ok {
		return p.Provider()
	}
	return ""
}

// NearestEntry says whether the localisation session compares the shared
// entries with the fused NearestEntry operator ([Session.NearestEntry]);
// false for other backends and for graphs without int8 shared entries.
func (e *Engine) NearestEntry() bool {
	s, ok := e.localize.(*Session)
	return ok && s.NearestEntry()
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

// Package bench times the inference stages of a bundle on this machine for
// `inspectd bench`. It lives apart from infer so that the runtime the
// daemon links does not pull in the backbone importers (pickle, .npy) and
// the graph builders that only benchmarking needs.
package bench

import (
	"context"
	"fmt"
	"image"
	"time"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/latency"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
)

// StageTiming summarises the latency of one stage in milliseconds.
type StageTiming = latency.StageTiming

// Result is the outcome of Stages.
type Result struct {
	Threads    int                    `json:"threads"`
	Height     int                    `json:"height"`
	Width      int                    `json:"width"`
	Iterations int                    `json:"iterations"`
	Provider   string                 `json:"provider"`
	Stages     map[string]StageTiming `json:"stages"`
	// Heatmap is the last localisation's heatmap (Width×Height, row-major)
	// and Score its image score, for comparing providers
	// (`inspectd bench --dump-heatmap`, scripts/gpu-check.sh): every round
	// localises the same synthetic frame.
	Heatmap []float32 `json:"-"`
	Score   float32   `json:"-"`
	// NearestEntry says whether the localise stage compared the shared
	// entries with the fused NearestEntry operator (infer.Session.NearestEntry).
	NearestEntry bool `json:"nearest_entry"`
}

// Options configures Stages.
type Options struct {
	Session    infer.SessionOptions
	Iterations int // timed runs per stage (after 3 warm-up runs)
	// Backbone weights for the backbone-only stage; nil means random
	// weights (the cost does not depend on the values).
	Backbone *backbone.Weights
	// NewEngine builds the engine of the align and localise stages (the
	// TFLite runtime's, for `bench --runtime tflite`); nil means ONNX
	// Runtime's with Session. The backbone stage always runs on rt.
	NewEngine func(b *bundle.Bundle) (*infer.Engine, error)
}

// Stages times, on this machine, the backbone-only graph (ResNet-18
// to layer3 + feature concatenation), the align stage (resize to the
// IMM input + regressor; skipped for bundles without an align graph) and
// the full localise stage (warp — for a bundle that aligns — + resize +
// localisation graph) of b, one after the other in every round (align
// and localise alternate as the daemon runs them). The frame is
// synthetic, at the model input size.
func Stages(ctx context.Context, rt *infer.Runtime, b *bundle.Bundle, o Options) (*Result, error) {
	if o.Iterations < 1 {
		return nil, fmt.Errorf("bench: iterations %d, want at least 1", o.Iterations)
	}
	h, w := b.Manifest.Input.Height, b.Manifest.Input.Width
	res := &Result{Threads: o.Session.IntraOpThreads, Height: h, Width: w, Iterations: o.Iterations, Stages: map[string]StageTiming{}}

	bb := o.Backbone
	if bb == nil {
		bb = backbone.Random(1)
	}
	model, err := netdef.BackboneGraph(bb, h, w)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	bs, err := rt.NewSession(model, o.Session)
	if err != nil {
		return nil, fmt.Errorf("bench: backbone: %w", err)
	}
	defer bs.Close()
	in, err := bs.Input(bundle.InputImage)
	if err != nil {
		return nil, err
	}
	for i := range in {
		in[i] = float32(i%251) / 251
	}
	newEngine := o.NewEngine
	if newEngine == nil {
		newEngine = func(b *bundle.Bundle) (*infer.Engine, error) { return infer.NewEngine(rt, b, o.Session) }
	}
	e, err := newEngine(b)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer e.Close()
	res.Provider = e.Provider()
	res.NearestEntry = e.NearestEntry()
	frame := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range frame.Pix {
		frame.Pix[i] = uint8(i * 37)
	}
	// Align and localise alternate as in the daemon, each timed on its own,
	// so that any interference between the two sessions shows in the
	// figures. The backbone runs in the same rounds, so that the ratio of
	// localise to backbone compares runs made under the same load.
	hm := e.NewHeatmap()
	// Localise as the daemon does: a bundle that aligns warps every frame
	// (here by a small fixed turn and shift, which also pulls a sliver from
	// outside the frame to suppress); one trained without alignment
	// localises the frame as it is.
	var tr preprocess.Transform
	if b.Manifest.Align.Method != bundle.AlignNone {
		tr = preprocess.Transform{Tx: 0.01, Ty: -0.01, Theta: 0.02}
	}
	imm := b.Manifest.Align.Method == bundle.AlignIMM
	backboneMs := make([]float64, 0, o.Iterations)
	alignMs := make([]float64, 0, o.Iterations)
	locMs := make([]float64, 0, o.Iterations)
	for i := -3; i < o.Iterations; i++ { // 3 warm-up rounds
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bbStart := time.Now()
		if err := bs.Run(); err != nil {
			return nil, fmt.Errorf("bench: backbone: %w", err)
		}
		start := time.Now()
		if imm {
			if _, err := e.Align(frame, image.Rectangle{}); err != nil {
				return nil, fmt.Errorf("bench: align: %w", err)
			}
		}
		mid := time.Now()
		if res.Score, err = e.Localize(frame, image.Rectangle{}, tr, hm); err != nil {
			return nil, fmt.Errorf("bench: localize: %w", err)
		}
		end := time.Now()
		if i >= 0 {
			backboneMs = append(backboneMs, float64(start.Sub(bbStart).Microseconds())/1000)
			alignMs = append(alignMs, float64(mid.Sub(start).Microseconds())/1000)
			locMs = append(locMs, float64(end.Sub(mid).Microseconds())/1000)
		}
	}
	res.Stages["backbone"] = latency.Summarise(backboneMs)
	if imm {
		res.Stages["align"] = latency.Summarise(alignMs)
	}
	res.Stages["localize"] = latency.Summarise(locMs)
	res.Heatmap = hm.Values
	return res, nil
}

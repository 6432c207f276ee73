package inspection

import (
	"image"

	"github.com/inspectd/inspectd/models/preprocess"
)

// Engine runs one verified model bundle on frames (implemented by
// infer.Engine). It is used by one goroutine at a time.
type Engine interface {
	// Align predicts the transform that brings the part in roi of frame
	// into the template's pose (the identity for bundles without
	// alignment). An empty roi means the whole frame.
	Align(frame image.Image, roi image.Rectangle) (preprocess.Transform, error)
	// Localize warps roi of frame by t, computes the heatmap into dst and
	// returns the image score.
	Localize(frame image.Image, roi image.Rectangle, t preprocess.Transform, dst *preprocess.Heatmap) (float32, error)
	// NewHeatmap allocates a heatmap of the model input size.
	NewHeatmap() *preprocess.Heatmap
	// Provider names the execution provider in use ("cpu", "cuda", …).
	Provider() string
	// Close releases the native resources.
	Close() error
}

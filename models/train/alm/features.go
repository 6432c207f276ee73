//go:build workstation

package alm

import (
	"fmt"

	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/netdef"
)

// mixedChannels is the channel count of F_Mixed.
const mixedChannels = netdef.MixedChannels

// Features computes the frozen backbone features of an image.
type Features interface {
	// Mixed returns F_Mixed, 448×(H/4)×(W/4) row-major (CHW), of image,
	// a CHW 3×H×W RGB tensor in [0,1]. The returned slice belongs to the
	// caller.
	Mixed(image []float32) ([]float32, error)
}

// BackboneFeatures computes F_Mixed by running netdef.BackboneGraph on a
// [backend.Backend] (ONNX Runtime through infer.NewBackend). Like its
// Session, it must be used by one goroutine at a time.
type BackboneFeatures struct {
	sess     backend.Session
	in, out  []float32
	height   int
	width    int
	mixedLen int
}

// NewBackboneFeatures compiles the backbone graph for h×w inputs
// (multiples of 16) with the given backbone weights and intra-op thread
// count.
func NewBackboneFeatures(be backend.Backend, bb *backbone.Weights, h, w, threads int) (*BackboneFeatures, error) {
	model, err := netdef.BackboneGraph(bb, h, w)
	if err != nil {
		return nil, fmt.Errorf("alm features: %w", err)
	}
	sess, err := be.NewSession(model, threads)
	if err != nil {
		return nil, fmt.Errorf("alm features: %w", err)
	}
	in, err := sess.Input("image")
	if err == nil {
		var out []float32
		out, err = sess.Output("mixed")
		if err == nil {
			return &BackboneFeatures{sess: sess, in: in, out: out, height: h, width: w, mixedLen: len(out)}, nil
		}
	}
	sess.Close()
	return nil, fmt.Errorf("alm features: %w", err)
}

// Mixed implements [Features].
func (f *BackboneFeatures) Mixed(image []float32) ([]float32, error) {
	if len(image) != len(f.in) {
		return nil, fmt.Errorf("alm features: image has %d values, want 3·%d·%d = %d", len(image), f.height, f.width, len(f.in))
	}
	copy(f.in, image)
	if err := f.sess.Run(); err != nil {
		return nil, fmt.Errorf("alm features: %w", err)
	}
	out := make([]float32, f.mixedLen)
	copy(out, f.out)
	return out, nil
}

// Close releases the session.
func (f *BackboneFeatures) Close() error {
	if err := f.sess.Close(); err != nil {
		return fmt.Errorf("alm features: %w", err)
	}
	return nil
}

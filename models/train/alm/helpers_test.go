//go:build workstation

package alm

import (
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
)

// testBackend opens ONNX Runtime (infertest's policy: fail without it) and
// passes it in as cmd/inspectd does; the package itself links no cgo.
func testBackend(t testing.TB) backend.Backend {
	t.Helper()
	return infer.NewBackend(infertest.Runtime(t))
}

// testFeatures returns BackboneFeatures for h×w images.
func testFeatures(t testing.TB, bb *backbone.Weights, h, w int) *BackboneFeatures {
	t.Helper()
	fe, err := NewBackboneFeatures(testBackend(t), bb, h, w, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fe.Close() })
	return fe
}

// renderSet renders count synthetic plates of size s×s with the given
// defect (synth.None for good ones), seeds from seed0, as CHW tensors.
func renderSet(t testing.TB, s, count int, defect synth.Defect, seed0 uint64) [][]float32 {
	t.Helper()
	var out [][]float32
	for i := 0; i < count; i++ {
		smp, err := synth.Render(synth.Plate, s, s, false, synth.Pose{}, defect, seed0+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 3*s*s)
		if err := preprocess.Fill(x, smp.Image, preprocess.Spec{Width: s, Height: s, Channels: 3}); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

package netdef

import (
	"bytes"
	"testing"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
)

// TFLiteTwins reads the weights back from the ONNX graphs and writes the
// same twins as the emitters given the original weights, byte for byte.
func TestTFLiteTwinsFromBundleGraphs(t *testing.T) {
	bb := backbone.Random(4)
	const H, W = 48, 64
	r := newRand(9)
	manifest := func(l bundle.Localize) bundle.Manifest {
		return bundle.Manifest{Input: bundle.Input{Height: H, Width: W}, Localize: l,
			Align: bundle.Align{Method: bundle.AlignIMM, Channels: 1, Height: 32, Width: 48}}
	}
	aspec := AlignSpec{Channels: 1, Height: 32, Width: 48}
	aw := NewAlignWeights(3, 1)
	aw.Out.Bias = []float32{0.5, -1, 2}
	alignONNX, err := AlignGraph(aspec, aw)
	if err != nil {
		t.Fatal(err)
	}
	wantAlign, err := AlignTFLite(aspec, aw)
	if err != nil {
		t.Fatal(err)
	}

	lspec := LocalizeSpec{Height: H, Width: W, D: 16, BlurSigma: 2}
	head := RandomMapping(5, 16, 2)
	centre := make([]float32, 16*(H/4)*(W/4))
	for i := range centre {
		centre[i] = float32(r.NormFloat64())
	}
	mspec := MemorySpec{Height: H, Width: W, Layers: []int{2, 3}, Stride: 8, D: 384, Global: 8, AverageEachLayer: true,
		GlobalInt8: true, GlobalScale: 1.0 / 64, BlurSigma: 4, Scale: 1.5}
	global := make([]float32, 8*384)
	for i := range global {
		global[i] = float32(r.IntN(128)) / 64
	}
	pspec := MemorySpec{Height: H, Width: W, D: 12, Entries: 2, Global: 3, BlurSigma: 4, Scale: 2}
	gh, gw := pspec.Grid()
	proj := RandomMapping(6, 12, 1).Layers[0]
	proj.Bias[0] = 0.25
	bank := make([]float32, gh*gw*2*12)
	for i := range bank {
		bank[i] = float32(r.NormFloat64())
	}
	pglobal := make([]float32, 3*12)
	for i := range pglobal {
		pglobal[i] = float32(r.NormFloat64())
	}

	tests := []struct {
		name       string
		l          bundle.Localize
		onnx, want func() ([]byte, error)
	}{
		{"centres", bundle.Localize{D: 16, BlurSigma: 2},
			func() ([]byte, error) { return LocalizeGraph(lspec, bb, head, centre) },
			func() ([]byte, error) { return LocalizeTFLite(lspec, bb, head, centre) }},
		{"memory int8", bundle.Localize{Method: bundle.LocalizeMemory, D: 384, GlobalEntries: 8, Layers: []int{2, 3}, Stride: 8,
			Average: bundle.AverageEachLayer, GlobalPrecision: bundle.PrecisionInt8, BlurSigma: 4},
			func() ([]byte, error) { return MemoryGraph(mspec, bb, ConvWeights{}, nil, global) },
			func() ([]byte, error) { return MemoryTFLite(mspec, bb, ConvWeights{}, nil, global) }},
		{"memory projected", bundle.Localize{Method: bundle.LocalizeMemory, D: 12, Entries: 2, GlobalEntries: 3, BlurSigma: 4},
			func() ([]byte, error) { return MemoryGraph(pspec, bb, proj, bank, pglobal) },
			func() ([]byte, error) { return MemoryTFLite(pspec, bb, proj, bank, pglobal) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loc, err := tc.onnx()
			if err != nil {
				t.Fatal(err)
			}
			want, err := tc.want()
			if err != nil {
				t.Fatal(err)
			}
			b := &bundle.Bundle{Manifest: manifest(tc.l), LocalizeGraph: loc, AlignGraph: alignONNX}
			twins, err := TFLiteTwins(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(twins[bundle.LocalizeTFLiteName], want) {
				t.Errorf("%s differs from the twin emitted from the original weights", bundle.LocalizeTFLiteName)
			}
			if !bytes.Equal(twins[bundle.AlignTFLiteName], wantAlign) {
				t.Errorf("%s differs from the twin emitted from the original weights", bundle.AlignTFLiteName)
			}
		})
	}
}

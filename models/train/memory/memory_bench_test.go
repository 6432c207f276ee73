//go:build workstation

package memory

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
)

// benchSize, benchImages and benchEntries shape the memory benchmarks:
// the default memory's features (layers 2 and 3, each averaged over 3×3 of
// its cells, 8-pixel cells: 1,024 locations of 384 values at 256²) of
// synthetic parts, and a third of the default's shared entries.
const (
	benchSize    = 256
	benchImages  = 48
	benchEntries = 2048
)

// benchFeatures returns the default memory's features of benchImages
// synthetic parts at small random poses, location-major.
func benchFeatures(b *testing.B) ([][]float32, int) {
	return benchFeaturesT(b, benchImages)
}

// benchFeaturesT is benchFeatures for images parts.
func benchFeaturesT(b testing.TB, images int) ([][]float32, int) {
	b.Helper()
	be := infer.NewBackend(infertest.Runtime(b))
	spec := netdef.MemorySpec{Height: benchSize, Width: benchSize, Layers: []int{2, 3}, Stride: 8, D: 384, Global: benchEntries,
		AverageEachLayer: true, GlobalInt8: true, Scale: 1}
	ex, err := NewExtractor(be, infertest.Backbone(b), spec, netdef.ConvWeights{}, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer ex.Close()
	r := rand.New(rand.NewPCG(1, 2))
	feats := make([][]float32, images)
	x := make([]float32, 3*benchSize*benchSize)
	for i := range feats {
		pose := synth.Pose{RotationDeg: r.Float64()*4 - 2, ShiftXFrac: r.Float64()*0.02 - 0.01, ShiftYFrac: r.Float64()*0.02 - 0.01}
		smp, err := synth.Render([]string{synth.Plate, synth.Gear}[i%2], benchSize, benchSize, false, pose, synth.None, uint64(100+i))
		if err != nil {
			b.Fatal(err)
		}
		if err := preprocess.Fill(x, smp.Image, preprocess.Spec{Width: benchSize, Height: benchSize, Channels: 3}); err != nil {
			b.Fatal(err)
		}
		if feats[i], err = ex.Features(x, nil, spec.D); err != nil {
			b.Fatal(err)
		}
	}
	return feats, spec.D
}

// BenchmarkKCenter: greedy k-center of benchEntries among every location of
// benchImages images in the selection space (a 128-direction random
// projection), on 2 threads — the work of one shared-memory selection.
func BenchmarkKCenter(b *testing.B) {
	feats, d := benchFeatures(b)
	var cand []float32
	for _, f := range feats {
		cand = append(cand, f...)
	}
	count := len(cand) / d
	proj := randomProjection(cand, count, d, selectionDims, rand.New(rand.NewPCG(3, 4)), 2)
	b.ResetTimer()
	for range b.N {
		if _, _, err := kCenterThreads(context.Background(), nil, proj, count, selectionDims, benchEntries, nil, 2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryBuild: the shared memory and five out-of-fold ones from
// benchImages images' features, with a candidate bound that makes every
// image offer a share (as on sets of 128 images or more at 256²): pool,
// selection, folds and their distances, as Train runs them after the
// features.
func BenchmarkMemoryBuild(b *testing.B) {
	feats, d := benchFeatures(b)
	be := infer.NewBackend(infertest.Runtime(b))
	cfg := Config{Height: benchSize, Width: benchSize, Layers: []int{2, 3}, Stride: 8, Global: benchEntries, AverageEachLayer: true, GlobalInt8: true,
		GlobalCandidates: len(feats) * 1024 * 2 / 3, Threads: 2, Seed: 1, Folds: 5}
	b.ResetTimer()
	for range b.N {
		if _, err := buildFromFeatures(context.Background(), cfg, d, feats, be); err != nil {
			b.Fatal(err)
		}
	}
}

// buildFromFeatures runs Model.build on features already extracted.
func buildFromFeatures(ctx context.Context, cfg Config, d int, feats [][]float32, be backend.Backend) (*Model, error) {
	spec := netdef.MemorySpec{Height: cfg.Height, Width: cfg.Width, Layers: cfg.Layers, Stride: cfg.Stride, D: d, Entries: cfg.Entries, Global: cfg.Global,
		AverageEachLayer: cfg.AverageEachLayer, GlobalInt8: cfg.GlobalInt8, BlurSigma: cfg.BlurSigma, Scale: 1}
	m := &Model{Spec: spec, be: be, threads: max(cfg.Threads, 1)}
	err := m.build(ctx, cfg, feats, rand.New(rand.NewPCG(cfg.Seed, 0x6d656d6f)), io.Discard)
	return m, err
}

// BenchmarkReferenceDistances: the Go reference's distances of one frame
// (1,024 locations of 384 values) to the default 6,144 int8 shared
// entries, on 2 threads — what training spends per held-out image to
// verify the bundle.
func BenchmarkReferenceDistances(b *testing.B) {
	const d, g, n = 384, 6144, 1024
	r := rand.New(rand.NewPCG(5, 6))
	m := &Model{Spec: netdef.MemorySpec{D: d, Global: g, GlobalInt8: true}, Bank: []float32{}, Global: make([]float32, g*d), threads: 2}
	for i := range m.Global {
		m.Global[i] = float32(r.NormFloat64())
	}
	m.Spec.GlobalScale = quantize(m.Global)
	f := make([]float32, n*d)
	for i := range f {
		f[i] = max(0, float32(r.NormFloat64()))
	}
	b.ResetTimer()
	for range b.N {
		m.distances(f)
	}
}

package infer_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/netdef"
)

// BenchmarkMemoryDistances times the localisation graph's comparison alone
// (netdef.MemoryDistanceGraph: every cell of a 256×256 input against the
// shared entries) on ONNX Runtime with 2 threads, float32 against int8,
// for the previous default's 256 shared entries and the current 6,144.
func BenchmarkMemoryDistances(b *testing.B) {
	rt := infertest.Runtime(b)
	const d = 384
	spec := netdef.MemorySpec{Height: 256, Width: 256, Layers: []int{2, 3}, Stride: 8, D: d}
	r := rand.New(rand.NewPCG(1, 2))
	for _, global := range []int{256, 6144} {
		entries := make([]float32, global*d)
		for i := range entries {
			entries[i] = float32(r.IntN(128)) / 64 // int8 steps of 1/64: exact either way
		}
		for _, int8 := range []bool{false, true} {
			b.Run(fmt.Sprintf("global=%d/int8=%v", global, int8), func(b *testing.B) {
				s := spec
				s.Global, s.GlobalInt8, s.GlobalScale = global, int8, 1.0/64
				g, err := netdef.MemoryDistanceGraph(s, nil, entries)
				if err != nil {
					b.Fatal(err)
				}
				sess, err := rt.NewSession(g, infer.SessionOptions{IntraOpThreads: 2})
				if err != nil {
					b.Fatal(err)
				}
				defer sess.Close()
				in, err := sess.Input("features")
				if err != nil {
					b.Fatal(err)
				}
				for i := range in {
					in[i] = r.Float32() * 2
				}
				for b.Loop() {
					if err := sess.Run(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

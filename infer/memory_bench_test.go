package infer_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/onnx"
)

// BenchmarkMemoryDistances times the localisation graph's comparison alone
// (netdef.MemoryDistanceGraph: every cell of a 256×256 input against the
// shared entries) on ONNX Runtime with 2 threads, float32 against int8,
// for the previous default's 256 shared entries and the current 6,144, and
// int8 on ONNX Runtime's own operators against the fused NearestEntry
// operator (int8=fused, where this CPU supports it).
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
		for _, variant := range []string{"false", "true", "fused"} {
			int8 := variant != "false"
			b.Run(fmt.Sprintf("global=%d/int8=%s", global, variant), func(b *testing.B) {
				if variant == "fused" && !infer.NearestEntrySupported() {
					b.Skip("no AVX-512 VNNI on this CPU")
				}
				s := spec
				s.Global, s.GlobalInt8, s.GlobalScale = global, int8, 1.0/64
				g, err := netdef.MemoryDistanceGraph(s, nil, entries)
				if err != nil {
					b.Fatal(err)
				}
				sess, err := rt.NewSession(g, infer.SessionOptions{IntraOpThreads: 2, StandardOperators: variant != "fused"})
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

// BenchmarkMemoryDistancesChunked times the int8 comparison with the 6,144
// shared entries split into chunks (each its own DynamicQuantizeLinear →
// MatMulInteger pattern, which ONNX Runtime fuses, then ReduceMin; a Min
// of the chunks' minima), the standard-operator way to keep each chunk's
// [cells × entries/chunks] result in cache, against chunks=1 (the
// shipped graph's comparison, without ‖x‖² and the square root).
func BenchmarkMemoryDistancesChunked(b *testing.B) {
	rt := infertest.Runtime(b)
	const d, global, cells = 384, 6144, 1024
	r := rand.New(rand.NewPCG(1, 2))
	q := make([]int8, d*global)
	for i := range q {
		q[i] = int8(r.IntN(255) - 127)
	}
	sq := make([]float32, global)
	for i := range sq {
		sq[i] = r.Float32() * 100
	}
	for _, chunks := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("chunks=%d", chunks), func(b *testing.B) {
			g := onnx.NewGraph("chunked")
			rows := g.Input("rows", onnx.Float, cells, d)
			step := g.Initializer("step", []int64{1}, []float32{-2.0 / 64})
			var minima []string
			per := global / chunks
			for k := range chunks {
				w := make([]int8, d*per)
				for c := range d {
					copy(w[c*per:(c+1)*per], q[c*global+k*per:c*global+(k+1)*per])
				}
				wName := g.InitializerInt8(fmt.Sprintf("w%d", k), []int64{d, int64(per)}, w)
				sqName := g.Initializer(fmt.Sprintf("sq%d", k), []int64{int64(per)}, sq[k*per:(k+1)*per])
				xq := g.Node("DynamicQuantizeLinear", []string{rows}, []string{"", "", ""})
				prod := g.Op("MatMulInteger", []string{xq[0], wName, xq[2], g.InitializerInt8(fmt.Sprintf("zp%d", k), nil, []int8{0})})
				prod = g.Op("Cast", []string{prod}, onnx.AttrInt("to", int64(onnx.Float)))
				prod = g.Op("Mul", []string{prod, g.Op("Mul", []string{xq[1], step})})
				prod = g.Op("Add", []string{prod, sqName})
				minima = append(minima, g.Op("ReduceMin", []string{prod}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 1)))
			}
			out := minima[0]
			if chunks > 1 {
				out = g.Op("Min", minima)
			}
			g.Output(g.Rename(out, "nearest"), onnx.Float, cells, 1)
			model, err := g.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			sess, err := rt.NewSession(model, infer.SessionOptions{IntraOpThreads: 2, StandardOperators: true})
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Close()
			in, err := sess.Input("rows")
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

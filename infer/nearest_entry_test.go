package infer_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// TestNearestEntryAgrees checks that the fused NearestEntry operator gives
// the standard int8 graph's distances (netdef.MemoryDistanceGraph on ONNX
// Runtime's own operators) on random features and entries, for entry,
// channel and cell counts that fill the kernel's blocks and for ones that
// do not.
func TestNearestEntryAgrees(t *testing.T) {
	if !infer.NearestEntrySupported() {
		t.Skip("this CPU has no AVX-512 VNNI: CPU sessions keep the standard operators")
	}
	rt := infertest.Runtime(t)
	for _, c := range []struct {
		d, global, h, w int
	}{
		{384, 6144, 256, 256},
		{384, 100, 256, 256},
		{30, 70, 48, 80},
		{30, 70, 40, 56}, // 35 cells: not whole groups of 4 nor of 16
	} {
		t.Run(fmt.Sprintf("D=%d/G=%d/%dx%d", c.d, c.global, c.h, c.w), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.d), uint64(c.global)))
			const step = 1.0 / 64
			entries := make([]float32, c.global*c.d)
			for i := range entries {
				entries[i] = float32(r.IntN(255)-127) * step * (1 + 0.3*r.Float32()) // not on the int8 grid
			}
			spec := netdef.MemorySpec{Height: c.h, Width: c.w, Layers: []int{2, 3}, Stride: 8, D: c.d,
				Global: c.global, GlobalInt8: true, GlobalScale: step}
			g, err := netdef.MemoryDistanceGraph(spec, nil, entries)
			if err != nil {
				t.Fatal(err)
			}
			var out [2][]float32
			var features []float32
			for k, standard := range []bool{true, false} {
				sess, err := rt.NewSession(g, infer.SessionOptions{IntraOpThreads: 2, StandardOperators: standard})
				if err != nil {
					t.Fatal(err)
				}
				defer sess.Close()
				if sess.NearestEntry() == standard {
					t.Fatalf("StandardOperators %v: NearestEntry() = %v", standard, sess.NearestEntry())
				}
				in, err := sess.Input("features")
				if err != nil {
					t.Fatal(err)
				}
				rf := rand.New(rand.NewPCG(7, 8))
				for i := range in {
					in[i] = rf.Float32()*1.5 - 0.2
				}
				// The range's ends last, where the vector loops leave a tail.
				in[len(in)-1], in[len(in)-2] = 2.5, -0.62 // zero point 50.67: rounding, not truncation
				features = append(features[:0], in...)
				if err := sess.Run(); err != nil {
					t.Fatal(err)
				}
				o, err := sess.Output("distances")
				if err != nil {
					t.Fatal(err)
				}
				out[k] = append([]float32(nil), o...)
			}
			checkDistances(t, features, out[0], out[1])
		})
	}
}

// TestNearestEntryClustered checks the fused operator on data shaped like
// a trained memory's: entries in clusters and off the int8 grid (so that
// the float ‖g‖² the graph adds differs from the int8 entry's), features
// near entries, neighbouring cells alike; there d² = ‖x‖² + min(‖g‖² −
// 2x·g) cancels most of its terms.
func TestNearestEntryClustered(t *testing.T) {
	if !infer.NearestEntrySupported() {
		t.Skip("this CPU has no AVX-512 VNNI: CPU sessions keep the standard operators")
	}
	rt := infertest.Runtime(t)
	const d, clusters, per, step = 64, 16, 64, 1.0 / 32
	r := rand.New(rand.NewPCG(5, 6))
	centres := make([][]float32, clusters)
	for k := range centres {
		centres[k] = make([]float32, d)
		for c := range centres[k] {
			centres[k][c] = float32(60 + r.IntN(40))
		}
	}
	// Entries, their clusters interleaved so that the kernel must find
	// them, each value 0.45 steps below a whole step: int8 rounds it up, so
	// that the float ‖g‖² the graph adds is smaller than the int8 entry's
	// (the bounds must allow for it).
	entries := make([]float32, clusters*per*d)
	for j := range clusters * per {
		for c := range d {
			entries[j*d+c] = (centres[j%clusters][c] + float32(r.IntN(41)-20) - 0.45) * step
		}
	}
	spec := netdef.MemorySpec{Height: 256, Width: 256, Layers: []int{2, 3}, Stride: 8, D: d,
		Global: clusters * per, GlobalInt8: true, GlobalScale: step}
	g, err := netdef.MemoryDistanceGraph(spec, nil, entries)
	if err != nil {
		t.Fatal(err)
	}
	var out [2][]float32
	var features []float32
	for k, standard := range []bool{true, false} {
		sess, err := rt.NewSession(g, infer.SessionOptions{IntraOpThreads: 2, StandardOperators: standard})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		in, err := sess.Input("features")
		if err != nil {
			t.Fatal(err)
		}
		cells := len(in) / d
		rf := rand.New(rand.NewPCG(9, 10))
		var near []float32
		for p := range cells {
			if p%4 == 0 { // neighbouring cells look alike, as in an image
				near = entries[rf.IntN(clusters*per)*d:]
			}
			for c := range d {
				in[c*cells+p] = near[c] + float32(rf.NormFloat64()*2*step)
			}
		}
		features = append(features[:0], in...)
		if err := sess.Run(); err != nil {
			t.Fatal(err)
		}
		o, err := sess.Output("distances")
		if err != nil {
			t.Fatal(err)
		}
		out[k] = append([]float32(nil), o...)
	}
	checkDistances(t, features, out[0], out[1])
}

// checkDistances fails t unless the fused distances agree with the
// standard ones: squared, within 1e-5 of the cell's ‖x‖² (at least 1),
// the scale of the float rounding both make (d² = ‖x‖² + min(‖g‖² − 2x·g)
// cancels terms of that size). features are [D][cells].
func checkDistances(t *testing.T, features, standard, fused []float32) {
	t.Helper()
	cells := len(standard)
	var worst float64
	for p := range cells {
		var x2 float64
		for c := p; c < len(features); c += cells {
			x2 += float64(features[c]) * float64(features[c])
		}
		a, b := float64(standard[p]), float64(fused[p])
		worst = max(worst, math.Abs(a*a-b*b)/max(1, x2))
	}
	t.Logf("worst difference of the squared distances %.2g (of ‖x‖²) over %d cells", worst, cells)
	if !(worst <= 1e-5) {
		t.Errorf("fused squared distances differ from the standard graph's by up to %.3g of ‖x‖², want ≤ 1e-5", worst)
	}
}

// TestNearestEntryLocalizeGraph checks the rewrite on a whole localisation
// graph (the training default's architecture: backbone, features, 6,144
// int8 shared entries, upsampling and blur, as `inspectd bench` builds it):
// the fused session's heatmap and score are the standard one's.
func TestNearestEntryLocalizeGraph(t *testing.T) {
	if !infer.NearestEntrySupported() {
		t.Skip("this CPU has no AVX-512 VNNI: CPU sessions keep the standard operators")
	}
	rt := infertest.Runtime(t)
	dir := t.TempDir()
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{NoAlign: true, SharedEntries: netdef.DefaultSharedEntries, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(filepath.Join(dir, bundle.LocalizeGraphName))
	if err != nil {
		t.Fatal(err)
	}
	var heat [2][]float32
	var score [2]float32
	for k, standard := range []bool{true, false} {
		sess, err := rt.NewSession(model, infer.SessionOptions{IntraOpThreads: 2, StandardOperators: standard})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if sess.NearestEntry() == standard {
			t.Fatalf("StandardOperators %v: NearestEntry() = %v", standard, sess.NearestEntry())
		}
		in, err := sess.Input(bundle.InputImage)
		if err != nil {
			t.Fatal(err)
		}
		for i := range in {
			in[i] = float32((i*37)%251) / 251
		}
		if err := sess.Run(); err != nil {
			t.Fatal(err)
		}
		h, err := sess.Output("heatmap")
		if err != nil {
			t.Fatal(err)
		}
		s, err := sess.Output("score")
		if err != nil {
			t.Fatal(err)
		}
		heat[k], score[k] = append([]float32(nil), h...), s[0]
	}
	var worst float64
	for i := range heat[0] {
		worst = max(worst, math.Abs(float64(heat[0][i]-heat[1][i])))
	}
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := infer.NewEngine(rt, b, infer.EngineOptions{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !e.NearestEntry() {
		t.Error("an engine of this bundle does not use the fused operator")
	}
	t.Logf("score %.6f standard, %.6f fused; worst heatmap difference %.2g", score[0], score[1], worst)
	if worst > 1e-5 || math.Abs(float64(score[0]-score[1])) > 1e-5 || math.IsNaN(float64(score[1])) {
		t.Errorf("fused heatmap differs by up to %.3g and score by %.3g from the standard graph's, want ≤ 1e-5", worst, math.Abs(float64(score[0]-score[1])))
	}
}

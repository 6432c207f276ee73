//go:build workstation

package alm

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/inspectd/inspectd/models/train/gocompute"
)

func TestRandomOrthogonal(t *testing.T) {
	const d, n = 16, 40
	p := randomOrthogonal(rand.New(rand.NewPCG(3, 4)), d, n)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			var dot float64
			for k := 0; k < n; k++ {
				dot += p[i*n+k] * p[j*n+k]
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(dot-want) > 1e-12 {
				t.Fatalf("row %d · row %d = %g, want %g", i, j, dot, want)
			}
		}
	}
}

func TestJacobiEigen(t *testing.T) {
	// A = Q·diag(λ)·Qᵀ with known λ.
	const n = 12
	q := randomOrthogonal(rand.New(rand.NewPCG(5, 6)), n, n)
	lambda := []float64{9, 7.5, 6, 5, 4, 3.2, 2.5, 2, 1.5, 1, 0.5, 0.1}
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			for k := 0; k < n; k++ {
				a[i*n+j] += q[k*n+i] * lambda[k] * q[k*n+j]
			}
		}
	}
	orig := slices.Clone(a)
	vals, vecs := jacobiEigen(a, n)
	got := slices.Clone(vals)
	slices.Sort(got)
	want := slices.Clone(lambda)
	slices.Sort(want)
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("eigenvalues %v, want %v", got, want)
		}
	}
	// A·v = λ·v for every column v.
	for c := 0; c < n; c++ {
		for i := 0; i < n; i++ {
			var s float64
			for k := 0; k < n; k++ {
				s += orig[i*n+k] * vecs[k*n+c]
			}
			if math.Abs(s-vals[c]*vecs[i*n+c]) > 1e-9 {
				t.Fatalf("column %d is not an eigenvector", c)
			}
		}
	}
}

func TestPCADirections(t *testing.T) {
	// Samples spread mostly along axis 2, then axis 0: the top-2 directions
	// span exactly those axes.
	r := rand.New(rand.NewPCG(7, 8))
	var samples [][]float32
	mu := make([]float64, 5)
	for k := 0; k < 4000; k++ {
		s := []float32{float32(3 * r.NormFloat64()), float32(0.1 * r.NormFloat64()), float32(10 * r.NormFloat64()), 0, float32(0.2 * r.NormFloat64())}
		samples = append(samples, s)
	}
	p := pcaDirections(samples, mu, 2)
	if math.Abs(math.Abs(p[0*5+2])-1) > 1e-3 || math.Abs(math.Abs(p[1*5+0])-1) > 1e-3 {
		t.Fatalf("PCA directions %v, want ±e2 then ±e0", p)
	}
}

// TestHingeLoss checks eq. 5 on hand-made vectors: its value, and that a
// gradient step moves normal locations towards their centre and
// defect locations closer than δ away from it, and leaves defect locations
// beyond δ alone.
func TestHingeLoss(t *testing.T) {
	const delta = 0.1
	// Three locations in 2-D, centre (1, 0) for all.
	// 0: normal, at 60° (dist 0.25); 1: defect at 30° (dist ≈ 0.067 < δ);
	// 2: defect at 90° (dist 0.5 > δ).
	ang := []float64{math.Pi / 3, math.Pi / 6, math.Pi / 2}
	fm := make([]float32, 0, 6)
	for _, a := range ang {
		fm = append(fm, float32(math.Cos(a)), float32(math.Sin(a)))
	}
	c := []float32{1, 0, 1, 0, 1, 0}
	mask := []float32{0, 1, 1}
	backend, err := gocompute.New()
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Finalize()
	outs, err := graph.ExecOnceN(backend, func(in []*graph.Node) []*graph.Node {
		loss, normal, defect := mapLoss(in[0], in[1], in[2], delta)
		return append([]*graph.Node{loss, normal, defect}, graph.Gradient(loss, in[0])...)
	}, tensors.FromFlatDataAndDimensions(fm, 3, 2), tensors.FromFlatDataAndDimensions(c, 3, 2), tensors.FromFlatDataAndDimensions(mask, 3))
	if err != nil {
		t.Fatal(err)
	}
	dist := func(a float64) float64 { return 0.5 * (1 - math.Cos(a)) }
	wantNormal := dist(ang[0]) / 3
	wantDefect := (delta - dist(ang[1])) / 3 // location 2 is beyond δ
	got := []float64{float64(tensors.ToScalar[float32](outs[0])), float64(tensors.ToScalar[float32](outs[1])), float64(tensors.ToScalar[float32](outs[2]))}
	want := []float64{wantNormal + wantDefect, wantNormal, wantDefect}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-6 {
			t.Fatalf("loss, normal, defect = %v, want %v", got, want)
		}
	}
	g := tensors.MustCopyFlatData[float32](outs[3])
	// Angular component of the gradient: d/dθ of the loss at each location
	// is ∇·(−sin θ, cos θ); descent changes θ by −η·that.
	dTheta := func(i int) float64 {
		return float64(g[2*i])*-math.Sin(ang[i]) + float64(g[2*i+1])*math.Cos(ang[i])
	}
	if dTheta(0) <= 0 {
		t.Errorf("normal location: dL/dθ = %g, want > 0 (descent turns it towards the centre)", dTheta(0))
	}
	if dTheta(1) >= 0 {
		t.Errorf("defect location within δ: dL/dθ = %g, want < 0 (descent turns it away)", dTheta(1))
	}
	if g[4] != 0 || g[5] != 0 {
		t.Errorf("defect location beyond δ: gradient (%g, %g), want 0", g[4], g[5])
	}
}

func BenchmarkPCA448(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	var samples [][]float32
	for k := 0; k < 3072; k++ {
		s := make([]float32, mixedChannels)
		for i := range s {
			s[i] = float32(r.NormFloat64() * float64(1+i%7))
		}
		samples = append(samples, s)
	}
	mu := make([]float64, mixedChannels)
	for i := 0; i < b.N; i++ {
		pcaDirections(samples, mu, 128)
	}
}

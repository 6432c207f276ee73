package infer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sbinet/npyio/npy"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/netdef"
)

// Golden data made by testdata/make_golden.py (pure PyTorch, float64).
const goldenH, goldenW, goldenD = 48, 64, 16

func golden(t testing.TB, name string) ([]float32, []int) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := npy.NewReader(f)
	if err != nil {
		t.Fatalf("testdata/%s.npy: %v", name, err)
	}
	var data []float32
	if err := r.Read(&data); err != nil {
		t.Fatalf("testdata/%s.npy: %v", name, err)
	}
	return data, r.Header.Descr.Shape
}

// realBackbone loads the shared ResNet-18 weights and checks they are the ones
// the golden files were made from.
func realBackbone(t testing.TB) *backbone.Weights {
	t.Helper()
	dir, err := backbone.Locate()
	if err != nil {
		t.Fatalf("parity tests need the real backbone weights: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "conv1.weight.npy"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "backbone.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); !strings.HasPrefix(string(want), got) {
		t.Fatalf("%s/conv1.weight.npy has SHA-256 %s but testdata was made from %s: rerun testdata/make_golden.py", dir, got, want)
	}
	w, err := backbone.LoadNPYDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// compare fails when max |got − want| exceeds tol, reporting the worst index.
func compare(t testing.TB, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	worst, at := 0.0, 0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if worst > tol || math.IsNaN(worst) {
		t.Errorf("%s: max abs error %.3g at %d (got %g, want %g), tolerance %g", name, worst, at, got[at], want[at], tol)
	} else {
		t.Logf("%s: max abs error %.3g", name, worst)
	}
}

func TestBackboneParity(t *testing.T) {
	rt := openRuntime(t)
	w := realBackbone(t)
	model, err := netdef.BackboneGraph(w, goldenH, goldenW)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, rt, model, SessionOptions{IntraOpThreads: 2})
	img, _ := golden(t, "input")
	in, err := s.Input("image")
	if err != nil {
		t.Fatal(err)
	}
	copy(in, img)
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"layer1", "layer2", "layer3", "mixed"} {
		want, shape := golden(t, name)
		got, err := s.Output(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range s.Outputs() {
			if o.Name == name && !slices.Equal(toInt64(shape), o.Shape) {
				t.Errorf("%s: shape %v, golden %v", name, o.Shape, shape)
			}
		}
		compare(t, name, got, want, 1e-4)
	}
}

func toInt64(s []int) []int64 {
	out := make([]int64, len(s))
	for i, v := range s {
		out[i] = int64(v)
	}
	return out
}

func TestLocalizeParity(t *testing.T) {
	rt := openRuntime(t)
	w := realBackbone(t)
	var head netdef.MappingWeights
	in := netdef.MixedChannels
	for i := 0; i < 2; i++ {
		wt, _ := golden(t, fmt.Sprintf("head%d_weight", i))
		b, _ := golden(t, fmt.Sprintf("head%d_bias", i))
		head.Layers = append(head.Layers, netdef.ConvWeights{Out: goldenD, In: in, Kernel: 1, Weight: wt, Bias: b})
		in = goldenD
	}
	centre, _ := golden(t, "centre")
	model, err := netdef.LocalizeGraph(netdef.LocalizeSpec{Height: goldenH, Width: goldenW, D: goldenD}, w, head, centre)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, rt, model, SessionOptions{IntraOpThreads: 2})
	img, _ := golden(t, "input")
	x, _ := s.Input("image")
	copy(x, img)
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"heatmap", "score"} {
		want, _ := golden(t, name)
		got, err := s.Output(name)
		if err != nil {
			t.Fatal(err)
		}
		compare(t, name, got, want, 1e-4)
	}
}

// alignReference is a direct Go implementation of the network documented on
// netdef.AlignWeights, used to check the emitted graph.
func alignReference(w netdef.AlignWeights, c, h, wd int, img, tpl []float32) [3]float32 {
	features := func(x []float32) ([]float32, int, int, int) {
		ch, hh, ww := c, h, wd
		for _, l := range w.Features {
			x, hh, ww = conv2d(x, ch, hh, ww, l, 2, 1)
			ch = l.Out
			relu(x)
		}
		return x, ch, hh, ww
	}
	a, ch, hh, ww := features(img)
	b, _, _, _ := features(tpl)
	x := append(slices.Clone(a), b...)
	ch *= 2
	for _, l := range w.Regress {
		x, hh, ww = conv2d(x, ch, hh, ww, l, 2, 1)
		ch = l.Out
		relu(x)
	}
	pooled := make([]float32, ch)
	for k := range pooled {
		var s float64
		for _, v := range x[k*hh*ww : (k+1)*hh*ww] {
			s += float64(v)
		}
		pooled[k] = float32(s / float64(hh*ww))
	}
	hid := dense(pooled, w.Hidden)
	relu(hid)
	out := dense(hid, w.Out)
	return [3]float32{out[0], out[1], out[2]}
}

func conv2d(x []float32, c, h, w int, l netdef.ConvWeights, stride, pad int) ([]float32, int, int) {
	k := l.Kernel
	oh, ow := (h+2*pad-k)/stride+1, (w+2*pad-k)/stride+1
	out := make([]float32, l.Out*oh*ow)
	for o := 0; o < l.Out; o++ {
		for y := 0; y < oh; y++ {
			for xx := 0; xx < ow; xx++ {
				s := float64(l.Bias[o])
				for i := 0; i < c; i++ {
					for ky := 0; ky < k; ky++ {
						iy := y*stride - pad + ky
						if iy < 0 || iy >= h {
							continue
						}
						for kx := 0; kx < k; kx++ {
							ix := xx*stride - pad + kx
							if ix < 0 || ix >= w {
								continue
							}
							s += float64(l.Weight[((o*c+i)*k+ky)*k+kx]) * float64(x[(i*h+iy)*w+ix])
						}
					}
				}
				out[(o*oh+y)*ow+xx] = float32(s)
			}
		}
	}
	return out, oh, ow
}

func dense(x []float32, d netdef.DenseWeights) []float32 {
	out := make([]float32, d.Out)
	for o := range out {
		s := float64(d.Bias[o])
		for i, v := range x {
			s += float64(d.Weight[o*d.In+i]) * float64(v)
		}
		out[o] = float32(s)
	}
	return out
}

func relu(x []float32) {
	for i, v := range x {
		if v < 0 {
			x[i] = 0
		}
	}
}

func TestAlignGraph(t *testing.T) {
	rt := openRuntime(t)
	r := rand.New(rand.NewPCG(1, 2))
	randomise := func(xs []float32, scale float64) {
		for i := range xs {
			xs[i] = float32(r.NormFloat64() * scale)
		}
	}
	tests := []struct {
		name  string
		spec  netdef.AlignSpec
		setup func(w *netdef.AlignWeights)
		// want, if set, is the exact expected output; otherwise alignReference is.
		want *[3]float32
	}{
		{"zero-initialised last layer is identity", netdef.AlignSpec{Channels: 1, Height: 128, Width: 128}, func(*netdef.AlignWeights) {}, &[3]float32{0, 0, 0}},
		{"bias only", netdef.AlignSpec{Channels: 3, Height: 64, Width: 64}, func(w *netdef.AlignWeights) {
			copy(w.Out.Bias, []float32{0.125, -0.25, 0.5})
		}, &[3]float32{0.125, -0.25, 0.5}},
		{"trained-like weights grey", netdef.AlignSpec{Channels: 1, Height: 64, Width: 96}, func(w *netdef.AlignWeights) {
			randomise(w.Out.Weight, 0.1)
			randomise(w.Out.Bias, 0.1)
			for i := range w.Features {
				randomise(w.Features[i].Bias, 0.05)
			}
		}, nil},
		{"trained-like weights RGB", netdef.AlignSpec{Channels: 3, Height: 48, Width: 32}, func(w *netdef.AlignWeights) {
			randomise(w.Out.Weight, 0.1)
			randomise(w.Hidden.Bias, 0.1)
			randomise(w.Regress[1].Bias, 0.1)
		}, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := netdef.NewAlignWeights(uint64(i+10), tc.spec.Channels)
			tc.setup(&w)
			model, err := netdef.AlignGraph(tc.spec, w)
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, rt, model, SessionOptions{IntraOpThreads: 1})
			img, _ := s.Input("image")
			tpl, _ := s.Input("template")
			for j := range img {
				img[j] = float32(0.5 + 0.5*math.Sin(float64(j)*0.37))
				tpl[j] = float32(0.5 + 0.5*math.Cos(float64(j)*0.11))
			}
			if err := s.Run(); err != nil {
				t.Fatal(err)
			}
			got, _ := s.Output("transform")
			if tc.want != nil {
				if !slices.Equal(got, tc.want[:]) {
					t.Fatalf("transform = %v, want exactly %v", got, *tc.want)
				}
				return
			}
			ref := alignReference(w, tc.spec.Channels, tc.spec.Height, tc.spec.Width, img, tpl)
			t.Logf("transform %v, reference %v", got, ref)
			compare(t, "transform", got, ref[:], 1e-5)
			if ref == [3]float32{} {
				t.Fatal("reference output is zero: the case checks nothing")
			}
			// Image and template play different roles (concat order).
			swapped := alignReference(w, tc.spec.Channels, tc.spec.Height, tc.spec.Width, tpl, img)
			if swapped == ref {
				t.Fatal("swapping image and template does not change the reference output")
			}
		})
	}
}

// BenchmarkBackbone measures the backbone graph (to layer3 + mixed) at 256×256
// on 2 intra-op threads. It uses the real weights when found, else random ones
// (same cost).
func BenchmarkBackbone(b *testing.B) {
	rt := openRuntime(b)
	w := backbone.Random(1)
	if dir, err := backbone.Locate(); err == nil {
		if real, err := backbone.LoadNPYDir(dir); err == nil {
			w = real
		}
	}
	model, err := netdef.BackboneGraph(w, 256, 256)
	if err != nil {
		b.Fatal(err)
	}
	s := newSession(b, rt, model, SessionOptions{IntraOpThreads: 2})
	in, _ := s.Input("image")
	for i := range in {
		in[i] = float32(i%251) / 251
	}
	if err := s.Run(); err != nil { // warm-up
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

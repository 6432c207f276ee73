package netdef

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/onnx"
)

func info(t *testing.T, model []byte, err error) *onnx.ModelInfo {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.ReadModelInfo(model)
	if err != nil {
		t.Fatal(err)
	}
	if m.Opsets[""] != 17 || len(m.Opsets) != 1 {
		t.Errorf("opsets %v, want only ai.onnx 17", m.Opsets)
	}
	for op := range m.Ops {
		if !slices.Contains(AllowedOps(), op) {
			t.Errorf("operator %s is not in AllowedOps", op)
		}
	}
	return m
}

func dims(vs []onnx.ValueInfo) map[string][]int64 {
	out := map[string][]int64{}
	for _, v := range vs {
		out[v.Name] = v.Dims
	}
	return out
}

func TestBackboneGraphShapes(t *testing.T) {
	w := backbone.Random(1)
	tests := []struct{ h, w int }{{256, 256}, {64, 96}, {512, 1408}, {16, 32}}
	for _, tc := range tests {
		model, err := BackboneGraph(w, tc.h, tc.w)
		m := info(t, model, err)
		h, wd := int64(tc.h), int64(tc.w)
		want := map[string][]int64{
			"layer1": {1, 64, h / 4, wd / 4}, "layer2": {1, 128, h / 8, wd / 8},
			"layer3": {1, 256, h / 16, wd / 16}, "mixed": {1, 448, h / 4, wd / 4},
		}
		if got := dims(m.Outputs); !reflect.DeepEqual(got, want) {
			t.Errorf("%dx%d outputs %v, want %v", tc.h, tc.w, got, want)
		}
		if got := dims(m.Inputs); !reflect.DeepEqual(got, map[string][]int64{"image": {1, 3, h, wd}}) {
			t.Errorf("%dx%d inputs %v", tc.h, tc.w, got)
		}
		if m.Ops["Conv"] != 15 || m.Ops["Relu"] != 13 || m.Ops["Resize"] != 2 || m.Ops["Concat"] != 1 || m.Ops["MaxPool"] != 1 {
			t.Errorf("%dx%d op counts %v", tc.h, tc.w, m.Ops)
		}
	}
}

func TestGraphErrors(t *testing.T) {
	bb := backbone.Random(1)
	head := RandomMapping(1, 8, 2)
	okCentre := make([]float32, 8*12*16)
	badBB := backbone.Random(1)
	badBB.Tensors = badBB.Tensors[:10]
	memSpec := MemorySpec{Height: 32, Width: 32, Stride: 8, D: 448, Entries: 2, Global: 3, Scale: 1, BlurSigma: 1}
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"backbone not multiple of 16", func() error { _, err := BackboneGraph(bb, 64, 100); return err }, "64×100"},
		{"backbone truncated weights", func() error { _, err := BackboneGraph(badBB, 64, 64); return err }, "10 tensors, want 30"},
		{"backbone nil weights", func() error { _, err := BackboneGraph(nil, 64, 64); return err }, "no weights"},
		{"localize centre size", func() error {
			_, err := LocalizeGraph(LocalizeSpec{Height: 48, Width: 64, D: 8}, bb, head, okCentre[1:])
			return err
		}, "centre has 1535 values, want"},
		{"localize head width", func() error {
			_, err := LocalizeGraph(LocalizeSpec{Height: 48, Width: 64, D: 16}, bb, head, make([]float32, 16*12*16))
			return err
		}, "mapping net layer 0: conv 448→8 k1, want 448→16 k1"},
		{"localize blur too wide", func() error {
			_, err := LocalizeGraph(LocalizeSpec{Height: 16, Width: 64, D: 8, BlurSigma: 6}, bb, head, make([]float32, 8*4*16))
			return err
		}, "blur radius 18"},
		{"localize negative sigma", func() error {
			_, err := LocalizeGraph(LocalizeSpec{Height: 48, Width: 64, D: 8, BlurSigma: -1}, bb, head, okCentre)
			return err
		}, "BlurSigma = -1"},
		{"localize empty head", func() error {
			_, err := LocalizeGraph(LocalizeSpec{Height: 48, Width: 64, D: 8}, bb, MappingWeights{}, okCentre)
			return err
		}, "no layers"},
		{"memory bank size", func() error {
			_, err := MemoryGraph(memSpec, bb, ConvWeights{}, make([]float32, 4*4*2*448-1), nil)
			return err
		}, "bank has 14335 values, want gridH·gridW·K·D = 16·2·448 = 14336"},
		{"memory global size", func() error {
			_, err := MemoryGraph(memSpec, bb, ConvWeights{}, make([]float32, 4*4*2*448), make([]float32, 448))
			return err
		}, "448 global values, want G·D = 3·448 = 1344"},
		{"memory negative global", func() error {
			spec := memSpec
			spec.Global = -1
			_, err := MemoryGraph(spec, bb, ConvWeights{}, make([]float32, 4*4*2*448), nil)
			return err
		}, "2 entries per location and -1 global ones, want D > 0 and entries of either kind"},
		{"align channels", func() error {
			_, err := AlignGraph(AlignSpec{Channels: 2, Height: 128, Width: 128}, NewAlignWeights(1, 2))
			return err
		}, "2 channels"},
		{"align weights for other channels", func() error {
			_, err := AlignGraph(AlignSpec{Channels: 3, Height: 128, Width: 128}, NewAlignWeights(1, 1))
			return err
		}, "align N_P conv 0: conv 1→16 k3, want 3→16 k3"},
		{"align size", func() error {
			_, err := AlignGraph(AlignSpec{Channels: 1, Height: 120, Width: 128}, NewAlignWeights(1, 1))
			return err
		}, "120×128"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want containing %q", err, tc.want)
			}
		})
	}
}

// TestMemoryGraphShapes: the memory graph's outputs, and one MatMul and
// ReduceMin more with global entries than without.
func TestMemoryGraphShapes(t *testing.T) {
	bb := backbone.Random(2)
	for _, global := range []int{0, 5} {
		spec := MemorySpec{Height: 64, Width: 48, Stride: 8, D: 448, Entries: 3, Global: global, Scale: 1}
		model, err := MemoryGraph(spec, bb, ConvWeights{}, make([]float32, 8*6*3*448), make([]float32, global*448))
		m := info(t, model, err)
		want := map[string][]int64{"heatmap": {1, 1, 64, 48}, "score": {1}}
		if got := dims(m.Outputs); !reflect.DeepEqual(got, want) {
			t.Errorf("global %d: outputs %v, want %v", global, got, want)
		}
		extra := 0
		if global > 0 {
			extra = 1
		}
		// The nearest-entry search, then upsampling and blur (two MatMuls).
		if m.Ops["MatMul"] != 3+extra || m.Ops["ReduceMin"] != 1+extra || m.Ops["Min"] != extra {
			t.Errorf("global %d: op counts %v", global, m.Ops)
		}
	}
}

func TestLocalizeGraphShapes(t *testing.T) {
	bb := backbone.Random(2)
	for _, tc := range []struct{ h, w, d, layers int }{{48, 64, 8, 2}, {256, 256, 128, 3}, {64, 32, 16, 1}} {
		centre := make([]float32, tc.d*tc.h/4*tc.w/4)
		model, err := LocalizeGraph(LocalizeSpec{Height: tc.h, Width: tc.w, D: tc.d}, bb, RandomMapping(3, tc.d, tc.layers), centre)
		m := info(t, model, err)
		want := map[string][]int64{"heatmap": {1, 1, int64(tc.h), int64(tc.w)}, "score": {1}}
		if got := dims(m.Outputs); !reflect.DeepEqual(got, want) {
			t.Errorf("%+v outputs %v, want %v", tc, got, want)
		}
		// Backbone 15 convs, N_M's first layer split in 3 (see emitFirstMapping), the
		// other N_M layers, and the two channel sums of the cosine; no Concat
		// (F_Mixed is never built); upsampling and blur are two MatMuls.
		if m.Ops["Conv"] != 15+3+tc.layers-1+2 || m.Ops["Relu"] != 13+tc.layers-1 || m.Ops["MatMul"] != 2 || m.Ops["Resize"] != 2 || m.Ops["Concat"] != 0 {
			t.Errorf("%+v op counts %v", tc, m.Ops)
		}
	}
}

func TestAlignGraphShapes(t *testing.T) {
	for _, tc := range []AlignSpec{{1, 128, 128}, {3, 64, 160}} {
		w := NewAlignWeights(4, tc.Channels)
		model, err := AlignGraph(tc, w)
		m := info(t, model, err)
		in := []int64{1, int64(tc.Channels), int64(tc.Height), int64(tc.Width)}
		if got := dims(m.Inputs); !reflect.DeepEqual(got, map[string][]int64{"image": in, "template": in}) {
			t.Errorf("%+v inputs %v", tc, got)
		}
		if got := dims(m.Outputs); !reflect.DeepEqual(got, map[string][]int64{"transform": {1, 3}}) {
			t.Errorf("%+v outputs %v", tc, got)
		}
		// N_P is shared: 4 weight + 4 bias initializers, used by 8 convs.
		var feat int
		for _, n := range m.Initializers {
			if strings.HasPrefix(n, "features.") {
				feat++
			}
		}
		if feat != 8 || m.Ops["Conv"] != 10 || m.Ops["Gemm"] != 2 {
			t.Errorf("%+v: %d feature initializers, ops %v", tc, feat, m.Ops)
		}
		for _, v := range w.Out.Weight {
			if v != 0 {
				t.Fatal("output layer not zero-initialised")
			}
		}
	}
}

func TestGaussianKernel(t *testing.T) {
	for _, tc := range []struct {
		sigma float64
		taps  int
	}{{4, 25}, {1, 7}, {0.5, 5}, {2.2, 15}} {
		k := GaussianKernel(tc.sigma)
		if len(k) != tc.taps {
			t.Fatalf("σ=%g: %d taps, want %d", tc.sigma, len(k), tc.taps)
		}
		var sum float64
		for i := range k {
			sum += float64(k[i])
			if k[i] != k[len(k)-1-i] {
				t.Fatalf("σ=%g: not symmetric", tc.sigma)
			}
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("σ=%g: sum %g", tc.sigma, sum)
		}
		r := len(k) / 2
		if got, want := float64(k[r+1]/k[r]), math.Exp(-1/(2*tc.sigma*tc.sigma)); math.Abs(got-want) > 1e-6 {
			t.Fatalf("σ=%g: ratio %g, want %g", tc.sigma, got, want)
		}
	}
}

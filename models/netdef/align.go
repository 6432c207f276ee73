package netdef

import (
	"fmt"

	"github.com/inspectd/inspectd/models/onnx"
)

// Layer widths of the IMM regressor.
const (
	// AlignRegressChannels is the width of N_R's two 3×3 stride-2 convs.
	AlignRegressChannels = 128
	// AlignHidden is the width of the hidden dense layer.
	AlignHidden = 64
)

// AlignFeatureChannels returns the output channels of N_P's four 3×3
// stride-2 convs.
func AlignFeatureChannels() [4]int { return [4]int{16, 32, 64, 64} }

// AlignSpec fixes the shape of the IMM regressor.
type AlignSpec struct {
	// Channels is 1 (grey) or 3 (RGB), for both image and template.
	Channels int
	// Height, Width of the low-resolution inputs; multiples of 16 (e.g. 128).
	Height, Width int
}

// AlignWeights is the IMM regressor. N_P (Features, shared by image and
// template): 4× Conv3×3 stride 2 pad 1 + ReLU. N_R: Concat(image features,
// template features) on channels → 2× (Conv3×3 stride 2 pad 1 + ReLU, 128 ch) →
// GlobalAveragePool → Flatten → Hidden (Gemm 128→64) → ReLU → Out (Gemm 64→3).
type AlignWeights struct {
	Features [4]ConvWeights
	Regress  [2]ConvWeights
	Hidden   DenseWeights
	Out      DenseWeights
}

// Validate checks every layer's shape for the given input channel count.
func (a AlignWeights) Validate(channels int) error {
	in := channels
	for i, c := range a.Features {
		if err := c.check(fmt.Sprintf("align N_P conv %d", i), AlignFeatureChannels()[i], in, 3); err != nil {
			return err
		}
		in = AlignFeatureChannels()[i]
	}
	in *= 2
	for i, c := range a.Regress {
		if err := c.check(fmt.Sprintf("align N_R conv %d", i), AlignRegressChannels, in, 3); err != nil {
			return err
		}
		in = AlignRegressChannels
	}
	if err := a.Hidden.check("align hidden dense", AlignHidden, AlignRegressChannels); err != nil {
		return err
	}
	return a.Out.check("align output dense", 3, AlignHidden)
}

// NewAlignWeights returns He-initialised weights for inputs with the given
// channel count, with the output layer zero so the untrained net predicts the
// identity transform (0, 0, 0). Deterministic for a seed.
func NewAlignWeights(seed uint64, channels int) AlignWeights {
	r := newRand(seed)
	var a AlignWeights
	in := channels
	for i, out := range AlignFeatureChannels() {
		a.Features[i] = heConv(r, out, in, 3)
		in = out
	}
	in *= 2
	for i := range a.Regress {
		a.Regress[i] = heConv(r, AlignRegressChannels, in, 3)
		in = AlignRegressChannels
	}
	a.Hidden = heDense(r, AlignHidden, AlignRegressChannels)
	a.Out = DenseWeights{Out: 3, In: AlignHidden, Weight: make([]float32, 3*AlignHidden), Bias: make([]float32, 3)}
	return a
}

// AlignGraph emits the IMM regressor. Inputs "image" and "template", float32
// [1,C,h,w] in [0,1]; output "transform" [1,3] = (tx, ty, θ) as defined by
// [preprocess.AffineMatrix]. N_P is applied to both inputs with the same initializers.
func AlignGraph(spec AlignSpec, w AlignWeights) ([]byte, error) {
	if spec.Channels != 1 && spec.Channels != 3 {
		return nil, fmt.Errorf("align graph: %d channels, want 1 or 3", spec.Channels)
	}
	if err := checkSize("align graph", spec.Height, spec.Width); err != nil {
		return nil, err
	}
	if err := w.Validate(spec.Channels); err != nil {
		return nil, fmt.Errorf("align graph: %w", err)
	}
	g := onnx.NewGraph("align")
	e := emitter{g}
	C, H, W := int64(spec.Channels), int64(spec.Height), int64(spec.Width)
	img := g.Input("image", onnx.Float, 1, C, H, W)
	tpl := g.Input("template", onnx.Float, 1, C, H, W)
	var ws, bs [4]string
	for i, c := range w.Features {
		k := int64(c.Kernel)
		ws[i] = g.Initializer(fmt.Sprintf("features.%d.weight", i), []int64{int64(c.Out), int64(c.In), k, k}, c.Weight)
		bs[i] = g.Initializer(fmt.Sprintf("features.%d.bias", i), []int64{int64(c.Out)}, c.Bias)
	}
	features := func(x string) string {
		for i := range w.Features {
			x = e.relu(e.convShared(x, ws[i], bs[i], 3, 2, 1), "")
		}
		return x
	}
	x := g.Op("Concat", []string{features(img), features(tpl)}, onnx.AttrInt("axis", 1))
	for i, c := range w.Regress {
		x = e.relu(e.conv(x, fmt.Sprintf("regress.%d", i), c, 2, 1), "")
	}
	x = g.Op("Flatten", []string{g.Op("GlobalAveragePool", []string{x})}, onnx.AttrInt("axis", 1))
	x = e.relu(e.gemm(x, "hidden", w.Hidden, ""), "")
	out := e.gemm(x, "out", w.Out, "transform")
	g.Output(out, onnx.Float, 1, 3)
	return g.Marshal()
}

// gemm emits y = x·Wᵀ + b (Gemm with transB=1, PyTorch Linear layout).
func (e emitter) gemm(x, name string, d DenseWeights, out string) string {
	w := e.g.Initializer(name+".weight", []int64{int64(d.Out), int64(d.In)}, d.Weight)
	b := e.g.Initializer(name+".bias", []int64{int64(d.Out)}, d.Bias)
	return e.g.Node("Gemm", []string{x, w, b}, []string{out}, onnx.AttrInt("transB", 1))[0]
}

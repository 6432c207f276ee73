package netdef

import (
	"fmt"
	"math"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/onnx"
)

// DefaultBlurSigma is the heatmap Gaussian blur σ in pixels when LocalizeSpec.BlurSigma is 0.
const DefaultBlurSigma = 4

// CosineEps is added to the norm product in the cosine distance.
const CosineEps = 1e-8

// CosineNormFloor is the smallest ‖F_M‖ used in the cosine distance. A
// mapped feature shorter than this has no meaningful direction: its cosine
// with the centre would be decided by rounding, so the graph and training
// could disagree on such a location by far more than float precision
// (measured once: 2e-3 on an image score). Typical norms are 1 to 10.
const CosineNormFloor = 0.1

// LocalizeSpec fixes the shape of the localisation network.
type LocalizeSpec struct {
	// Height, Width of the model input; independent multiples of 16.
	Height, Width int
	// D is the channel count of F_M and of the centre F_C.
	D int
	// BlurSigma is the σ (pixels) of the Gaussian blur of the heatmap;
	// 0 means DefaultBlurSigma. The kernel has 2·⌈3σ⌉+1 taps, reflect padding.
	BlurSigma float64
}

// MappingWeights is the mapping network N_M: 1×1 convolutions 448→D→…→D with
// bias and ReLU between layers (none after the last).
type MappingWeights struct {
	// Layers in order; Layers[0].In is 448, every Out is D, Kernel is 1.
	Layers []ConvWeights
}

// Validate checks the layer chain for output width d.
func (m MappingWeights) Validate(d int) error {
	if len(m.Layers) == 0 {
		return fmt.Errorf("mapping net: no layers")
	}
	in := MixedChannels
	for i, l := range m.Layers {
		if err := l.check(fmt.Sprintf("mapping net layer %d", i), d, in, 1); err != nil {
			return err
		}
		in = d
	}
	return nil
}

// RandomMapping returns a He-initialised mapping net with the given number of
// layers (≥1) and output width d, deterministic for a seed.
func RandomMapping(seed uint64, d, layers int) MappingWeights {
	r := newRand(seed)
	m := MappingWeights{}
	in := MixedChannels
	for i := 0; i < layers; i++ {
		m.Layers = append(m.Layers, heConv(r, d, in, 1))
		in = d
	}
	return m
}

// GaussianKernel returns the normalised 1-D Gaussian of standard deviation
// sigma with 2·⌈3σ⌉+1 taps. It is [bundle.GaussianKernel], the kernel a
// bundle's Load expects the graph's blur to be built with.
func GaussianKernel(sigma float64) []float32 { return bundle.GaussianKernel(sigma) }

// LocalizeGraph emits the anomaly localisation network. Input "image" float32
// [1,3,H,W] RGB in [0,1]. F_M = N_M(mixed) is compared per location with the
// constant centre F_C (centre, [1,D,H/4,W/4] row-major):
//
//	distance = 0.5·(1 − Σ_c F_M·F_C / (max(‖F_M‖, 0.1)·‖F_C‖ + 1e-8))
//
// then bilinearly resized to [1,1,H,W] and blurred (separable Gaussian, reflect
// padding), both folded into two MatMuls (see UpsampleBlurMatrix). Outputs: "heatmap" [1,1,H,W] and "score" [1], the heatmap maximum.
func LocalizeGraph(spec LocalizeSpec, bb *backbone.Weights, head MappingWeights, centre []float32) ([]byte, error) {
	if err := checkSize("localize graph", spec.Height, spec.Width); err != nil {
		return nil, err
	}
	if spec.D <= 0 {
		return nil, fmt.Errorf("localize graph: D = %d, want > 0", spec.D)
	}
	kernel, err := blurKernel("localize graph", spec.BlurSigma, spec.Height, spec.Width)
	if err != nil {
		return nil, err
	}
	H, W, D := int64(spec.Height), int64(spec.Width), int64(spec.D)
	if err := head.Validate(spec.D); err != nil {
		return nil, fmt.Errorf("localize graph: %w", err)
	}
	h4, w4 := H/4, W/4
	if int64(len(centre)) != D*h4*w4 {
		return nil, fmt.Errorf("localize graph: centre has %d values, want D·H/4·W/4 = %d·%d·%d = %d", len(centre), D, h4, w4, D*h4*w4)
	}

	g := onnx.NewGraph("localize")
	e := emitter{g}
	img := g.Input("image", onnx.Float, 1, 3, H, W)
	l1, l2, l3, err := emitBackbone(e, bb, img, [3]string{})
	if err != nil {
		return nil, fmt.Errorf("localize graph: %w", err)
	}
	x := emitFirstMapping(e, head.Layers[0], l1, l2, l3, h4, w4)
	for i, l := range head.Layers[1:] {
		x = e.relu(x, "")
		x = e.conv(x, fmt.Sprintf("mapping.%d", i+1), l, 1, 0)
	}

	// ‖F_C‖ per location is a constant: precompute it (float64) as an initializer.
	n := h4 * w4
	norms := make([]float32, n)
	for p := int64(0); p < n; p++ {
		var s float64
		for c := int64(0); c < D; c++ {
			v := float64(centre[c*n+p])
			s += v * v
		}
		norms[p] = float32(math.Sqrt(s))
	}
	fc := g.Initializer("centre", []int64{1, D, h4, w4}, centre)
	fcNorm := g.Initializer("centre_norm", []int64{1, 1, h4, w4}, norms)
	// Channel sums as a 1×1 convolution with a ones kernel: the same sum as
	// ReduceSum over axis 1, but ONNX Runtime runs it in its blocked conv
	// kernels instead of a strided reduction (≈2 ms less at 256×256).
	ones := make([]float32, D)
	for i := range ones {
		ones[i] = 1
	}
	onesW := g.Initializer("channel_sum", []int64{1, D, 1, 1}, ones)
	sumC := func(v string) string {
		return g.Op("Conv", []string{v, onesW}, onnx.AttrInts("kernel_shape", 1, 1))
	}
	dot := sumC(g.Op("Mul", []string{x, fc}))
	fmNorm := g.Op("Max", []string{g.Op("Sqrt", []string{sumC(g.Op("Mul", []string{x, x}))}), e.scalar("norm_floor", CosineNormFloor)})
	den := g.Op("Add", []string{g.Op("Mul", []string{fmNorm, fcNorm}), e.scalar("cos_eps", CosineEps)})
	cos := g.Op("Div", []string{dot, den})
	dist := g.Op("Mul", []string{g.Op("Sub", []string{e.scalar("one", 1), cos}), e.scalar("half", 0.5)})

	// Bilinear upsampling followed by the reflect-padded Gaussian blur is a
	// fixed linear map on each axis, so the heatmap is A_y · dist · A_xᵀ:
	// two small matrix products instead of Resize, Pad and two single-channel
	// convolutions (which ONNX Runtime pads to 8 channels), ≈1.5 ms less at
	// 256×256 and the same values to float rounding.
	ay := UpsampleBlurMatrix(int(h4), int(H), kernel)
	axT := transpose(UpsampleBlurMatrix(int(w4), int(W), kernel), int(W), int(w4))
	ayName := g.Initializer("upsample_blur_rows", []int64{H, h4}, ay)
	axName := g.Initializer("upsample_blur_cols_t", []int64{w4, W}, axT)
	rows := g.Op("MatMul", []string{ayName, dist})
	heat := g.Node("MatMul", []string{rows, axName}, []string{"heatmap"})[0]
	mx := g.Op("ReduceMax", []string{heat}, onnx.AttrInt("keepdims", 1))
	shape := g.InitializerInt64("score_shape", []int64{1}, []int64{1})
	score := g.Node("Reshape", []string{mx, shape}, []string{"score"})[0]
	g.Output(heat, onnx.Float, 1, 1, H, W)
	g.Output(score, onnx.Float, 1)
	return g.Marshal()
}

// emitFirstMapping emits N_M's first 1×1 convolution on F_Mixed without
// building F_Mixed: a 1×1 convolution and bilinear resizing are both linear
// and commute, so conv(concat(l1, up(l2), up(l3))) = conv_1(l1) +
// up(conv_2(l2)) + up(conv_3(l3)) + bias, where conv_k uses the weight
// columns of layer k. Layers 2 and 3 are thus mapped to D channels at their
// own, lower resolution and only D channels are resized, instead of 384 —
// the same function (to float rounding) at a fraction of the cost. The
// weights are the ordinary 448→D layer; training sees F_Mixed unchanged.
func emitFirstMapping(e emitter, l ConvWeights, l1, l2, l3 string, h4, w4 int64) string {
	part := func(x, name string, from, n int) string {
		wi := e.g.Initializer(name+".weight", []int64{int64(l.Out), int64(n), 1, 1}, l.inputSlice(from, n))
		return e.g.Op("Conv", []string{x, wi}, onnx.AttrInts("kernel_shape", 1, 1))
	}
	y1 := part(l1, "mapping.0.layer1", 0, Layer1Channels)
	y2 := e.resize(part(l2, "mapping.0.layer2", Layer1Channels, Layer2Channels), [4]int64{1, int64(l.Out), h4, w4})
	y3 := e.resize(part(l3, "mapping.0.layer3", Layer1Channels+Layer2Channels, Layer3Channels), [4]int64{1, int64(l.Out), h4, w4})
	bias := e.g.Initializer("mapping.0.bias", []int64{1, int64(l.Out), 1, 1}, l.Bias)
	return e.g.Op("Add", []string{e.g.Op("Add", []string{e.g.Op("Add", []string{y1, y2}), y3}), bias})
}

// UpsampleBlurMatrix returns, row-major (out × in), the 1-D linear map that
// resizes a signal of length in to out samples bilinearly (half_pixel
// coordinates, clamped at the edges, as ONNX Resize and torch's
// interpolate(align_corners=False)) and then convolves it with kernel under
// reflect padding (as torch's F.pad(mode="reflect")). It is
// [bundle.UpsampleBlurMatrix], the matrices a bundle's Load expects.
func UpsampleBlurMatrix(in, out int, kernel []float32) []float32 {
	return bundle.UpsampleBlurMatrix(in, out, kernel)
}

// transpose returns the transpose of the row-major rows×cols matrix m.
func transpose(m []float32, rows, cols int) []float32 {
	t := make([]float32, len(m))
	for i := range rows {
		for j := range cols {
			t[j*rows+i] = m[i*cols+j]
		}
	}
	return t
}

// Package netdef defines inspectd's networks and emits them as ONNX models.
//
// Each network is defined once, here, as Go data (a weights struct) plus one
// emitter function that writes a fixed-shape ONNX graph with [onnx.Graph]:
//
//   - [BackboneGraph]: frozen ImageNet ResNet-18 conv1..layer3 with ImageNet
//     normalisation inside the graph, and the 448-channel "mixed" feature map.
//   - [LocalizeGraph]: backbone → mapping net N_M (1×1 convs, [MappingWeights]) →
//     per-location cosine distance to the embedded centre F_C → bilinear upsample →
//     Gaussian blur → "heatmap" and "score" (the heatmap maximum).
//   - [MemoryGraph]: the local-memory alternative to N_M and F_C — backbone →
//     projection to D → 3×3 average → distance to the nearest of K stored
//     good features per location → the same upsample and blur.
//   - [AlignGraph]: the IMM regressor (shared feature net N_P on image and
//     template, regression net N_R) producing (tx, ty, θ) ([AlignWeights]); the
//     affine convention is documented on [preprocess.AffineMatrix].
//
// Models use ONNX IR version 8 and opset 17 of the default domain, fixed shapes
// (batch 1), float32 tensors, and only these operators, all accepted by ONNX
// Runtime (CPU, CUDA, TensorRT providers) and by TensorRT's ONNX parser:
//
//	Conv, Relu, MaxPool, Add, Sub, Mul, Div, Sqrt, Max, ReduceMax, MatMul,
//	Resize (mode linear, coordinate_transformation_mode half_pixel), Concat,
//	GlobalAveragePool, Flatten, Gemm, Reshape, Transpose, ReduceMin, Min
//
// [AllowedOps] lists them. Heights and widths are independent multiples of 16;
// nothing assumes square inputs. Bilinear Resize with half_pixel coordinates is
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
package netdef

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/inspectd/inspectd/models/onnx"
)

// AllowedOps returns the only ONNX operator types the emitters use.
func AllowedOps() []string {
	return []string{
		"Conv", "Relu", "MaxPool", "Add", "Sub", "Mul", "Div", "Sqrt", "Max", "ReduceMax", "MatMul",
		"Resize", "Concat", "GlobalAveragePool", "Flatten", "Gemm", "Reshape", "Transpose", "ReduceMin", "Min",
	}
}

// ConvWeights is one 2-D convolution with bias, PyTorch layout.
type ConvWeights struct {
	// Out, In are the output and input channel counts; Kernel is the (square) kernel size.
	Out, In, Kernel int
	// Weight is [Out, In, Kernel, Kernel] in row-major order.
	Weight []float32
	// Bias has Out values.
	Bias []float32
}

// DenseWeights is one fully connected layer y = W·x + b, PyTorch nn.Linear layout.
type DenseWeights struct {
	// Out, In are the output and input sizes.
	Out, In int
	// Weight is [Out, In] in row-major order.
	Weight []float32
	// Bias has Out values.
	Bias []float32
}

// inputSlice returns the weights of 1×1 conv c that read input channels
// from … from+n-1, [Out, n] row-major: the part of c applied to one of
// several concatenated inputs.
func (c ConvWeights) inputSlice(from, n int) []float32 {
	w := make([]float32, c.Out*n)
	for o := range c.Out {
		copy(w[o*n:(o+1)*n], c.Weight[o*c.In+from:o*c.In+from+n])
	}
	return w
}

func (c ConvWeights) check(what string, out, in, kernel int) error {
	if c.Out != out || c.In != in || c.Kernel != kernel {
		return fmt.Errorf("%s: conv %d→%d k%d, want %d→%d k%d", what, c.In, c.Out, c.Kernel, in, out, kernel)
	}
	if len(c.Weight) != out*in*kernel*kernel || len(c.Bias) != out {
		return fmt.Errorf("%s: %d weights and %d biases, want %d and %d", what, len(c.Weight), len(c.Bias), out*in*kernel*kernel, out)
	}
	return nil
}

func (d DenseWeights) check(what string, out, in int) error {
	if d.Out != out || d.In != in {
		return fmt.Errorf("%s: dense %d→%d, want %d→%d", what, d.In, d.Out, in, out)
	}
	if len(d.Weight) != out*in || len(d.Bias) != out {
		return fmt.Errorf("%s: %d weights and %d biases, want %d and %d", what, len(d.Weight), len(d.Bias), out*in, out)
	}
	return nil
}

// heConv returns a He-initialised (normal, std √(2/fan_in)) conv with zero bias.
func heConv(r *rand.Rand, out, in, kernel int) ConvWeights {
	c := ConvWeights{Out: out, In: in, Kernel: kernel, Weight: make([]float32, out*in*kernel*kernel), Bias: make([]float32, out)}
	std := math.Sqrt(2 / float64(in*kernel*kernel))
	for i := range c.Weight {
		c.Weight[i] = float32(r.NormFloat64() * std)
	}
	return c
}

func heDense(r *rand.Rand, out, in int) DenseWeights {
	d := DenseWeights{Out: out, In: in, Weight: make([]float32, out*in), Bias: make([]float32, out)}
	std := math.Sqrt(2 / float64(in))
	for i := range d.Weight {
		d.Weight[i] = float32(r.NormFloat64() * std)
	}
	return d
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed5eed)) }

// emitter wraps an onnx.Graph with the layer helpers shared by the networks.
type emitter struct{ g *onnx.Graph }

// conv emits Conv (+ bias) with square kernel, given stride and symmetric padding.
func (e emitter) conv(x, name string, c ConvWeights, stride, pad int) string {
	k := int64(c.Kernel)
	w := e.g.Initializer(name+".weight", []int64{int64(c.Out), int64(c.In), k, k}, c.Weight)
	b := e.g.Initializer(name+".bias", []int64{int64(c.Out)}, c.Bias)
	return e.convShared(x, w, b, c.Kernel, stride, pad)
}

// convShared emits Conv on already-declared weight and bias initializers.
func (e emitter) convShared(x, w, b string, kernel, stride, pad int) string {
	k, s, p := int64(kernel), int64(stride), int64(pad)
	return e.g.Op("Conv", []string{x, w, b},
		onnx.AttrInts("kernel_shape", k, k),
		onnx.AttrInts("strides", s, s),
		onnx.AttrInts("pads", p, p, p, p),
		onnx.AttrInts("dilations", 1, 1),
		onnx.AttrInt("group", 1))
}

// relu emits Relu; a non-empty name names its output.
func (e emitter) relu(x, name string) string {
	return e.g.Node("Relu", []string{x}, []string{name})[0]
}

// resize emits bilinear half_pixel Resize of NCHW x to the given sizes.
func (e emitter) resize(x string, sizes [4]int64) string {
	s := e.g.InitializerInt64("resize_sizes", []int64{4}, sizes[:])
	return e.g.Op("Resize", []string{x, "", "", s},
		onnx.AttrString("mode", "linear"),
		onnx.AttrString("coordinate_transformation_mode", "half_pixel"))
}

func (e emitter) scalar(name string, v float32) string {
	return e.g.Initializer(name, []int64{1}, []float32{v})
}

// blurKernel returns the heatmap's Gaussian blur kernel for sigma (0 means
// DefaultBlurSigma), refusing a negative or NaN sigma and a kernel wider
// than an h×w input; what names the emitter in the errors.
func blurKernel(what string, sigma float64, h, w int) ([]float32, error) {
	if sigma == 0 {
		sigma = DefaultBlurSigma
	}
	if sigma < 0 || math.IsNaN(sigma) {
		return nil, fmt.Errorf("%s: BlurSigma = %g, want ≥ 0", what, sigma)
	}
	kernel := GaussianKernel(sigma)
	if rad := len(kernel) / 2; rad >= h || rad >= w {
		return nil, fmt.Errorf("%s: blur radius %d (σ=%g) needs an input larger than %d×%d", what, rad, sigma, h, w)
	}
	return kernel, nil
}

// checkSize validates an input height and width.
func checkSize(what string, h, w int) error {
	if h <= 0 || w <= 0 || h%16 != 0 || w%16 != 0 {
		return fmt.Errorf("%s: input %d×%d (h×w), want positive multiples of 16", what, h, w)
	}
	return nil
}

package netdef

import (
	"fmt"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/tflite"
)

// The TFLite twins of the graphs ([LocalizeTFLite], [MemoryTFLite],
// [AlignTFLite]) are written from the same weights as the ONNX graphs, not
// converted from them: the same tensor names for inputs and outputs
// ("image", "template", "heatmap", "score", "transform"), NHWC layout
// (image [1,H,W,3], heatmap [1,H,W,1]), float32 activations, and PyTorch's
// symmetric padding written as an explicit PAD wherever TFLite's SAME
// would pad differently (stride 2: SAME pads only after). Operators used:
// CONV_2D, DEPTHWISE_CONV_2D, PAD, MAX_POOL_2D, ADD, SUB, MUL, DIV, SQRT,
// MAXIMUM, MINIMUM, RELU, REDUCE_MAX, REDUCE_MIN, MEAN, FULLY_CONNECTED
// (hybrid int8 for an int8 memory), BATCH_MATMUL, RESIZE_BILINEAR
// (half_pixel_centers), CONCATENATION, RESHAPE.

// temitter wraps a tflite.Model with the layer helpers of the TFLite twins.
type temitter struct{ m *tflite.Model }

type tt = tflite.Tensor

// ohwi reorders a PyTorch [out][in][k][k] weight to TFLite's [out][k][k][in].
func ohwi(w []float32, out, in, k int) []float32 {
	t := make([]float32, len(w))
	for o := range out {
		for i := range in {
			for y := range k {
				for x := range k {
					t[((o*k+y)*k+x)*in+i] = w[((o*in+i)*k+y)*k+x]
				}
			}
		}
	}
	return t
}

// convConsts declares a conv's weight (OHWI) and bias.
func (e temitter) convConsts(name string, c ConvWeights) (w, b tt) {
	w = e.m.Const(name+".weight", []int{c.Out, c.Kernel, c.Kernel, c.In}, ohwi(c.Weight, c.Out, c.In, c.Kernel))
	bias := c.Bias
	if bias == nil {
		bias = make([]float32, c.Out)
	}
	b = e.m.Const(name+".bias", []int{c.Out}, bias)
	return w, b
}

// conv emits a convolution with PyTorch's symmetric padding pad.
func (e temitter) conv(x tt, name string, c ConvWeights, stride, pad int, relu bool) tt {
	w, b := e.convConsts(name, c)
	return e.convShared(x, w, b, c.Out, c.Kernel, stride, pad, relu)
}

// convShared emits CONV_2D on declared weights: SAME where it equals
// PyTorch's padding (stride 1, odd kernel, pad (k−1)/2), else an explicit
// PAD and VALID.
func (e temitter) convShared(x, w, b tt, out, k, stride, pad int, relu bool) tt {
	s := e.m.Shape(x)
	h, wd := s[1], s[2]
	padding := tflite.Valid
	switch {
	case pad == 0:
	case stride == 1 && k%2 == 1 && pad == (k-1)/2:
		padding = tflite.Same
	default:
		x = e.pad(x, pad)
		h, wd = h+2*pad, wd+2*pad
		pad = 0
	}
	oh, ow := (h+2*pad-k)/stride+1, (wd+2*pad-k)/stride+1
	if padding == tflite.Same {
		oh, ow = s[1], s[2]
	}
	return e.m.Op(tflite.OpConv2D, tflite.Conv2D(stride, padding, relu), []tt{x, w, b}, 1, oh, ow, out)
}

// pad emits PAD of p zeros on both sides of H and W.
func (e temitter) pad(x tt, p int) tt {
	s := e.m.Shape(x)
	pads := e.m.ConstInt32("paddings", []int{4, 2}, []int32{0, 0, int32(p), int32(p), int32(p), int32(p), 0, 0})
	return e.m.Op(tflite.OpPad, tflite.Pad(), []tt{x, pads}, s[0], s[1]+2*p, s[2]+2*p, s[3])
}

func (e temitter) unary(op tflite.Op, x tt) tt {
	return e.m.Op(op, tflite.Options{}, []tt{x}, e.m.Shape(x)...)
}

func (e temitter) relu(x tt) tt { return e.unary(tflite.OpRelu, x) }

// binary emits an element-wise operator; the output has a's shape unless
// b's has more elements (broadcasting).
func (e temitter) binary(op tflite.Op, a, b tt) tt {
	shape := e.m.Shape(a)
	if sb := e.m.Shape(b); elementsOf(sb) > elementsOf(shape) {
		shape = sb
	}
	var opts tflite.Options
	switch op {
	case tflite.OpAdd:
		opts = tflite.Add()
	case tflite.OpSub:
		opts = tflite.Sub()
	case tflite.OpMul:
		opts = tflite.Mul()
	case tflite.OpDiv:
		opts = tflite.Div()
	case tflite.OpMaximum, tflite.OpMinimum:
		opts = tflite.MaximumMinimum()
	}
	return e.m.Op(op, opts, []tt{a, b}, shape...)
}

func elementsOf(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

func (e temitter) scalar(name string, v float32) tt { return e.m.Const(name, []int{1}, []float32{v}) }

// reshape emits RESHAPE to shape.
func (e temitter) reshape(x tt, shape ...int) tt {
	s := make([]int32, len(shape))
	for i, d := range shape {
		s[i] = int32(d)
	}
	st := e.m.ConstInt32("shape", []int{len(shape)}, s)
	return e.m.Op(tflite.OpReshape, tflite.Reshape(shape...), []tt{x, st}, shape...)
}

// resize emits bilinear half_pixel RESIZE_BILINEAR of NHWC x to h×w.
func (e temitter) resize(x tt, h, w int) tt {
	s := e.m.Shape(x)
	size := e.m.ConstInt32("resize_size", []int{2}, []int32{int32(h), int32(w)})
	return e.m.Op(tflite.OpResizeBilinear, tflite.ResizeBilinear(false, true), []tt{x, size}, s[0], h, w, s[3])
}

// reduce emits a reduction over axes.
func (e temitter) reduce(op tflite.Op, x tt, keep bool, axes ...int) tt {
	s := e.m.Shape(x)
	a := make([]int32, len(axes))
	var out []int
	for i, d := range s {
		reduced := false
		for _, ax := range axes {
			reduced = reduced || ax == i
		}
		switch {
		case !reduced:
			out = append(out, d)
		case keep:
			out = append(out, 1)
		}
	}
	for i, ax := range axes {
		a[i] = int32(ax)
	}
	at := e.m.ConstInt32("axes", []int{len(axes)}, a)
	return e.m.Op(op, tflite.Reducer(keep), []tt{x, at}, out...)
}

// fc emits FULLY_CONNECTED y = x·Wᵀ + b on a 2-D x [rows, In].
func (e temitter) fc(x tt, name string, d DenseWeights, relu bool) tt {
	w := e.m.Const(name+".weight", []int{d.Out, d.In}, d.Weight)
	bias := d.Bias
	if bias == nil {
		bias = make([]float32, d.Out)
	}
	b := e.m.Const(name+".bias", []int{d.Out}, bias)
	return e.m.Op(tflite.OpFullyConnected, tflite.FullyConnected(relu, false), []tt{x, w, b}, e.m.Shape(x)[0], d.Out)
}

// upsampleBlur emits the bilinear upsampling and Gaussian blur of the
// distance map dist [1,gh,gw,1] to [H,W]: A_y · dist · A_xᵀ as a
// BATCH_MATMUL and a FULLY_CONNECTED (whose weight is A_x itself).
func (e temitter) upsampleBlur(dist tt, gh, gw, H, W int, kernel []float32) tt {
	d := e.reshape(dist, gh, gw)
	ay := e.m.Const("upsample_blur_rows", []int{H, gh}, UpsampleBlurMatrix(gh, H, kernel))
	rows := e.m.Op(tflite.OpBatchMatMul, tflite.BatchMatMul(), []tt{ay, d}, H, gw)
	return e.fc(rows, "upsample_blur_cols", DenseWeights{Out: W, In: gw, Weight: UpsampleBlurMatrix(gw, W, kernel)}, false)
}

// heatmapAndScore names the [H,W] map "heatmap" [1,H,W,1], adds "score"
// [1] (its maximum) and declares both outputs.
func (e temitter) heatmapAndScore(heat tt, H, W int) {
	h := e.m.Rename(e.reshape(heat, 1, H, W, 1), "heatmap")
	mx := e.reduce(tflite.OpReduceMax, h, true, 0, 1, 2, 3)
	score := e.m.Rename(e.reshape(mx, 1), "score")
	e.m.Output(h, score)
}

// emitBackboneTFLite emits normalisation and conv1..layer3 on NHWC img.
func emitBackboneTFLite(e temitter, w *backbone.Weights, img tt) (l1, l2, l3 tt, err error) {
	if w == nil {
		return 0, 0, 0, fmt.Errorf("backbone graph: no weights")
	}
	if err := w.Validate(); err != nil {
		return 0, 0, 0, fmt.Errorf("backbone graph: %w", err)
	}
	convs := map[string]backbone.Conv{}
	for _, c := range backbone.Convs() {
		convs[c.Name] = c
	}
	conv := func(x tt, name string, relu bool) tt {
		c := convs[name]
		wt, _ := w.Tensor(name + ".weight")
		bt, _ := w.Tensor(name + ".bias")
		return e.conv(x, name, ConvWeights{Out: int(c.Out), In: int(c.In), Kernel: int(c.Kernel), Weight: wt.Data, Bias: bt.Data}, int(c.Stride), int(c.Pad), relu)
	}
	mean := e.m.Const("imagenet_mean", []int{3}, imageNetMean())
	std := e.m.Const("imagenet_std", []int{3}, imageNetStd())
	x := e.binary(tflite.OpDiv, e.binary(tflite.OpSub, img, mean), std)
	x = e.relu(conv(x, "conv1", false))
	// MaxPool 3×3 stride 2 pad 1: after the ReLU every value is ≥ 0, so
	// zero padding gives the max of ONNX's padding-ignoring pool.
	x = e.pad(x, 1)
	s := e.m.Shape(x)
	x = e.m.Op(tflite.OpMaxPool2D, tflite.Pool2D(3, 2, tflite.Valid), []tt{x}, 1, (s[1]-3)/2+1, (s[2]-3)/2+1, s[3])
	var outs [3]tt
	for layer := 1; layer <= 3; layer++ {
		for block := 0; block < 2; block++ {
			p := fmt.Sprintf("layer%d.%d.", layer, block)
			y := conv(x, p+"conv1", true)
			y = conv(y, p+"conv2", false)
			short := x
			if _, ok := convs[p+"downsample.0"]; ok {
				short = conv(x, p+"downsample.0", false)
			}
			x = e.relu(e.binary(tflite.OpAdd, y, short))
		}
		outs[layer-1] = x
	}
	return outs[0], outs[1], outs[2], nil
}

// emitFirstMappingTFLite is [emitFirstMapping] in NHWC: the 448→D 1×1
// convolution applied to layer1, layer2 and layer3 at their own
// resolution with the matching weight columns, the lower two resized to
// the layer1 grid, summed, plus the bias.
func emitFirstMappingTFLite(e temitter, l ConvWeights, prefix string, l1, l2, l3 tt, h4, w4 int) tt {
	part := func(x tt, name string, from, n int) tt {
		return e.conv(x, name, ConvWeights{Out: l.Out, In: n, Kernel: 1, Weight: l.inputSlice(from, n)}, 1, 0, false)
	}
	y1 := part(l1, prefix+".layer1", 0, Layer1Channels)
	y2 := e.resize(part(l2, prefix+".layer2", Layer1Channels, Layer2Channels), h4, w4)
	y3 := e.resize(part(l3, prefix+".layer3", Layer1Channels+Layer2Channels, Layer3Channels), h4, w4)
	bias := e.m.Const(prefix+".bias", []int{l.Out}, l.Bias)
	return e.binary(tflite.OpAdd, e.binary(tflite.OpAdd, e.binary(tflite.OpAdd, y1, y2), y3), bias)
}

// channelSum emits the sum over the channels of NHWC x as a 1×1
// convolution with a ones kernel, [1,h,w,1].
func (e temitter) channelSum(x tt) tt {
	s := e.m.Shape(x)
	ones := make([]float32, s[3])
	for i := range ones {
		ones[i] = 1
	}
	return e.conv(x, "channel_sum", ConvWeights{Out: 1, In: s[3], Kernel: 1, Weight: ones}, 1, 0, false)
}

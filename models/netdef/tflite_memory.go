package netdef

import (
	"fmt"
	"math"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/tflite"
)

// MemoryTFLite emits the TFLite twin of [MemoryGraph] from the same
// weights and memory: input "image" float32 [1,H,W,3] (NHWC), outputs
// "heatmap" [1,H,W,1] and "score" [1]. With spec.GlobalInt8 the global
// entries are int8 (the same values as the ONNX graph's) in a hybrid
// FULLY_CONNECTED that quantises each location's features to int8 with
// their own range (asymmetric_quantize_inputs), where ONNX Runtime's
// DynamicQuantizeLinear uses one uint8 range for the whole frame: the two
// agree within a quantisation step of the features.
func MemoryTFLite(spec MemorySpec, bb *backbone.Weights, projection ConvWeights, bank, global []float32) ([]byte, error) {
	kernel, err := spec.heatmapKernel("memory tflite")
	if err != nil {
		return nil, err
	}
	m := tflite.NewModel("memory")
	e := temitter{m}
	x, err := e.memoryFeatures(spec, bb, projection)
	if err != nil {
		return nil, err
	}
	dist, err := e.memoryDistances(spec, x, bank, global)
	if err != nil {
		return nil, err
	}
	gh, gw := spec.Grid()
	blurred := e.upsampleBlur(dist, gh, gw, spec.Height, spec.Width, kernel)
	heat := e.binary(tflite.OpDiv, blurred, e.binary(tflite.OpAdd, blurred, e.scalar("heatmap_scale", float32(spec.Scale))))
	e.heatmapAndScore(heat, spec.Height, spec.Width)
	return m.Marshal()
}

// memoryFeatures declares "image" and emits the compared features
// [1,gridH,gridW,D], as memoryFeatures does for ONNX.
func (e temitter) memoryFeatures(spec MemorySpec, bb *backbone.Weights, projection ConvWeights) (tt, error) {
	const name = "memory tflite"
	project, err := spec.checkFeatures(name, projection)
	if err != nil {
		return 0, err
	}
	gh, gw := spec.Grid()
	img := e.m.Input("image", tflite.Float32, 1, spec.Height, spec.Width, 3)
	l1, l2, l3, err := emitBackboneTFLite(e, bb, img)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	layers := spec.MemoryLayers()
	outs := [3]tt{l1, l2, l3}
	var x tt
	if spec.mapsLayersFirst(project) {
		x = emitFirstMappingTFLite(e, projection, "projection", l1, l2, l3, gh, gw)
	} else {
		var parts []tt
		from := 0
		for _, l := range layers {
			f, n := outs[l-1], layerChannels[l-1]
			if project {
				w := projection.inputSlice(from, n)
				f = e.conv(f, fmt.Sprintf("projection.layer%d", l), ConvWeights{Out: spec.D, In: n, Kernel: 1, Weight: w}, 1, 0, false)
				n = projection.Out
			}
			if spec.AverageEachLayer {
				f = e.boxAverage(f, n)
			}
			if layerStride(l) != spec.GridStride() {
				f = e.resize(f, gh, gw)
			}
			parts = append(parts, f)
			from += layerChannels[l-1]
		}
		switch {
		case project:
			x = parts[0]
			for _, p := range parts[1:] {
				x = e.binary(tflite.OpAdd, x, p)
			}
			x = e.binary(tflite.OpAdd, x, e.m.Const("projection.bias", []int{spec.D}, projection.Bias))
		case len(parts) == 1:
			x = parts[0]
		default:
			c := 0
			for _, p := range parts {
				c += e.m.Shape(p)[3]
			}
			x = e.m.Op(tflite.OpConcatenation, tflite.Concatenation(3), parts, 1, gh, gw, c)
		}
	}
	if !spec.AverageEachLayer {
		x = e.boxAverage(x, spec.D)
	}
	return x, nil
}

// boxAverage emits the 3×3 box average (zero padding, divisor 9) of each
// channel as a DEPTHWISE_CONV_2D (SAME is PyTorch's padding at stride 1).
func (e temitter) boxAverage(x tt, channels int) tt {
	k := MemoryFeatureAverage
	box := make([]float32, channels*k*k)
	for i := range box {
		box[i] = 1 / float32(k*k)
	}
	w := e.m.Const("feature_average", []int{1, k, k, channels}, box)
	b := e.m.Const("feature_average_bias", []int{channels}, make([]float32, channels))
	return e.m.Op(tflite.OpDepthwiseConv2D, tflite.DepthwiseConv2D(1, tflite.Same), []tt{x, w, b}, e.m.Shape(x)...)
}

// memoryDistances emits every location's distance to its nearest entry
// from the features x [1,gridH,gridW,D], as [1,gridH,gridW,1].
func (e temitter) memoryDistances(spec MemorySpec, x tt, bank, global []float32) (tt, error) {
	const what = "memory tflite"
	D, K, G := spec.D, spec.Entries, spec.Global
	gh, gw := spec.Grid()
	n := gh * gw
	if len(bank) != n*K*D {
		return 0, fmt.Errorf("%s: bank has %d values, want gridH·gridW·K·D = %d·%d·%d = %d", what, len(bank), n, K, D, n*K*D)
	}
	if len(global) != G*D {
		return 0, fmt.Errorf("%s: %d global values, want G·D = %d·%d = %d", what, len(global), G, D, G*D)
	}
	if spec.GlobalInt8 && (!(spec.GlobalScale > 0) || math.IsInf(float64(spec.GlobalScale), 0)) {
		return 0, fmt.Errorf("%s: int8 global entries with step %g, want a positive finite number", what, spec.GlobalScale)
	}
	// NHWC is location-major: the features are already the rows [n,D].
	rows := e.reshape(x, n, D)
	ones := make([]float32, D)
	for i := range ones {
		ones[i] = 1
	}
	xSq := e.fc(e.binary(tflite.OpMul, rows, rows), "channel_sum", DenseWeights{Out: 1, In: D, Weight: ones}, false) // [n,1]
	var nearest tt = tflite.NoTensor
	if K > 0 {
		bankT, sq := bankByLocation(bank, n, K, D)
		bankName := e.m.Const("memory_bank", []int{n, D, K}, bankT)
		sqName := e.m.Const("memory_bank_sq", []int{n, 1, K}, sq)
		perLoc := e.reshape(rows, n, 1, D)
		dot := e.m.Op(tflite.OpBatchMatMul, tflite.BatchMatMul(), []tt{perLoc, bankName}, n, 1, K)
		d2 := e.binary(tflite.OpAdd, e.binary(tflite.OpMul, dot, e.scalar("minus_two", -2)), sqName)
		nearest = e.reduce(tflite.OpReduceMin, d2, false, 2) // [n,1]
	}
	if G > 0 {
		// One FULLY_CONNECTED with weights −2·g and bias ‖g‖²: [n,G] of
		// ‖g‖² − 2·x·g (the factor −2 is exact in float and in int8).
		gsq := squaredNorms(global, D)
		bias := e.m.Const("memory_global_sq", []int{G}, gsq)
		var w tt
		if spec.GlobalInt8 {
			q := make([]int8, len(global))
			for i, v := range global {
				q[i] = -Int8Step(v, spec.GlobalScale) // within ±127: negation is exact
			}
			w = e.m.ConstInt8("memory_global_int8", []int{G, D}, q, 2*spec.GlobalScale)
		} else {
			neg := make([]float32, len(global))
			for i, v := range global {
				neg[i] = -2 * v
			}
			w = e.m.Const("memory_global", []int{G, D}, neg)
		}
		gd2 := e.m.Op(tflite.OpFullyConnected, tflite.FullyConnected(false, spec.GlobalInt8), []tt{rows, w, bias}, n, G)
		gNearest := e.reduce(tflite.OpReduceMin, gd2, true, 1) // [n,1]
		if nearest == tflite.NoTensor {
			nearest = gNearest
		} else {
			nearest = e.binary(tflite.OpMinimum, nearest, gNearest)
		}
	}
	nearest = e.binary(tflite.OpAdd, nearest, xSq)
	dist := e.unary(tflite.OpSqrt, e.binary(tflite.OpMaximum, nearest, e.scalar("zero", 0)))
	return e.reshape(dist, 1, gh, gw, 1), nil
}

// MemoryDistanceTFLite emits the TFLite twin of [MemoryDistanceGraph]:
// input "features" [1,gridH,gridW,D] (NHWC), output "distances"
// [1,gridH,gridW,1]. Tests compare the int8 comparison alone with it.
func MemoryDistanceTFLite(spec MemorySpec, bank, global []float32) ([]byte, error) {
	gh, gw := spec.Grid()
	if spec.D <= 0 || gh <= 0 || gw <= 0 || spec.Entries < 0 || spec.Global < 0 || spec.Entries+spec.Global == 0 {
		return nil, fmt.Errorf("memory distance tflite: D = %d on a %d×%d grid with %d+%d entries, want all positive", spec.D, gw, gh, spec.Entries, spec.Global)
	}
	m := tflite.NewModel("memory_distances")
	e := temitter{m}
	x := m.Input("features", tflite.Float32, 1, gh, gw, spec.D)
	dist, err := e.memoryDistances(spec, x, bank, global)
	if err != nil {
		return nil, err
	}
	m.Output(m.Rename(dist, "distances"))
	return m.Marshal()
}

// MemoryFeaturesTFLite emits the TFLite twin of [MemoryFeaturesGraph]:
// input "image" [1,H,W,3] (NHWC), output "features" [1,gridH,gridW,D].
// Tests compare the features an int8 memory quantises with it.
func MemoryFeaturesTFLite(spec MemorySpec, bb *backbone.Weights, projection ConvWeights) ([]byte, error) {
	m := tflite.NewModel("memory_features")
	x, err := temitter{m}.memoryFeatures(spec, bb, projection)
	if err != nil {
		return nil, err
	}
	m.Output(m.Rename(x, "features"))
	return m.Marshal()
}

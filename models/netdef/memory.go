package netdef

import (
	"fmt"
	"math"
	"slices"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/onnx"
)

// MemorySpec fixes the shape of the local-memory localisation network: a
// small memory of good features at every location instead of the paper's
// single centre.
type MemorySpec struct {
	// Height, Width of the model input; independent multiples of 16.
	Height, Width int
	// Layers are the ResNet-18 stages whose features are concatenated:
	// [1 2 3], [2 3] or [3]; nil means [1 2 3]. The features live on the
	// grid of the first (see Stride).
	Layers []int
	// Stride is the input pixels per cell of the grid the features are
	// compared on: 4, 8 or 16; 0 means the first layer's own (4 for
	// layer1). Layers of another resolution are bilinearly resized to the
	// grid (a factor-2 reduction averages 2×2 cells).
	Stride int
	// D is the width of the compared features and of the memory entries:
	// the projection's output, or every channel of Layers without one.
	D int
	// Entries is the number K of memory entries per location (0: none,
	// only the global ones).
	Entries int
	// Global is the number G of entries shared by every location (0: none):
	// a location's distance is to the nearest of its own K and these G.
	// They describe what good parts show anywhere — a texture, a surface
	// finish — where K entries chosen from one neighbourhood cannot cover
	// all of it.
	Global int
	// AverageEachLayer applies the 3×3 box average to each layer at its own
	// resolution before resizing to the grid, as PatchCore builds its
	// patches (a layer3 cell then describes 48 input pixels, not 24),
	// instead of once on the grid.
	AverageEachLayer bool
	// GlobalInt8 stores the global entries as int8 (entry = GlobalScale ×
	// value) and compares them with the frame's features quantised to
	// uint8 (DynamicQuantizeLinear: a step of the frame's range over 255,
	// with the zero point where 0 falls): a quarter of the memory and an
	// integer product about 7× faster than float32 on CPUs with int8
	// dot-product instructions. ‖x‖² and ‖g‖² stay float32.
	GlobalInt8 bool
	// GlobalScale is GlobalInt8's step of the entries.
	GlobalScale float32
	// BlurSigma is the σ (pixels) of the heatmap's Gaussian blur; 0 means
	// DefaultBlurSigma.
	BlurSigma float64
	// Scale s maps the blurred distance b to the heatmap value b/(b+s), in
	// [0, 1), so that thresholds keep the range of the centre method. The
	// map is monotone: it changes no ranking.
	Scale float64
}

// DefaultSharedEntries is the training recipe's default number of shared
// (global) memory entries, also what `inspectd bench` sizes a box for
// before any model is trained.
const DefaultSharedEntries = 6144

// MemoryLayerChoices are the values MemorySpec.Layers accepts.
var MemoryLayerChoices = [][]int{{1, 2, 3}, {2, 3}, {3}}

// MemoryLayers returns spec's layers, [1 2 3] when unset.
func (spec MemorySpec) MemoryLayers() []int {
	if len(spec.Layers) == 0 {
		return []int{1, 2, 3}
	}
	return spec.Layers
}

// GridStride returns the input pixels per cell of the compared grid:
// Stride, or when unset the first layer's (4 for layer1, 8 for layer2, 16
// for layer3).
func (spec MemorySpec) GridStride() int {
	if spec.Stride != 0 {
		return spec.Stride
	}
	return layerStride(spec.MemoryLayers()[0])
}

// layerStride is the input pixels per cell of a ResNet-18 stage's output.
func layerStride(layer int) int { return 4 << (layer - 1) }

// MemoryStrides are the values MemorySpec.Stride accepts besides 0.
var MemoryStrides = []int{4, 8, 16}

// Grid returns the feature map's height and width (the input's divided by
// GridStride).
func (spec MemorySpec) Grid() (h, w int) {
	st := spec.GridStride()
	return spec.Height / st, spec.Width / st
}

// MemoryChannels returns the channel count of the given layers' features
// concatenated (448 for [1 2 3], 384 for [2 3]), or an error naming the
// allowed choices.
func MemoryChannels(layers []int) (int, error) {
	if len(layers) == 0 {
		layers = []int{1, 2, 3}
	}
	for _, c := range MemoryLayerChoices {
		if slices.Equal(c, layers) {
			n := 0
			for _, l := range layers {
				n += layerChannels[l-1]
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("layers %v, want [1 2 3], [2 3] or [3] (the stages from the first to layer3)", layers)
}

var layerChannels = [3]int{Layer1Channels, Layer2Channels, Layer3Channels}

// MemoryFeatureAverage is the side of the box filter (zero padding, divisor
// 9) applied to the compared features: each location then describes its
// 3×3 neighbourhood, as PatchCore's patches do.
const MemoryFeatureAverage = 3

// MemoryFeaturesGraph emits the first half of [MemoryGraph] alone: input
// "image" [1,3,H,W] → backbone → the layers' features on the grid of
// [MemorySpec.GridStride] (other resolutions bilinearly resized), projected by a 1×1 convolution
// to D channels unless projection is the zero value → 3×3 box average,
// output "features" [1,D,gridH,gridW]. Training runs it to build the
// memory from exactly the values the deployed graph compares.
func MemoryFeaturesGraph(spec MemorySpec, bb *backbone.Weights, projection ConvWeights) ([]byte, error) {
	g, x, err := memoryFeatures("memory_features", spec, bb, projection)
	if err != nil {
		return nil, err
	}
	gh, gw := spec.Grid()
	g.Output(g.Rename(x, "features"), onnx.Float, 1, int64(spec.D), int64(gh), int64(gw))
	return g.Marshal()
}

// checkFeatures validates the input size, layers, entry counts, stride
// and projection of spec for the memory emitters (what names the emitter in
// the errors); project says whether the features are projected to D.
func (spec MemorySpec) checkFeatures(what string, projection ConvWeights) (project bool, err error) {
	if err := checkSize(what, spec.Height, spec.Width); err != nil {
		return false, err
	}
	channels, err := MemoryChannels(spec.Layers)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	if spec.D <= 0 || spec.Entries < 0 || spec.Global < 0 || spec.Entries+spec.Global == 0 {
		return false, fmt.Errorf("%s: D = %d, %d entries per location and %d global ones, want D > 0 and entries of either kind", what, spec.D, spec.Entries, spec.Global)
	}
	if spec.Stride != 0 && !slices.Contains(MemoryStrides, spec.Stride) {
		return false, fmt.Errorf("%s: stride %d, want 4, 8 or 16", what, spec.Stride)
	}
	project = projection.Out != 0 || len(projection.Weight) != 0
	if project {
		if err := projection.check(what+": projection", spec.D, channels, 1); err != nil {
			return false, err
		}
	} else if spec.D != channels {
		return false, fmt.Errorf("%s: D = %d without a projection, want the layers' %d channels", what, spec.D, channels)
	}
	return project, nil
}

// mapsLayersFirst says whether the memory's projection applies to all
// three layers at their own resolution before one resize to the 4-pixel
// grid (emitFirstMapping), the cheapest order when it is equivalent.
func (spec MemorySpec) mapsLayersFirst(project bool) bool {
	return project && slices.Equal(spec.MemoryLayers(), []int{1, 2, 3}) && spec.GridStride() == 4 && !spec.AverageEachLayer
}

func memoryFeatures(name string, spec MemorySpec, bb *backbone.Weights, projection ConvWeights) (*onnx.Graph, string, error) {
	project, err := spec.checkFeatures(name, projection)
	if err != nil {
		return nil, "", err
	}
	H, W, D := int64(spec.Height), int64(spec.Width), int64(spec.D)
	gh, gw := spec.Grid()
	g := onnx.NewGraph(name)
	e := emitter{g}
	img := g.Input("image", onnx.Float, 1, 3, H, W)
	l1, l2, l3, err := emitBackbone(e, bb, img, [3]string{})
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	layers := spec.MemoryLayers()
	outs := [3]string{l1, l2, l3}
	var x string
	if spec.mapsLayersFirst(project) {
		x = emitFirstMapping(e, projection, l1, l2, l3, int64(gh), int64(gw))
	} else {
		// Each layer projected at its own resolution (1×1 convolutions and
		// bilinear resizing commute, as in emitFirstMapping), or taken as
		// is, then resized to the grid and summed or concatenated.
		var parts []string
		from := 0
		for _, l := range layers {
			f, n := outs[l-1], layerChannels[l-1]
			if project {
				w := projection.inputSlice(from, n)
				wi := g.Initializer(fmt.Sprintf("projection.layer%d.weight", l), []int64{D, int64(n), 1, 1}, w)
				f = g.Op("Conv", []string{f, wi}, onnx.AttrInts("kernel_shape", 1, 1))
				n = projection.Out
			}
			if spec.AverageEachLayer {
				f = e.boxAverage(f, n)
			}
			if layerStride(l) != spec.GridStride() {
				f = e.resize(f, [4]int64{1, int64(n), int64(gh), int64(gw)})
			}
			parts = append(parts, f)
			from += layerChannels[l-1]
		}
		switch {
		case project:
			x = parts[0]
			for _, p := range parts[1:] {
				x = g.Op("Add", []string{x, p})
			}
			bias := g.Initializer("projection.bias", []int64{1, D, 1, 1}, projection.Bias)
			x = g.Op("Add", []string{x, bias})
		case len(parts) == 1:
			x = parts[0]
		default:
			x = g.Op("Concat", parts, onnx.AttrInt("axis", 1))
		}
	}
	if !spec.AverageEachLayer {
		x = e.boxAverage(x, spec.D)
	}
	return g, x, nil
}

// boxAverage emits the 3×3 box average of x's channels as a depthwise
// convolution (one 3×3 kernel of 1/9 per channel, zero padding): the same
// on every runtime, unlike AveragePool's count_include_pad, and projected
// features average just like raw ones (both maps are linear).
func (e emitter) boxAverage(x string, channels int) string {
	k := MemoryFeatureAverage
	box := make([]float32, channels*k*k)
	for i := range box {
		box[i] = 1 / float32(k*k)
	}
	w := e.g.Initializer("feature_average", []int64{int64(channels), 1, int64(k), int64(k)}, box)
	p := int64(k / 2)
	return e.g.Op("Conv", []string{x, w},
		onnx.AttrInts("kernel_shape", int64(k), int64(k)),
		onnx.AttrInts("pads", p, p, p, p),
		onnx.AttrInt("group", int64(channels)))
}

// heatmapKernel checks the heatmap's blur and scale (see [blurKernel])
// and returns the blur kernel; what names the emitter in the errors.
func (spec MemorySpec) heatmapKernel(what string) ([]float32, error) {
	kernel, err := blurKernel(what, spec.BlurSigma, spec.Height, spec.Width)
	if err != nil {
		return nil, err
	}
	if !(spec.Scale > 0) || math.IsInf(spec.Scale, 0) {
		return nil, fmt.Errorf("%s: Scale = %g, want a positive finite number", what, spec.Scale)
	}
	return kernel, nil
}

// MemoryGraph emits the local-memory localisation network. Input "image"
// float32 [1,3,H,W] RGB in [0,1]; x = the features of
// [MemoryFeaturesGraph]; at each grid location p the distance to the
// nearest of its K memory entries m_pk (bank, location-major
// [gridH·gridW][K][D]; empty when spec.Entries is 0) and of the G global
// entries g_j (global, [G][D]; nil when spec.Global is 0):
//
//	d_p = √max(0, ‖x_p‖² + min(min_k(‖m_pk‖² − 2·x_p·m_pk), min_j(‖g_j‖² − 2·x_p·g_j)))
//
// computed as one batched MatMul and a ReduceMin, and one MatMul (an
// integer one with spec.GlobalInt8) and a ReduceMin for the global
// entries (a fixed graph of constant size, as TensorRT needs), then
// bilinearly resized and blurred as in [LocalizeGraph], and mapped to
// b/(b+Scale). Outputs "heatmap" [1,1,H,W] and "score" [1], the heatmap
// maximum.
func MemoryGraph(spec MemorySpec, bb *backbone.Weights, projection ConvWeights, bank, global []float32) ([]byte, error) {
	kernel, err := spec.heatmapKernel("memory graph")
	if err != nil {
		return nil, err
	}
	g, x, err := memoryFeatures("memory", spec, bb, projection)
	if err != nil {
		return nil, err
	}
	H, W := int64(spec.Height), int64(spec.Width)
	e := emitter{g}
	dist, err := e.memoryDistances("memory graph", spec, x, bank, global)
	if err != nil {
		return nil, err
	}
	gh, gw := spec.Grid()
	h4, w4 := int64(gh), int64(gw)
	ay := UpsampleBlurMatrix(gh, int(H), kernel)
	axT := transpose(UpsampleBlurMatrix(gw, int(W), kernel), int(W), gw)
	ayName := g.Initializer("upsample_blur_rows", []int64{H, h4}, ay)
	axName := g.Initializer("upsample_blur_cols_t", []int64{w4, W}, axT)
	blurred := g.Op("MatMul", []string{g.Op("MatMul", []string{ayName, dist}), axName})
	scale := e.scalar("heatmap_scale", float32(spec.Scale))
	heat := g.Node("Div", []string{blurred, g.Op("Add", []string{blurred, scale})}, []string{"heatmap"})[0]
	mx := g.Op("ReduceMax", []string{heat}, onnx.AttrInt("keepdims", 1))
	score := g.Node("Reshape", []string{mx, g.InitializerInt64("score_shape", []int64{1}, []int64{1})}, []string{"score"})[0]
	g.Output(heat, onnx.Float, 1, 1, H, W)
	g.Output(score, onnx.Float, 1)
	return g.Marshal()
}

// bankByLocation lays out the per-location entries bank ([n][K][D]) for
// the batched product: bankT [n][D][K], and sq [n][K] = ‖m_pk‖² (float64
// sums, rounded once).
func bankByLocation(bank []float32, n, K, D int) (bankT, sq []float32) {
	bankT = make([]float32, len(bank))
	sq = make([]float32, n*K)
	for p := range n {
		for k := range K {
			var s float64
			for c, v := range bank[(p*K+k)*D : (p*K+k+1)*D] {
				bankT[(p*D+c)*K+k] = v
				s += float64(v) * float64(v)
			}
			sq[p*K+k] = float32(s)
		}
	}
	return bankT, sq
}

// squaredNorms returns ‖e‖² of each d-long entry of entries (in float64,
// rounded once), the constant term of the distances the memory graphs
// compute as ‖e‖² − 2·x·e.
func squaredNorms(entries []float32, d int) []float32 {
	out := make([]float32, len(entries)/d)
	for j := range out {
		var s float64
		for _, v := range entries[j*d : (j+1)*d] {
			s += float64(v) * float64(v)
		}
		out[j] = float32(s)
	}
	return out
}

// Int8Step returns v in whole steps of step, rounded and clamped to ±127:
// how a GlobalInt8 memory stores an entry's value (entry ≈ step × result).
func Int8Step(v, step float32) int8 {
	return int8(max(-127, min(127, math.Round(float64(v/step)))))
}

// MemoryDistanceGraph emits MemoryGraph's comparison alone: input
// "features" [1,D,gridH,gridW] (what [MemoryFeaturesGraph] outputs),
// output "distances" [1,1,gridH,gridW], each location's distance to its
// nearest entry. Training scores its own images with it, on the runtime,
// exactly as the deployed graph compares them.
func MemoryDistanceGraph(spec MemorySpec, bank, global []float32) ([]byte, error) {
	gh, gw := spec.Grid()
	if spec.D <= 0 || gh <= 0 || gw <= 0 {
		return nil, fmt.Errorf("memory distance graph: D = %d on a %d×%d grid, want both positive", spec.D, gw, gh)
	}
	g := onnx.NewGraph("memory_distances")
	x := g.Input("features", onnx.Float, 1, int64(spec.D), int64(gh), int64(gw))
	dist, err := emitter{g}.memoryDistances("memory distance graph", spec, x, bank, global)
	if err != nil {
		return nil, err
	}
	g.Output(g.Rename(dist, "distances"), onnx.Float, 1, 1, int64(gh), int64(gw))
	return g.Marshal()
}

// memoryDistances emits, from the features x [1,D,gridH,gridW], every
// location's distance to its nearest entry, [1,1,gridH,gridW].
func (e emitter) memoryDistances(what string, spec MemorySpec, x string, bank, global []float32) (string, error) {
	g := e.g
	D, K, G := int64(spec.D), int64(spec.Entries), int64(spec.Global)
	gh, gw := spec.Grid()
	h4, w4 := int64(gh), int64(gw)
	n := h4 * w4
	if K < 0 || G < 0 || K+G == 0 {
		return "", fmt.Errorf("%s: %d entries per location and %d global ones, want entries of either kind", what, K, G)
	}
	if int64(len(bank)) != n*K*D {
		return "", fmt.Errorf("%s: bank has %d values, want gridH·gridW·K·D = %d·%d·%d = %d", what, len(bank), n, K, D, n*K*D)
	}
	if int64(len(global)) != G*D {
		return "", fmt.Errorf("%s: %d global values, want G·D = %d·%d = %d", what, len(global), G, D, G*D)
	}
	if spec.GlobalInt8 && (!(spec.GlobalScale > 0) || math.IsInf(float64(spec.GlobalScale), 0)) {
		return "", fmt.Errorf("%s: int8 global entries with step %g, want a positive finite number", what, spec.GlobalScale)
	}
	ones := make([]float32, D)
	for i := range ones {
		ones[i] = 1
	}
	onesW := g.Initializer("channel_sum", []int64{1, D, 1, 1}, ones)
	xSq := g.Op("Conv", []string{g.Op("Mul", []string{x, x}), onesW}, onnx.AttrInts("kernel_shape", 1, 1))
	xSq = g.Op("Reshape", []string{xSq, g.InitializerInt64("location_scalar_shape", []int64{2}, []int64{n, 1})})

	rows := g.Op("Reshape", []string{x, g.InitializerInt64("feature_rows_shape", []int64{2}, []int64{D, n})})
	rows = g.Op("Transpose", []string{rows}, onnx.AttrInts("perm", 1, 0)) // [n,D]
	minusTwo := e.scalar("minus_two", -2)
	var nearest string // [n,1]: min over entries of ‖m‖² − 2·x·m
	if K > 0 {
		bankT, sq := bankByLocation(bank, int(n), int(K), int(D))
		bankName := g.Initializer("memory_bank", []int64{n, D, K}, bankT)
		sqName := g.Initializer("memory_bank_sq", []int64{n, 1, K}, sq)
		perLoc := g.Op("Reshape", []string{rows, g.InitializerInt64("location_rows_shape", []int64{3}, []int64{n, 1, D})})
		dot := g.Op("MatMul", []string{perLoc, bankName}) // [n,1,K]
		d2 := g.Op("Add", []string{g.Op("Mul", []string{dot, minusTwo}), sqName})
		nearest = g.Op("ReduceMin", []string{d2}, onnx.AttrInts("axes", 2), onnx.AttrInt("keepdims", 0)) // [n,1]
	}
	if G > 0 {
		// Every location against the same G entries: one [n,D]×[D,G] MatMul.
		gsq := squaredNorms(global, int(D))
		// 1-D, so that ONNX Runtime folds the Add into the product's bias.
		gsqName := g.Initializer("memory_global_sq", []int64{G}, gsq)
		var prod string // [n,G]: −2·x·g
		if spec.GlobalInt8 {
			q := make([]int8, len(global))
			for j := range G {
				for c := range D {
					q[int64(c)*G+j] = Int8Step(global[j*D+int64(c)], spec.GlobalScale)
				}
			}
			gName := g.InitializerInt8("memory_global_int8", []int64{D, G}, q)
			// DynamicQuantizeLinear → MatMulInteger → Cast → Mul by the
			// product of the scales: the pattern ONNX Runtime fuses into
			// one integer product with a float result (a static
			// QuantizeLinear measured twice as slow here, unfused).
			xq := g.Node("DynamicQuantizeLinear", []string{rows}, []string{"", "", ""})
			prod = g.Op("MatMulInteger", []string{xq[0], gName, xq[2], g.InitializerInt8("memory_global_zero_point", nil, []int8{0})})
			prod = g.Op("Cast", []string{prod}, onnx.AttrInt("to", int64(onnx.Float)))
			scale := g.Op("Mul", []string{xq[1], e.scalar("global_product_scale", -2*spec.GlobalScale)})
			prod = g.Op("Mul", []string{prod, scale})
		} else {
			globalT := make([]float32, len(global))
			for j := range G {
				for c, v := range global[j*D : (j+1)*D] {
					globalT[int64(c)*G+j] = v
				}
			}
			gName := g.Initializer("memory_global", []int64{D, G}, globalT)
			prod = g.Op("Mul", []string{g.Op("MatMul", []string{rows, gName}), minusTwo})
		}
		gd2 := g.Op("Add", []string{prod, gsqName})                                                         // [n,G]
		gNearest := g.Op("ReduceMin", []string{gd2}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 1)) // [n,1]
		if nearest == "" {
			nearest = gNearest
		} else {
			nearest = g.Op("Min", []string{nearest, gNearest})
		}
	}
	nearest = g.Op("Add", []string{nearest, xSq})
	dist := g.Op("Sqrt", []string{g.Op("Max", []string{nearest, e.scalar("zero", 0)})})
	return g.Op("Reshape", []string{dist, g.InitializerInt64("distance_map_shape", []int64{4}, []int64{1, 1, h4, w4})}), nil
}

// MemoryHeatmap is the Go reference of MemoryGraph's tail: the per-location
// nearest distances dist (gridH·gridW, row-major) upsampled, blurred and mapped
// to b/(b+Scale) as the graph does. It returns the heatmap (H·W) and its
// maximum.
func MemoryHeatmap(spec MemorySpec, dist []float32) ([]float32, float32) {
	b := MemoryBlurred(spec, dist)
	heat := make([]float32, len(b))
	var best float32
	for i, v := range b {
		heat[i] = float32(v / (v + spec.Scale))
		best = max(best, heat[i])
	}
	return heat, best
}

// MemoryBlurred upsamples and blurs the per-location distances
// (gridH·gridW) to H·W in float64, before MemoryGraph's final b/(b+Scale).
func MemoryBlurred(spec MemorySpec, dist []float32) []float64 {
	sigma := spec.BlurSigma
	if sigma == 0 {
		sigma = DefaultBlurSigma
	}
	kernel := GaussianKernel(sigma)
	h4, w4 := spec.Grid()
	ay := UpsampleBlurMatrix(h4, spec.Height, kernel)
	ax := UpsampleBlurMatrix(w4, spec.Width, kernel)
	tmp := make([]float64, spec.Height*w4)
	for i := range spec.Height {
		for j := range h4 {
			a := float64(ay[i*h4+j])
			if a == 0 {
				continue
			}
			for c := range w4 {
				tmp[i*w4+c] += a * float64(dist[j*w4+c])
			}
		}
	}
	out := make([]float64, spec.Height*spec.Width)
	for i := range spec.Height {
		for c := range spec.Width {
			var s float64
			for j := range w4 {
				s += tmp[i*w4+j] * float64(ax[c*w4+j])
			}
			out[i*spec.Width+c] = s
		}
	}
	return out
}

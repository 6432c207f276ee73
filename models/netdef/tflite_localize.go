package netdef

import (
	"fmt"
	"math"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/tflite"
)

// LocalizeTFLite emits the TFLite twin of [LocalizeGraph] from the same
// weights: input "image" float32 [1,H,W,3] RGB in [0,1] (NHWC), outputs
// "heatmap" [1,H,W,1] and "score" [1].
func LocalizeTFLite(spec LocalizeSpec, bb *backbone.Weights, head MappingWeights, centre []float32) ([]byte, error) {
	if err := checkSize("localize tflite", spec.Height, spec.Width); err != nil {
		return nil, err
	}
	if spec.D <= 0 {
		return nil, fmt.Errorf("localize tflite: D = %d, want > 0", spec.D)
	}
	kernel, err := blurKernel("localize tflite", spec.BlurSigma, spec.Height, spec.Width)
	if err != nil {
		return nil, err
	}
	H, W, D := spec.Height, spec.Width, spec.D
	if err := head.Validate(D); err != nil {
		return nil, fmt.Errorf("localize tflite: %w", err)
	}
	h4, w4 := H/4, W/4
	n := h4 * w4
	if len(centre) != D*n {
		return nil, fmt.Errorf("localize tflite: centre has %d values, want D·H/4·W/4 = %d·%d·%d = %d", len(centre), D, h4, w4, D*n)
	}
	m := tflite.NewModel("localize")
	e := temitter{m}
	img := m.Input("image", tflite.Float32, 1, H, W, 3)
	l1, l2, l3, err := emitBackboneTFLite(e, bb, img)
	if err != nil {
		return nil, fmt.Errorf("localize tflite: %w", err)
	}
	x := emitFirstMappingTFLite(e, head.Layers[0], "mapping.0", l1, l2, l3, h4, w4)
	for i, l := range head.Layers[1:] {
		x = e.conv(e.relu(x), fmt.Sprintf("mapping.%d", i+1), l, 1, 0, false)
	}
	// F_C in NHWC and its per-location norm (float64), as in LocalizeGraph.
	fc := make([]float32, len(centre))
	norms := make([]float32, n)
	for p := range n {
		var s float64
		for c := range D {
			v := centre[c*n+p]
			fc[p*D+c] = v
			s += float64(v) * float64(v)
		}
		norms[p] = float32(math.Sqrt(s))
	}
	fcT := m.Const("centre", []int{1, h4, w4, D}, fc)
	fcNorm := m.Const("centre_norm", []int{1, h4, w4, 1}, norms)
	dot := e.channelSum(e.binary(tflite.OpMul, x, fcT))
	fmNorm := e.binary(tflite.OpMaximum, e.unary(tflite.OpSqrt, e.channelSum(e.binary(tflite.OpMul, x, x))), e.scalar("norm_floor", CosineNormFloor))
	den := e.binary(tflite.OpAdd, e.binary(tflite.OpMul, fmNorm, fcNorm), e.scalar("cos_eps", CosineEps))
	cos := e.binary(tflite.OpDiv, dot, den)
	dist := e.binary(tflite.OpMul, e.binary(tflite.OpSub, e.scalar("one", 1), cos), e.scalar("half", 0.5))
	e.heatmapAndScore(e.upsampleBlur(dist, h4, w4, H, W, kernel), H, W)
	return m.Marshal()
}

package netdef_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/tflite/tflitetest"
)

func randomImage(seed uint64, s [4]int) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, s[0]*s[1]*s[2]*s[3])
	for i := range v {
		v[i] = r.Float32()
	}
	return v
}

// TestTFLiteTwinsMatchONNXRuntime exports each graph as ONNX and as TFLite
// from the same weights, runs the TFLite models in both WASM builds of the
// TensorFlow Lite interpreter (LiteRT.js and tfjs-tflite, pinned in
// tools/tflite-check/package-lock.json) and compares them with ONNX
// Runtime: float graphs within 1e-4, the int8 memory comparison within one
// quantisation step of the features.
func TestTFLiteTwinsMatchONNXRuntime(t *testing.T) {
	tflitetest.Runner(t) // fail early, before any export, without Node
	rt := infertest.Runtime(t)
	bb := infertest.Backbone(t)
	const H, W = 96, 128 // not square

	var twins []tflitetest.Graph
	add := func(name string, onnxModel, tfl []byte, err error, inputs map[string][]float32, shapes map[string][4]int, check func(string, []float32, []float32) (float64, error)) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		twins = append(twins, tflitetest.Graph{Name: name, ONNX: onnxModel, TFLite: tfl, Inputs: inputs, Shapes: shapes, Check: check})
	}
	imgShape := [4]int{1, 3, H, W}
	image := randomImage(1, imgShape)
	imageIn := map[string][]float32{"image": image}
	imageShapes := map[string][4]int{"image": imgShape}

	// The paper's localisation: 2-layer N_M and centres.
	start := time.Now()
	lspec := netdef.LocalizeSpec{Height: H, Width: W, D: 32}
	head := netdef.RandomMapping(2, 32, 2)
	centre := make([]float32, 32*(H/4)*(W/4))
	r := rand.New(rand.NewPCG(3, 3))
	for i := range centre {
		centre[i] = float32(r.NormFloat64())
	}
	lo, err := netdef.LocalizeGraph(lspec, bb, head, centre)
	if err != nil {
		t.Fatal(err)
	}
	lt, err := netdef.LocalizeTFLite(lspec, bb, head, centre)
	add("localize-centres", lo, lt, err, imageIn, imageShapes, nil)

	// The training default's memory: layers 2–3 averaged each, 8-pixel
	// grid, int8 global entries.
	const step = 1.0 / 64
	mspec := netdef.MemorySpec{Height: H, Width: W, Layers: []int{2, 3}, Stride: 8, D: 384, Global: 256,
		AverageEachLayer: true, GlobalInt8: true, GlobalScale: step, Scale: 1}
	global := make([]float32, mspec.Global*mspec.D)
	for i := range global {
		global[i] = float32(r.IntN(128)) * step
	}
	mo, err := netdef.MemoryGraph(mspec, bb, netdef.ConvWeights{}, nil, global)
	if err != nil {
		t.Fatal(err)
	}
	mt, err := netdef.MemoryTFLite(mspec, bb, netdef.ConvWeights{}, nil, global)
	heatCheck, parts := tflitetest.Int8Memory(t, rt, netdef.MemoryModel{Spec: mspec, Backbone: bb, Global: global}, image)
	add("memory-int8", mo, mt, err, imageIn, imageShapes, heatCheck)
	twins = append(twins, parts...)

	// A float memory with a projection, entries per location and global
	// ones (BATCH_MATMUL, MINIMUM, the commuted first 1×1 convolution).
	pspec := netdef.MemorySpec{Height: H, Width: W, D: 24, Entries: 3, Global: 16, Scale: 2}
	gh, gw := pspec.Grid()
	proj := netdef.RandomMapping(5, 24, 1).Layers[0]
	bank := make([]float32, gh*gw*3*24)
	for i := range bank {
		bank[i] = float32(r.NormFloat64())
	}
	pglobal := make([]float32, 16*24)
	for i := range pglobal {
		pglobal[i] = float32(r.NormFloat64())
	}
	po, err := netdef.MemoryGraph(pspec, bb, proj, bank, pglobal)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := netdef.MemoryTFLite(pspec, bb, proj, bank, pglobal)
	add("memory-float", po, pt, err, imageIn, imageShapes, nil)

	// The IMM regressor (grey, not square), with a non-zero output layer.
	aspec := netdef.AlignSpec{Channels: 1, Height: 64, Width: 80}
	aw := netdef.NewAlignWeights(7, 1)
	for i := range aw.Out.Weight {
		aw.Out.Weight[i] = float32(r.NormFloat64()) * 0.1
	}
	aw.Out.Bias = []float32{0.1, -0.2, 0.05}
	ao, err := netdef.AlignGraph(aspec, aw)
	if err != nil {
		t.Fatal(err)
	}
	at, err := netdef.AlignTFLite(aspec, aw)
	alShape := [4]int{1, 1, 64, 80}
	add("align", ao, at, err, map[string][]float32{"image": randomImage(8, alShape), "template": randomImage(9, alShape)},
		map[string][4]int{"image": alShape, "template": alShape}, nil)
	exportTime := time.Since(start)

	for _, tw := range twins {
		t.Logf("%s: onnx %d bytes, tflite %d bytes", tw.Name, len(tw.ONNX), len(tw.TFLite))
	}
	t.Logf("export of %d graph pairs: %v", len(twins), exportTime.Round(time.Millisecond))
	tflitetest.Compare(t, rt, twins)
}

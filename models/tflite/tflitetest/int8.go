package tflitetest

import (
	"fmt"
	"math"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/models/netdef"
)

// Int8Memory returns what checks an int8 memory m (GlobalInt8) on image
// (NCHW, the localisation graph's input): the heatmap check for its
// localisation graph pair, and two more pairs: its features alone
// (netdef.MemoryFeaturesGraph and its twin, float, FloatCheck) and its
// comparison alone (netdef.MemoryDistanceGraph and its twin, on the
// features ONNX Runtime computes for image), checked as below. The
// heatmap's own bound is loose; the two parts hold the path tightly.
//
// ONNX Runtime quantises the frame's features to uint8 with one step s =
// range/255 (0 in the range); TFLite's hybrid FULLY_CONNECTED quantises
// each location to int8 with its own range, within the frame's. Each
// feature is thus off by at most about s/2 in either, so x·g differs by at
// most s·Σ|g| and d² = ‖x‖² − 2·x·g + ‖g‖² by twice that: one quantisation
// step of the features in every coordinate. The heatmap follows: |Δd| =
// |Δd²|/(d_onnx + d_tflite) ≤ bound/min d_onnx, the blur averages
// (non-negative weights summing to 1) and b/(b+Scale) has a slope ≤
// 1/Scale; 1e-4 is added for the float part.
func Int8Memory(tb testing.TB, rt *infer.Runtime, m netdef.MemoryModel, image []float32) (heatCheck func(string, []float32, []float32) (float64, error), parts []Graph) {
	tb.Helper()
	spec := m.Spec
	if !spec.GlobalInt8 || spec.Global == 0 {
		tb.Fatalf("Int8Memory: the memory has no int8 global entries")
	}
	fo, err := netdef.MemoryFeaturesGraph(spec, m.Backbone, m.Projection)
	if err != nil {
		tb.Fatal(err)
	}
	ft, err := netdef.MemoryFeaturesTFLite(spec, m.Backbone, m.Projection)
	if err != nil {
		tb.Fatal(err)
	}
	feats := RunONNX(tb, rt, fo, map[string][]float32{"image": image})["features"]
	lo, hi := 0.0, 0.0
	for _, v := range feats {
		lo, hi = min(lo, float64(v)), max(hi, float64(v))
	}
	step := (hi - lo) / 255
	var sumG float64
	for j := range spec.Global {
		var a float64
		for c := range spec.D {
			a += math.Abs(float64(netdef.Int8Step(m.Global[j*spec.D+c], spec.GlobalScale)) * float64(spec.GlobalScale))
		}
		sumG = max(sumG, a)
	}
	d2Tol := 2 * step * sumG * (1 + 1e-3)
	do, err := netdef.MemoryDistanceGraph(spec, m.Bank, m.Global)
	if err != nil {
		tb.Fatal(err)
	}
	dt, err := netdef.MemoryDistanceTFLite(spec, m.Bank, m.Global)
	if err != nil {
		tb.Fatal(err)
	}
	minDist := math.Inf(1)
	for _, v := range RunONNX(tb, rt, do, map[string][]float32{"features": feats})["distances"] {
		minDist = min(minDist, float64(v))
	}
	heatTol := d2Tol/max(minDist, 1e-6)/spec.Scale + 1e-4
	tb.Logf("int8 memory: feature step %.4g, Σ|g| ≤ %.4g: |Δd²| ≤ %.4g, heatmap |Δ| ≤ %.4g (min distance %.4g)", step, sumG, d2Tol, heatTol, minDist)
	gh, gw := spec.Grid()
	img := [4]int{1, 3, spec.Height, spec.Width}
	parts = append(parts, Graph{Name: "memory-features", ONNX: fo, TFLite: ft,
		Inputs: map[string][]float32{"image": image}, Shapes: map[string][4]int{"image": img},
		OutputShapes: map[string][4]int{"features": {1, spec.D, gh, gw}}})
	parts = append(parts, Graph{Name: "memory-int8-distances", ONNX: do, TFLite: dt,
		Inputs: map[string][]float32{"features": feats}, Shapes: map[string][4]int{"features": {1, spec.D, gh, gw}},
		Check: func(output string, got, want []float32) (float64, error) {
			var worst float64
			for i := range got {
				d := math.Abs(float64(got[i])*float64(got[i]) - float64(want[i])*float64(want[i]))
				worst = max(worst, d)
				if !(d <= d2Tol) {
					return worst, fmt.Errorf("%s[%d] = %g, ONNX Runtime %g: |Δd²| = %.3g > %.3g (one feature quantisation step)", output, i, got[i], want[i], d, d2Tol)
				}
			}
			return worst, nil
		}})
	heatCheck = func(output string, got, want []float32) (float64, error) {
		var worst float64
		for i := range got {
			d := math.Abs(float64(got[i]) - float64(want[i]))
			worst = max(worst, d)
			if !(d <= heatTol) {
				return worst, fmt.Errorf("%s[%d] = %g, ONNX Runtime %g: |Δ| = %.3g > %.3g (one feature quantisation step)", output, i, got[i], want[i], d, heatTol)
			}
		}
		return worst, nil
	}
	return heatCheck, parts
}

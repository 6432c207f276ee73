// Package tflitetest runs TFLite twins in the two WASM builds of the
// TensorFlow Lite interpreter that tools/tflite-check pins (LiteRT.js and
// tfjs-tflite, through its Node runner run.js) and compares them with ONNX
// Runtime on the ONNX graphs they twin. Node and the interpreters are part
// of the build (scripts/deps.sh installs them; CI runs it): without them a
// test fails, saying so.
package tflitetest

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/models/tflite"
)

// interpreters names the runner's two interpreters.
func interpreters() []string { return []string{"litert", "tfjs"} }

// Graph is one graph exported both ways.
type Graph struct {
	// Name labels the graph in messages and file names.
	Name string
	// ONNX and TFLite are the two models.
	ONNX, TFLite []byte
	// Inputs are the ONNX inputs by name, NCHW (or of rank < 4 as is);
	// the TFLite inputs are the same values in NHWC.
	Inputs map[string][]float32
	// Shapes are the NCHW shapes of 4-D inputs.
	Shapes map[string][4]int
	// OutputShapes are the NCHW shapes of multi-channel 4-D outputs,
	// converted from the twin's NHWC before the check (single-channel
	// maps are the same in memory either way).
	OutputShapes map[string][4]int
	// Check compares one output with ONNX Runtime's and returns the
	// largest error and an error past the tolerance; nil means FloatCheck.
	Check func(output string, got, want []float32) (float64, error)
}

// Result is the largest error of one output in one interpreter.
type Result struct {
	Graph, Interpreter, Output string
	MaxAbs                     float64
}

// FloatCheck is the float twins' bound: |tflite − onnx| ≤ 1e-4 +
// 1e-4·|onnx|. The outputs are heatmaps in [0,1), a score and (tx, ty, θ)
// of order 1: an absolute 1e-4 is far below what a threshold resolves and
// far above float32 rounding through ~20 layers (measured ≤ 2e-7), and the
// relative term keeps the bound meaningful for larger values.
func FloatCheck(output string, got, want []float32) (float64, error) {
	var worst float64
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		worst = max(worst, d)
		if !(d <= 1e-4+1e-4*math.Abs(float64(want[i]))) {
			return worst, fmt.Errorf("%s[%d] = %g, ONNX Runtime %g: |Δ| = %.3g > 1e-4·(1+|ref|)", output, i, got[i], want[i], d)
		}
	}
	return worst, nil
}

// Runner returns node and tools/tflite-check/run.js, or fails the test
// saying to run scripts/deps.sh.
func Runner(tb testing.TB) (node, script string) {
	tb.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		tb.Fatalf("node not found (%v): run scripts/deps.sh (make deps), which installs Node and tools/tflite-check/node_modules", err)
	}
	dir, err := checkDir()
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range []string{"node_modules/@litertjs/core/package.json", "node_modules/@tensorflow/tfjs-tflite/package.json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			tb.Fatalf("tools/tflite-check/%s missing: run scripts/deps.sh (make deps) to install the pinned TFLite interpreters (%v)", p, err)
		}
	}
	return node, filepath.Join(dir, "run.js")
}

// checkDir finds tools/tflite-check walking up from the working directory.
func checkDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "tools", "tflite-check", "run.js")
		if _, err := os.Stat(p); err == nil {
			return filepath.Dir(p), nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("tools/tflite-check/run.js not found above the working directory")
		}
	}
}

// NHWC converts NCHW data of shape s to NHWC.
func NHWC(v []float32, s [4]int) []float32 {
	c, h, w := s[1], s[2], s[3]
	out := make([]float32, len(v))
	for ci := range c {
		for y := range h {
			for x := range w {
				out[(y*w+x)*c+ci] = v[(ci*h+y)*w+x]
			}
		}
	}
	return out
}

// nchw converts NHWC data to NCHW of shape s.
func nchw(v []float32, s [4]int) []float32 {
	c, h, w := s[1], s[2], s[3]
	out := make([]float32, len(v))
	for ci := range c {
		for y := range h {
			for x := range w {
				out[(ci*h+y)*w+x] = v[(y*w+x)*c+ci]
			}
		}
	}
	return out
}

// RunONNX runs an ONNX graph on ONNX Runtime (one thread) and returns its outputs.
func RunONNX(tb testing.TB, rt *infer.Runtime, model []byte, inputs map[string][]float32) map[string][]float32 {
	tb.Helper()
	s, err := rt.NewSession(model, infer.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	for name, v := range inputs {
		in, err := s.Input(name)
		if err != nil {
			tb.Fatal(err)
		}
		copy(in, v)
	}
	if err := s.Run(); err != nil {
		tb.Fatal(err)
	}
	out := map[string][]float32{}
	for _, o := range s.Outputs() {
		v, err := s.Output(o.Name)
		if err != nil {
			tb.Fatal(err)
		}
		out[o.Name] = slices.Clone(v)
	}
	return out
}

type job struct {
	Model  string            `json:"model"`
	Inputs map[string]string `json:"inputs"`
	Out    string            `json:"out"`
}

// Compare runs every graph on ONNX Runtime and its twin in both
// interpreters (one Node process), checks each output, reports every
// failure with tb.Errorf and returns the largest errors.
func Compare(tb testing.TB, rt *infer.Runtime, graphs []Graph) []Result {
	tb.Helper()
	node, script := Runner(tb)
	dir := tb.TempDir()
	var jobs []job
	refs := make([]map[string][]float32, len(graphs))
	for i, g := range graphs {
		info, err := tflite.ReadModelInfo(g.TFLite)
		if err != nil {
			tb.Fatalf("%s: %v", g.Name, err)
		}
		refs[i] = RunONNX(tb, rt, g.ONNX, g.Inputs)
		j := job{Model: filepath.Join(dir, g.Name+".tflite"), Inputs: map[string]string{}, Out: filepath.Join(dir, g.Name)}
		if err := os.WriteFile(j.Model, g.TFLite, 0o644); err != nil {
			tb.Fatal(err)
		}
		if len(info.Inputs) != len(g.Inputs) {
			tb.Fatalf("%s: TFLite inputs %v, ONNX inputs %d", g.Name, info.Inputs, len(g.Inputs))
		}
		for _, in := range info.Inputs {
			v, ok := g.Inputs[in.Name]
			if !ok {
				tb.Fatalf("%s: TFLite input %q is not an ONNX input", g.Name, in.Name)
			}
			if sh, ok := g.Shapes[in.Name]; ok {
				if want := []int{sh[0], sh[2], sh[3], sh[1]}; !slices.Equal(in.Shape, want) {
					tb.Fatalf("%s: TFLite input %q has shape %v, want NHWC %v", g.Name, in.Name, in.Shape, want)
				}
				v = NHWC(v, sh)
			}
			p := filepath.Join(dir, g.Name+"."+in.Name+".f32")
			writeF32(tb, p, v)
			j.Inputs[in.Name] = p
		}
		if len(info.Outputs) != len(refs[i]) {
			tb.Fatalf("%s: TFLite outputs %v, ONNX outputs %d", g.Name, info.Outputs, len(refs[i]))
		}
		for _, out := range info.Outputs {
			if _, ok := refs[i][out.Name]; !ok {
				tb.Fatalf("%s: TFLite output %q is not an ONNX output", g.Name, out.Name)
			}
		}
		jobs = append(jobs, j)
	}
	jobFile := filepath.Join(dir, "job.json")
	b, err := json.Marshal(map[string]any{"jobs": jobs})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(jobFile, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command(node, script, jobFile).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		if len(stderr) > 4000 {
			stderr = stderr[len(stderr)-4000:]
		}
		tb.Fatalf("%s %s: %v\n%s", node, script, err, stderr)
	}
	var summary []struct {
		Model       string  `json:"model"`
		Interpreter string  `json:"interpreter"`
		Seconds     float64 `json:"seconds"`
	}
	if err := json.Unmarshal(out, &summary); err != nil {
		tb.Fatalf("runner output %q: %v", out, err)
	}
	tb.Logf("TFLite interpreters: %d runs in %v", len(summary), time.Since(start).Round(time.Millisecond))
	var res []Result
	for i, g := range graphs {
		check := g.Check
		if check == nil {
			check = FloatCheck
		}
		for _, interp := range interpreters() {
			for _, name := range slices.Sorted(maps.Keys(refs[i])) {
				want := refs[i][name]
				got := readF32(tb, filepath.Join(dir, g.Name, interp, name+".f32"))
				if len(got) != len(want) {
					tb.Errorf("%s on %s: output %q has %d values, ONNX Runtime %d", g.Name, interp, name, len(got), len(want))
					continue
				}
				if sh, ok := g.OutputShapes[name]; ok {
					got = nchw(got, sh)
				}
				worst, err := check(name, got, want)
				if err != nil {
					tb.Errorf("%s on %s: %v", g.Name, interp, err)
				}
				tb.Logf("%s on %s: %s max |Δ| %.3g", g.Name, interp, name, worst)
				res = append(res, Result{Graph: g.Name, Interpreter: interp, Output: name, MaxAbs: worst})
			}
		}
	}
	return res
}

func writeF32(tb testing.TB, path string, v []float32) {
	tb.Helper()
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func readF32(tb testing.TB, path string) []float32 {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

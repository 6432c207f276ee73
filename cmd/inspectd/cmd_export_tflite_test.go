//go:build workstation

package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/tflite/tflitetest"
)

func TestExportTFLiteCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bundle")
	if _, err := netdef.WriteRandomBundle(in, netdef.RandomBundleOptions{Height: 32, Width: 48, AlignSize: 16, SharedEntries: 8, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "twins")
	code, stdout, stderr := runCLI(t, "export-tflite", "--bundle", in, "--out", out)
	if code != 0 {
		t.Fatalf("export-tflite: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "localize.tflite") || !strings.Contains(stdout, "align.tflite") {
		t.Errorf("stdout %q names neither twin", stdout)
	}
	b, err := bundle.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.LocalizeTFLite) == 0 || len(b.AlignTFLite) == 0 {
		t.Fatalf("twins not loaded: %d and %d bytes", len(b.LocalizeTFLite), len(b.AlignTFLite))
	}
	orig, err := bundle.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(orig.LocalizeGraph) != string(b.LocalizeGraph) || b.Manifest.Calibration != orig.Manifest.Calibration {
		t.Error("the copy's ONNX graph or calibration differs from the source bundle's")
	}

	// OUT exists: refused, left as it was; no staging left behind.
	code, _, stderr = runCLI(t, "export-tflite", "--bundle", in, "--out", out)
	if code == 0 || !strings.Contains(stderr, "not empty") {
		t.Errorf("second export to the same --out: exit %d, stderr %q; want a refusal naming the non-empty directory", code, stderr)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only bundle and twins", names)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bundle", in}, "--bundle and --out are required"},
		{[]string{"--bundle", in, "--out", filepath.Join(in, "sub")}, "overlaps --bundle"},
		{[]string{"--bundle", filepath.Join(dir, "missing"), "--out", filepath.Join(dir, "x")}, "model bundle:"},
	} {
		code, _, stderr := runCLI(t, append([]string{"export-tflite"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("export-tflite %v: exit %d, stderr %q; want %q", tc.args, code, stderr, tc.want)
		}
	}
}

// checkTrainedTwins runs the TFLite twins of the trained bundle in dir in
// both WASM interpreters and compares them with ONNX Runtime on its ONNX
// graphs: within 1e-4 (tflitetest.FloatCheck), an int8 memory within one
// quantisation step of its features (tflitetest.Int8Memory).
func checkTrainedTwins(t *testing.T, dir string) {
	t.Helper()
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	random := func(s [4]int) []float32 {
		v := make([]float32, s[0]*s[1]*s[2]*s[3])
		for i := range v {
			v[i] = r.Float32()
		}
		return v
	}
	rt := infertest.Runtime(t)
	img := [4]int{1, 3, b.Manifest.Input.Height, b.Manifest.Input.Width}
	image := random(img)
	graphs := []tflitetest.Graph{{Name: "trained-localize", ONNX: b.LocalizeGraph, TFLite: b.LocalizeTFLite,
		Inputs: map[string][]float32{bundle.InputImage: image}, Shapes: map[string][4]int{bundle.InputImage: img}}}
	if b.Manifest.Localize.GlobalPrecision == bundle.PrecisionInt8 {
		m, err := netdef.ReadMemoryModel(b)
		if err != nil {
			t.Fatal(err)
		}
		var parts []tflitetest.Graph
		graphs[0].Check, parts = tflitetest.Int8Memory(t, rt, m, image)
		graphs = append(graphs, parts...)
	}
	if b.AlignTFLite != nil {
		al := [4]int{1, b.Manifest.Align.Channels, b.Manifest.Align.Height, b.Manifest.Align.Width}
		graphs = append(graphs, tflitetest.Graph{Name: "trained-align", ONNX: b.AlignGraph, TFLite: b.AlignTFLite,
			Inputs: map[string][]float32{bundle.InputImage: random(al), bundle.InputTemplate: random(al)},
			Shapes: map[string][4]int{bundle.InputImage: al, bundle.InputTemplate: al}})
	}
	tflitetest.Compare(t, rt, graphs)
}

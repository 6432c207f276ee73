package infer

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sbinet/npyio/npy"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// TestTorchReferenceMatchesEngine checks that bench/torch_reference.py, the
// PyTorch network the speed comparison times, computes the same heatmap as
// the exported graph in ONNX Runtime — so the comparison is like for like.
func TestTorchReferenceMatchesEngine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: 64, Width: 96, D: 16, MappingLayers: 2, NoAlign: true, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(t.TempDir(), "heatmap.npy")
	cmd := exec.Command("/usr/bin/python3", "../bench/torch_reference.py", "--bundle", dir, "--iterations", "1", "--threads", "1", "--dump", dump)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("torch_reference.py (needs python3-torch and python3-onnx; `make deps`): %v\n%s", err, out)
	}
	f, err := os.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := npy.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var want []float32
	if err := r.Read(&want); err != nil {
		t.Fatal(err)
	}

	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, openRuntime(t), b.LocalizeGraph, SessionOptions{IntraOpThreads: 1})
	in, _ := s.Input(bundle.InputImage)
	for i := range in {
		in[i] = float32(i%251) / 251
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Output(bundle.OutputHeatmap)
	if len(got) != len(want) {
		t.Fatalf("heatmap has %d values, torch %d", len(got), len(want))
	}
	worst := 0.0
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if worst > 1e-4 {
		t.Errorf("max |ORT − torch| = %g, want ≤ 1e-4", worst)
	}
	t.Logf("max |ORT − torch| = %g", worst)
}

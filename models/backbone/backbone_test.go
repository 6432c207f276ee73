package backbone

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeNPY writes a little-endian float32 C-order .npy (format 1.0) file.
func writeNPY(t *testing.T, path string, shape []int64, data []float32) {
	t.Helper()
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", sh)
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(header)))
	b.WriteString(header)
	binary.Write(&b, binary.LittleEndian, data)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testWeights returns random weights with non-zero biases.
func testWeights(seed uint64) *Weights {
	w := Random(seed)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range w.Tensors {
		if len(w.Tensors[i].Shape) == 1 {
			for j := range w.Tensors[i].Data {
				w.Tensors[i].Data[j] = float32(r.NormFloat64() * 0.3)
			}
		}
	}
	return w
}

func writeDir(t *testing.T, w *Weights) string {
	t.Helper()
	dir := t.TempDir()
	for _, tn := range w.Tensors {
		writeNPY(t, filepath.Join(dir, tn.Name+".npy"), tn.Shape, tn.Data)
	}
	return dir
}

func TestSpec(t *testing.T) {
	spec := Spec()
	if len(spec) != 30 {
		t.Fatalf("Spec has %d tensors, want 30", len(spec))
	}
	var params int64
	for _, s := range spec {
		params += numel(s.Shape)
	}
	// torchvision resnet18 conv1..layer3 conv weights (2,778,304) plus 2,240 folded biases.
	if params != 2778304+2240 {
		t.Fatalf("Spec has %d parameters, want %d", params, 2778304+2240)
	}
	want := map[string][]int64{
		"conv1.weight":                 {64, 3, 7, 7},
		"layer1.1.conv2.weight":        {64, 64, 3, 3},
		"layer2.0.conv1.weight":        {128, 64, 3, 3},
		"layer2.0.downsample.0.weight": {128, 64, 1, 1},
		"layer3.0.downsample.0.bias":   {256},
		"layer3.1.conv2.weight":        {256, 256, 3, 3},
	}
	for name, shape := range want {
		i := slices.IndexFunc(spec, func(s TensorSpec) bool { return s.Name == name })
		if i < 0 || !slices.Equal(spec[i].Shape, shape) {
			t.Errorf("%s: got index %d, want shape %v", name, i, shape)
		}
	}
}

func TestLoadNPYDir(t *testing.T) {
	w := testWeights(3)
	dir := writeDir(t, w)
	writeNPY(t, filepath.Join(dir, "layer4.0.conv1.weight.npy"), []int64{2}, []float32{1, 2})
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("x"), 0o644)
	got, err := LoadNPYDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint() != w.Fingerprint() {
		t.Fatal("loaded weights differ from written weights")
	}
	if !slices.Equal(got.Ignored, []string{"layer4.0.conv1.weight.npy"}) {
		t.Fatalf("Ignored = %v", got.Ignored)
	}
}

func TestLoadNPYDirErrors(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(dir string)
		want   []string
	}{
		{"missing file", func(dir string) { os.Remove(filepath.Join(dir, "layer2.1.conv1.bias.npy")) },
			[]string{"layer2.1.conv1.bias.npy", "no such file"}},
		{"wrong shape", func(dir string) {
			writeNPY(t, filepath.Join(dir, "layer1.0.conv1.weight.npy"), []int64{64, 64, 3, 1}, make([]float32, 64*64*3))
		}, []string{"layer1.0.conv1.weight.npy", "shape [64 64 3 1], want [64 64 3 3]"}},
		{"wrong dtype", func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "conv1.bias.npy"))
			os.WriteFile(filepath.Join(dir, "conv1.bias.npy"), bytes.Replace(b, []byte("<f4"), []byte("<i4"), 1), 0o644)
		}, []string{"conv1.bias.npy", `dtype "<i4"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDir(t, Random(1))
			tc.break_(dir)
			_, err := LoadNPYDir(dir)
			if err == nil {
				t.Fatal("LoadNPYDir succeeded on broken dir")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFingerprintAndRandom(t *testing.T) {
	a, b := Random(5), Random(5)
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("Random is not deterministic")
	}
	if Random(6).Fingerprint() == a.Fingerprint() {
		t.Fatal("different seeds give the same weights")
	}
	if !strings.HasPrefix(a.Fingerprint(), "sha256:") || len(a.Fingerprint()) != 7+64 {
		t.Fatalf("bad fingerprint %q", a.Fingerprint())
	}
	b.Tensors[29].Data[0] += 1e-6
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("fingerprint ignores a data change")
	}
	// He init: std of layer3 conv weights is sqrt(2/fan_in).
	w, _ := a.Tensor("layer3.1.conv2.weight")
	var ss float64
	for _, v := range w.Data {
		ss += float64(v) * float64(v)
	}
	std, want := math.Sqrt(ss/float64(len(w.Data))), math.Sqrt(2.0/(256*9))
	if math.Abs(std-want) > 0.02*want {
		t.Fatalf("He std %g, want %g", std, want)
	}
	if _, err := a.Tensor("fc.weight"); err == nil {
		t.Fatal("Tensor(fc.weight) found")
	}
	bad := Random(1)
	bad.Tensors[3].Shape = []int64{1}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "layer1.0.conv1.bias") {
		t.Fatalf("Validate on bad shape: %v", err)
	}
}

func TestLocate(t *testing.T) {
	root := t.TempDir()
	shared := filepath.Join(root, "shared", "backbones", "resnet18")
	work := filepath.Join(root, "main", "models", "backbone")
	other := filepath.Join(root, "elsewhere")
	for _, d := range []string{shared, work, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeNPY(t, filepath.Join(shared, "conv1.weight.npy"), []int64{1}, []float32{0})
	writeNPY(t, filepath.Join(other, "conv1.weight.npy"), []int64{1}, []float32{0})
	empty := t.TempDir()
	tests := []struct {
		name, env, wd, system string
		want                  string
		wantErr               []string
	}{
		{"env wins", other, work, "/nonexistent", other, nil},
		{"env invalid", empty, work, "/nonexistent", "", []string{"INSPECTD_BACKBONE=" + empty}},
		{"parent search", "", work, "/nonexistent", filepath.Join(root, "main", "..", "shared", "backbones", "resnet18"), nil},
		{"system dir", "", empty, other, other, nil},
		{"nothing", "", empty, "/nonexistent/sys", "", []string{
			filepath.Join(empty, "..", "shared", "backbones", "resnet18"),
			"/shared/backbones/resnet18", "/nonexistent/sys"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := locate(tc.env, tc.wd, tc.system)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("locate = %q, want error", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Clean(got) != filepath.Clean(tc.want) {
				t.Fatalf("locate = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSharedWeights checks the real weights when they can be found.
func TestSharedWeights(t *testing.T) {
	dir, err := Locate()
	if err != nil {
		t.Skipf("no shared weights: %v", err)
	}
	w, err := LoadNPYDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadTorchvisionPTH(t *testing.T) {
	python := "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Fatalf("this test needs %s with torch and numpy (CI installs python3-torch): %v: %s", python, err, out)
	}
	// Prefer the real shared weights (as the product will see them); fall back to
	// random ones with non-zero biases so the test is self-contained.
	want := testWeights(11)
	dir := ""
	if real, err := Locate(); err == nil {
		if w, err := LoadNPYDir(real); err == nil {
			want, dir = w, real
		}
	}
	if dir == "" {
		dir = writeDir(t, want)
	}
	t.Logf("npy weights from %s", want.Source)
	tmp := t.TempDir()
	good, broken := filepath.Join(tmp, "resnet18.pth"), filepath.Join(tmp, "broken.pth")
	if out, err := exec.Command(python, "testdata/make_pth.py", dir, good, broken).CombinedOutput(); err != nil {
		t.Fatalf("make_pth.py: %v: %s", err, out)
	}
	got, err := LoadTorchvisionPTH(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(got.Ignored) != 0 {
		t.Errorf("Ignored = %v, want none (layer4/fc/num_batches_tracked are expected)", got.Ignored)
	}
	for i, wt := range want.Tensors {
		gt := got.Tensors[i]
		var rms float64
		for _, v := range wt.Data {
			rms += float64(v) * float64(v)
		}
		rms = math.Sqrt(rms / float64(len(wt.Data)))
		for j, v := range wt.Data {
			if d := math.Abs(float64(gt.Data[j]) - float64(v)); d > 1e-5*(math.Abs(float64(v))+rms) {
				t.Fatalf("%s[%d]: folded %g, npy %g", wt.Name, j, gt.Data[j], v)
			}
		}
	}
	_, err = LoadTorchvisionPTH(broken)
	for _, key := range []string{"conv1.weight", "layer2.0.bn1.running_var", broken} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("broken .pth error %v does not name %q", err, key)
		}
	}
	if _, err := LoadTorchvisionPTH(filepath.Join(tmp, "absent.pth")); err == nil || !strings.Contains(err.Error(), "absent.pth") {
		t.Errorf("missing file error %v does not name the file", err)
	}
}

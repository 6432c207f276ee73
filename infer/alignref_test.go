package infer_test

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sbinet/npyio/npy"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
)

func writeNpy(t *testing.T, path string, v []float32) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := npy.Write(f, v); err != nil {
		t.Fatal(err)
	}
}

func readNpy(t *testing.T, path string) []float32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v []float32
	if err := npy.Read(f, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAlignMatchesPyTorch checks the alignment stage against an
// independent PyTorch reimplementation (testdata/align_reference.py):
// the exported regressor in ONNX Runtime predicts the same (tx, ty, θ) as
// the network rebuilt from its initializers, and the daemon's warp
// (preprocess.Fill with Transform.Pixel) samples the image where the
// paper's spatial transformer, affine_grid + grid_sample, does — on a
// non-square image, so that a swapped width and height shows.
func TestAlignMatchesPyTorch(t *testing.T) {
	py := infertest.NeedPython(t, "torch", "onnx")
	const C, H, W = 1, 48, 80
	// Weights with a non-zero output layer: the untrained default predicts
	// exactly the identity, which would compare nothing.
	w := netdef.NewAlignWeights(3, C)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range w.Out.Weight {
		w.Out.Weight[i] = float32(r.NormFloat64() * 0.2)
	}
	for i := range w.Out.Bias {
		w.Out.Bias[i] = float32(r.NormFloat64() * 0.05)
	}
	model, err := netdef.AlignGraph(netdef.AlignSpec{Channels: C, Height: H, Width: W}, w)
	if err != nil {
		t.Fatal(err)
	}

	// A grey test card with structure in both directions.
	src := image.NewGray(image.Rect(0, 0, W, H))
	img := make([]float32, C*H*W)
	tpl := make([]float32, C*H*W)
	for y := range H {
		for x := range W {
			v := 0.5 + 0.3*math.Sin(0.23*float64(x)+0.11*float64(y)) + 0.15*float64((x/8+y/8)%2)
			g := uint8(math.Round(math.Min(1, math.Max(0, v)) * 255))
			src.SetGray(x, y, color.Gray{Y: g})
			img[y*W+x] = float32(g) / 255
			tpl[y*W+x] = float32(math.Min(1, 0.2+0.6*float64(x)/W))
		}
	}
	dir := t.TempDir()
	onnxPath := filepath.Join(dir, "align.onnx")
	if err := os.WriteFile(onnxPath, model, 0o644); err != nil {
		t.Fatal(err)
	}
	tr := preprocess.Transform{Tx: 0.12, Ty: -0.07, Theta: 0.35}
	writeNpy(t, filepath.Join(dir, "image.npy"), img)
	writeNpy(t, filepath.Join(dir, "template.npy"), tpl)
	writeNpy(t, filepath.Join(dir, "tr.npy"), []float32{float32(tr.Tx), float32(tr.Ty), float32(tr.Theta)})
	cmd := exec.Command(py, "testdata/align_reference.py", onnxPath, filepath.Join(dir, "image.npy"), filepath.Join(dir, "template.npy"),
		filepath.Join(dir, "tr.npy"), dir, fmt.Sprintf("%d,%d,%d", C, H, W))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("align_reference.py: %v\n%s", err, out)
	}

	// The regressor.
	rt := infertest.Runtime(t)
	s, err := rt.NewSession(model, infer.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, _ := s.Input(bundle.InputImage)
	copy(in, img)
	in, _ = s.Input(bundle.InputTemplate)
	copy(in, tpl)
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Output(bundle.OutputTransform)
	want := readNpy(t, filepath.Join(dir, "transform.npy"))
	nonzero := false
	for i := range 3 {
		if math.Abs(float64(got[i]-want[i])) > 1e-4 {
			t.Errorf("transform[%d]: ORT %g, PyTorch %g", i, got[i], want[i])
		}
		nonzero = nonzero || math.Abs(float64(want[i])) > 1e-3
	}
	if !nonzero {
		t.Fatalf("reference transform %v is ~0: the comparison proves nothing", want)
	}
	t.Logf("transform ORT %v, PyTorch %v", got, want)

	// The warp.
	warp := tr.Pixel(W, H)
	mine := make([]float32, C*H*W)
	if err := preprocess.Fill(mine, src, preprocess.Spec{Width: W, Height: H, Channels: C, Warp: &warp}); err != nil {
		t.Fatal(err)
	}
	ref := readNpy(t, filepath.Join(dir, "warped.npy"))
	var inner, all float64
	for y := range H {
		for x := range W {
			d := math.Abs(float64(mine[y*W+x] - ref[y*W+x]))
			all = math.Max(all, d)
			// Away from where the source is clamped at its border (the two
			// treat samples beyond the last pixel centre slightly differently).
			if sx, sy := warp.Apply(float64(x), float64(y)); sx >= 0 && sy >= 0 && sx <= W-1 && sy <= H-1 {
				inner = math.Max(inner, d)
			}
		}
	}
	t.Logf("warp: max |preprocess − grid_sample| inside %.2g, everywhere %.2g", inner, all)
	if inner > 1e-4 {
		t.Errorf("warp differs from affine_grid/grid_sample by %g inside the image", inner)
	}
	if all > 0.05 {
		t.Errorf("warp differs from grid_sample (border) by %g", all)
	}
}

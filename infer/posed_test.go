package infer_test

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/infertest"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/rto"
	"github.com/inspectd/inspectd/models/synth"
)

// TestEnginePosedPartLandsOnTemplate: a part moved to a known pose,
// aligned with the transform that undoes that pose and localised, gives the
// heatmap of the same part rendered at the template's pose — the engine
// warps in the direction Align's transform means. The align graph here
// outputs that transform whatever its inputs (zero weights, the transform
// as the output bias), so the test is about the engine's plumbing, not
// about learning; the undoing transform is worked out from the pose with
// the rotation formula, independently of the warp code.
func TestEnginePosedPartLandsOnTemplate(t *testing.T) {
	const size = 64
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: size, Width: size, D: 8, AlignSize: 32, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	// The part: turned 90° counter-clockwise and shifted (4, −3) pixels.
	// A quarter turn about the centre of an even-sized image maps pixel
	// centres onto pixel centres, so neither warp blurs and the aligned
	// part must match the template-pose part up to what the shift brings
	// in at the borders.
	pose := synth.Pose{RotationDeg: 90, ShiftXFrac: 4.0 / size, ShiftYFrac: -3.0 / size}
	// Undo it: output pixel o must sample the posed image where the pose
	// took o, R(o − c) + c + shift with R the counter-clockwise turn; in
	// the transform's convention (θ turns clockwise, shifts in units of
	// half the image) that is θ = −90°, (tx, ty) = 2·shift/size.
	undo := preprocess.Transform{Tx: 2 * pose.ShiftXFrac, Ty: 2 * pose.ShiftYFrac, Theta: -pose.RotationDeg * math.Pi / 180}
	replaceAlignGraph(t, dir, undo)

	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := infer.NewEngine(infertest.Runtime(t), b, infer.EngineOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	ref, err := synth.Render(synth.Plate, size, size, false, synth.Pose{}, synth.None, 11)
	if err != nil {
		t.Fatal(err)
	}
	// Pose it with the dataset generator's own warp (models/rto), which
	// moves the whole frame, background included.
	posedImg, err := rto.Warp(ref.Image, rto.Matrix(pose.RotationDeg, pose.ShiftXFrac*size, pose.ShiftYFrac*size, size, size), rto.BorderReplicate)
	if err != nil {
		t.Fatal(err)
	}
	posed := synth.Sample{Image: posedImg}
	got, err := e.Align(posed.Image, posed.Image.Bounds())
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.Tx-undo.Tx)+math.Abs(got.Ty-undo.Ty)+math.Abs(got.Theta-undo.Theta) > 1e-5 {
		t.Fatalf("Align = %+v, want the graph's constant %+v", got, undo)
	}
	heat := func(img preprocess.Transform, which *synth.Sample) []float32 {
		hm := e.NewHeatmap()
		if _, err := e.Localize(which.Image, which.Image.Bounds(), img, hm); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), hm.Values...)
	}
	want := heat(preprocess.Transform{}, &ref)
	aligned := heat(got, &posed)
	unaligned := heat(preprocess.Transform{}, &posed)
	// Compare the centre, away from what the shift brings in from outside
	// the frame (at most 4 px) and the margin around it where the engine
	// suppresses the heatmap.
	lo := 5 + b.Manifest.Localize.OutsideMargin()
	diff := func(a []float32) float64 {
		var s float64
		n := 0
		for y := lo; y < size-lo; y++ {
			for x := lo; x < size-lo; x++ {
				s += math.Abs(float64(a[y*size+x] - want[y*size+x]))
				n++
			}
		}
		return s / float64(n)
	}
	da, du := diff(aligned), diff(unaligned)
	t.Logf("mean |heatmap − template pose heatmap| in the centre: aligned %.4g, unaligned %.4g", da, du)
	if !(da < 0.1*du) {
		t.Errorf("aligned part differs from the template-pose part by %.4g, unaligned by %.4g; alignment should remove most of the difference", da, du)
	}
}

// replaceAlignGraph swaps the bundle's align graph for one that outputs tr
// for any input, and updates its checksum in the manifest.
func replaceAlignGraph(t *testing.T, dir string, tr preprocess.Transform) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, bundle.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	w := netdef.NewAlignWeights(1, m.Align.Channels)
	for i := range w.Out.Weight {
		w.Out.Weight[i] = 0
	}
	w.Out.Bias = []float32{float32(tr.Tx), float32(tr.Ty), float32(tr.Theta)}
	model, err := netdef.AlignGraph(netdef.AlignSpec{Channels: m.Align.Channels, Height: m.Align.Height, Width: m.Align.Width}, w)
	if err != nil {
		t.Fatal(err)
	}
	old := sha256.Sum256(b.AlignGraph)
	nw := sha256.Sum256(model)
	text := strings.Replace(string(raw), hex.EncodeToString(old[:]), hex.EncodeToString(nw[:]), 1)
	if err := os.WriteFile(filepath.Join(dir, m.Align.Graph), model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestName), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

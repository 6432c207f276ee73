package infer_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/png"
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

	b, e := loadEngine(t, dir)
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

// loadEngine loads the bundle in dir and opens a one-thread engine on it.
func loadEngine(t *testing.T, dir string) (*bundle.Bundle, *infer.Engine) {
	t.Helper()
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := infer.NewEngine(infertest.Runtime(t), b, infer.EngineOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b, e
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

// TestEngineRefinesAlignment: with align.refine = "ecc" the engine pulls a
// regressor answer that is 6 % and 4° off back onto the pose, against the
// bundle's template (the part rendered at the template pose); without it
// the engine returns the regressor's answer as it is. An answer 35° off
// is beyond "ecc" and within "ecc-search".
func TestEngineRefinesAlignment(t *testing.T) {
	const size, frame = 64, 160
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: size, Width: size, D: 8, AlignSize: 64, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	ref, err := synth.Render(synth.Bracket, frame, frame, false, synth.Pose{}, synth.None, 11)
	if err != nil {
		t.Fatal(err)
	}
	replaceTemplate(t, dir, ref.Image, 64)
	pose := synth.Pose{RotationDeg: 10, ShiftXFrac: 6.0 / frame, ShiftYFrac: -4.0 / frame}
	undo := preprocess.Transform{Tx: 2 * pose.ShiftXFrac, Ty: 2 * pose.ShiftYFrac, Theta: -pose.RotationDeg * math.Pi / 180}
	off := preprocess.Transform{Tx: undo.Tx + 0.06, Ty: undo.Ty - 0.04, Theta: undo.Theta + 4*math.Pi/180}
	replaceAlignGraph(t, dir, off)
	posed, err := rto.Warp(ref.Image, rto.Matrix(pose.RotationDeg, pose.ShiftXFrac*frame, pose.ShiftYFrac*frame, frame, frame), rto.BorderReplicate)
	if err != nil {
		t.Fatal(err)
	}
	// Error of a transform in frame pixels: the mean displacement of the
	// frame's corners against the undoing transform.
	errPx := func(tr preprocess.Transform) float64 {
		a, b := tr.Pixel(frame, frame), undo.Pixel(frame, frame)
		var s float64
		for _, c := range [][2]float64{{0, 0}, {frame - 1, 0}, {0, frame - 1}, {frame - 1, frame - 1}} {
			ax, ay := a.Apply(c[0], c[1])
			bx, by := b.Apply(c[0], c[1])
			s += math.Hypot(ax-bx, ay-by) / 4
		}
		return s
	}
	for _, refine := range []bool{false, true} {
		if refine {
			setManifestLine(t, dir, "[align]", `  refine = "ecc"`)
		}
		got := alignOnce(t, dir, posed)
		t.Logf("refine %v: %.2f px off the pose (the regressor: %.2f px)", refine, errPx(got), errPx(off))
		switch {
		case !refine && math.Abs(got.Tx-off.Tx)+math.Abs(got.Ty-off.Ty)+math.Abs(got.Theta-off.Theta) > 1e-5:
			t.Errorf("without refine: Align = %+v, want the regressor's %+v", got, off)
		case refine && !(errPx(got) < 0.25*errPx(off)):
			t.Errorf("with refine: %.2f px off the pose, the regressor %.2f px; want under a quarter", errPx(got), errPx(off))
		}
	}

	// A regressor a wide turn (35°) off: "ecc" cannot reach the pose,
	// "ecc-search" can.
	wide := preprocess.Transform{Tx: undo.Tx + 0.03, Ty: undo.Ty, Theta: undo.Theta + 35*math.Pi/180}
	replaceAlignGraph(t, dir, wide)
	for _, method := range []string{"ecc", "ecc-search"} {
		setManifestText(t, dir, "  refine = \"ecc\"\n", "  refine = \""+method+"\"\n")
		got := alignOnce(t, dir, posed)
		t.Logf("%s from %.0f px off: %.2f px off the pose", method, errPx(wide), errPx(got))
		if reached := errPx(got) < 0.1*errPx(wide); reached != (method == "ecc-search") {
			t.Errorf("%s: %.2f px off the pose from a regressor %.2f px off; want the pose reached by ecc-search only", method, errPx(got), errPx(wide))
		}
	}
}

// replaceTemplate writes img resized to side×side as the bundle's template
// and updates its checksum.
func replaceTemplate(t *testing.T, dir string, img image.Image, side int) {
	t.Helper()
	rgba := image.NewRGBA(image.Rect(0, 0, side, side))
	planes := make([]float32, 3*side*side)
	if err := preprocess.Fill(planes, img, preprocess.Spec{Width: side, Height: side, Channels: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range side * side {
		for c := range 3 {
			rgba.Pix[4*i+c] = uint8(math.Round(float64(planes[c*side*side+i]) * 255))
		}
		rgba.Pix[4*i+3] = 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, rgba); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, bundle.TemplateName)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	oh, nh := sha256.Sum256(old), sha256.Sum256(buf.Bytes())
	setManifestText(t, dir, hex.EncodeToString(oh[:]), hex.EncodeToString(nh[:]))
}

// setManifestLine inserts line after the manifest's line after.
// alignOnce loads the bundle in dir, aligns the whole of frame and closes
// the engine.
func alignOnce(t *testing.T, dir string, frame image.Image) preprocess.Transform {
	t.Helper()
	_, e := loadEngine(t, dir)
	defer e.Close()
	got, err := e.Align(frame, image.Rectangle{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func setManifestLine(t *testing.T, dir, after, line string) {
	t.Helper()
	setManifestText(t, dir, after+"\n", after+"\n"+line+"\n")
}

func setManifestText(t *testing.T, dir, old, new string) {
	t.Helper()
	path := filepath.Join(dir, bundle.ManifestName)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("manifest has no %q", old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(raw), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

package tflite

import (
	"fmt"
	"image"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer/tflite/faketflite"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
)

// fakeLibs builds the stand-ins for libtensorflowlite_c.so and an
// external delegate (package faketflite) and points their log at a file
// the test reads.
func fakeLibs(t *testing.T) (lib, delegate, logPath string) {
	t.Helper()
	if faketflite.LibraryName != LibraryName {
		t.Fatalf("faketflite builds %s, the binding looks for %s", faketflite.LibraryName, LibraryName)
	}
	l := faketflite.Build(t)
	return l.Library, l.Delegate, l.Log
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(path)
	return string(data)
}

// fakeModel is a fake_tflite.c model of one NHWC image input.
func fakeModel(h, w int, outputs ...string) []byte {
	s := fmt.Sprintf("in image f32 1 %d %d 3\n", h, w)
	for _, o := range outputs {
		s += "out " + o + "\n"
	}
	return []byte(s)
}

// onFreshThread runs f on a goroutine locked to a thread that ends with it:
// successive calls run on different threads.
func onFreshThread(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f()
		close(done)
	}()
	<-done
}

func TestFakeLibrarySession(t *testing.T) {
	lib, _, logPath := fakeLibs(t)
	l, err := Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Version() != "fake-2.99" || l.Path() != lib {
		t.Errorf("library %s version %q", l.Path(), l.Version())
	}
	const h, w = 2, 3
	s, err := l.NewSession(fakeModel(h, w, "heatmap f32 1 2 3 1", "score f32 1"), Options{Threads: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readLog(t, logPath), "xnnpack threads=3\ncreate threads=3 delegate=xnnpack\n"; got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	if s.Provider() != "tflite-xnnpack" {
		t.Errorf("provider %q", s.Provider())
	}
	img, _ := s.Input(bundle.InputImage)
	hm, _ := s.Output(bundle.OutputHeatmap)
	score, _ := s.Output(bundle.OutputScore)
	for round := range 3 {
		for i := range img {
			img[i] = float32((i*7+round)%11) / 10 // CHW
		}
		// Each Run from another thread: the interpreter's calls stay on its own.
		var runErr error
		onFreshThread(func() { runErr = s.Run() })
		if runErr != nil {
			t.Fatalf("round %d: %v (log: %s)", round, runErr, readLog(t, logPath))
		}
		max := float32(math.Inf(-1))
		for p := range h * w {
			want := img[p] + 2*img[h*w+p] + 3*img[2*h*w+p]
			if math.Abs(float64(hm[p]-want)) > 1e-6 {
				t.Fatalf("round %d: heatmap[%d] = %v, want R+2G+3B of the CHW input = %v", round, p, hm[p], want)
			}
			max = float32(math.Max(float64(max), float64(want)))
		}
		if score[0] != max {
			t.Errorf("score %v, want %v", score[0], max)
		}
	}
	if a := testing.AllocsPerRun(20, func() { s.Run() }); a != 0 {
		t.Errorf("Run allocates %v times", a)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := readLog(t, logPath), "delete interpreter\ndelete xnnpack\n"; got != want {
		t.Errorf("close calls:\n%s\nwant (interpreter before its delegate):\n%s", got, want)
	}
}

// TestOpenMissingDependency: a library that exists but needs a library
// that does not is reported as such, not as "not found".
func TestOpenMissingDependency(t *testing.T) {
	fakeLibs(t) // skips without a C compiler
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	dir := t.TempDir()
	dep := filepath.Join(dir, "libinspectd_gone.so")
	lib := filepath.Join(dir, LibraryName)
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-o", dep, "-x", "c", "-"},
		{"-shared", "-fPIC", "-o", lib, "testdata/fake_tflite.c", "-L" + dir, "-Wl,--no-as-needed", "-linspectd_gone", "-lpthread"},
	} {
		cmd := exec.Command(cc, args...)
		cmd.Stdin = strings.NewReader("int inspectd_gone(void) { return 1; }\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if err := os.Remove(dep); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, env string }{{"configured", lib, ""}, {"environment", "", lib}} {
		t.Setenv(EnvLibrary, tc.env)
		_, err := Open(tc.path)
		want := "tflite runtime: cannot load " + lib + ": libinspectd_gone.so: cannot open shared object file: No such file or directory; " + hint
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v\nwant %s", tc.name, err, want)
		}
	}
}

func TestFakeLibraryDelegates(t *testing.T) {
	lib, delegate, logPath := fakeLibs(t)
	l, err := Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	model := fakeModel(2, 2, "score f32 1")

	t.Run("external", func(t *testing.T) {
		s, err := l.NewSession(model, Options{Delegate: DelegateExternal, ExternalDelegate: delegate,
			ExternalOptions: map[string]string{"cache_file_path": "/var/lib/inspectd/npu.cache", "backends": "VsiNpu"}})
		if err != nil {
			t.Fatal(err)
		}
		if s.Provider() != "tflite-external" {
			t.Errorf("provider %q", s.Provider())
		}
		s.Close()
		want := "external backends=VsiNpu cache_file_path=/var/lib/inspectd/npu.cache\ncreate threads=0 delegate=external\ndelete interpreter\ndelete external\n"
		if got := readLog(t, logPath); got != want {
			t.Errorf("calls:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("not a plugin", func(t *testing.T) {
		_, err := l.NewSession(model, Options{Delegate: DelegateExternal, ExternalDelegate: lib})
		want := "tflite runtime: the external delegate " + lib + " has no symbol tflite_plugin_create_delegate: it is not a TFLite external delegate plugin"
		if err == nil || err.Error() != want {
			t.Errorf("err = %v\nwant %s", err, want)
		}
	})
	t.Run("gpu missing", func(t *testing.T) {
		_, err := l.NewSession(model, Options{Delegate: DelegateGPU})
		want := "tflite runtime: the GPU delegate (TfLiteGpuDelegateV2Create) is neither in " + lib + " nor in a loadable libtensorflowlite_gpu_delegate.so (looked in: " +
			filepath.Join(filepath.Dir(lib), GPUDelegateLibrary) + ", libtensorflowlite_gpu_delegate.so); install TensorFlow Lite's GPU delegate library or use model.tflite.delegate = \"xnnpack\""
		if err == nil || err.Error() != want {
			t.Errorf("err = %v\nwant %s", err, want)
		}
		if err := l.CheckDelegate(Options{Delegate: DelegateGPU}); err == nil || err.Error() != want {
			t.Errorf("CheckDelegate = %v", err)
		}
		if err := l.CheckDelegate(Options{Delegate: DelegateXNNPack}); err != nil {
			t.Errorf("CheckDelegate(xnnpack) = %v", err)
		}
	})
	t.Run("refused delegate", func(t *testing.T) {
		t.Setenv("FAKE_TFLITE_REFUSE_DELEGATE", "1")
		_, err := l.NewSession(model, Options{})
		want := "tflite session: TfLiteInterpreterCreate failed with the xnnpack delegate: the delegate refused the graph (its messages are on stderr)"
		if err == nil || err.Error() != want {
			t.Errorf("err = %v\nwant %s", err, want)
		}
		s, err := l.NewSession(model, Options{AllowFallback: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Provider() != "tflite-cpu (fallback)" || s.FallbackReason() == nil || s.FallbackReason().Error() != want {
			t.Errorf("fallback: provider %q, reason %v", s.Provider(), s.FallbackReason())
		}
		readLog(t, logPath)
	})
}

// TestFakeLibraryEngine runs the one infer.Engine over a bundle's twins:
// the heatmap the engine returns is the fake graph's R+2G+3B of the
// preprocessed image, so the NHWC transposition is right end to end.
func TestFakeLibraryEngine(t *testing.T) {
	lib, _, _ := fakeLibs(t)
	l, err := Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: 32, Width: 48, D: 8, AlignSize: 16, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	// Twins in memory: bundle.Load verifies real ones; these are the fake's.
	b.LocalizeTFLite = fakeModel(m.Input.Height, m.Input.Width, fmt.Sprintf("heatmap f32 1 %d %d 1", m.Input.Height, m.Input.Width), "score f32 1")
	b.AlignTFLite = []byte(fmt.Sprintf("in image f32 1 %[1]d %[2]d %[3]d\nin template f32 1 %[1]d %[2]d %[3]d\nout transform f32 1 3\n",
		m.Align.Height, m.Align.Width, m.Align.Channels))
	e, err := NewEngine(l, b, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Provider() != "tflite-xnnpack" {
		t.Errorf("provider %q", e.Provider())
	}
	frame := image.NewRGBA(image.Rect(0, 0, 96, 64))
	for i := range frame.Pix {
		frame.Pix[i] = uint8(i * 37 % 251)
	}
	tr, err := e.Align(frame, image.Rectangle{})
	if err != nil {
		t.Fatal(err)
	}
	hm := e.NewHeatmap()
	score, err := e.Localize(frame, image.Rectangle{}, tr, hm)
	if err != nil {
		t.Fatal(err)
	}
	spec := preprocess.Spec{Width: m.Input.Width, Height: m.Input.Height, Channels: 3, Crop: frame.Bounds()}
	if tr != (preprocess.Transform{}) {
		warp := tr.Pixel(frame.Bounds().Dx(), frame.Bounds().Dy())
		spec.Warp = &warp
	}
	chw := make([]float32, 3*m.Input.Width*m.Input.Height)
	if err := preprocess.Fill(chw, frame, spec); err != nil {
		t.Fatal(err)
	}
	n := m.Input.Width * m.Input.Height
	var max float32
	for p := range n {
		want := chw[p] + 2*chw[n+p] + 3*chw[2*n+p]
		if d := math.Abs(float64(hm.Values[p] - want)); d > 1e-5 {
			t.Fatalf("heatmap[%d] = %v, want %v", p, hm.Values[p], want)
		}
		max = float32(math.Max(float64(max), float64(want)))
	}
	// Within rounding: Go and C may fuse the multiply-adds differently (arm64).
	if tr == (preprocess.Transform{}) && math.Abs(float64(score-max)) > 1e-5 {
		t.Errorf("score %v, want the heatmap's maximum %v", score, max)
	}

	// A twin of the wrong layout is refused at start-up.
	b.LocalizeTFLite = []byte(fmt.Sprintf("in image f32 1 3 %d %d\nout heatmap f32 1 %d %d 1\nout score f32 1\n", m.Input.Height, m.Input.Width, m.Input.Height, m.Input.Width))
	_, err = NewEngine(l, b, Options{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf(`engine: localize graph of bundle %s: tflite session: input "image" has shape [1 3 32 48], the manifest implies [1 32 48 3] (NHWC)`, dir)) {
		t.Errorf("NCHW twin: %v", err)
	}
}

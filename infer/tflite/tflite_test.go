package tflite

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

const hint = "install TensorFlow Lite's C library (libtensorflowlite_c.so, e.g. from your board vendor or a TensorFlow build) or set model.tflite.library"

// TestOpenMissingLibrary checks the one start-up line of a machine without
// the library, wherever it was looked for.
func TestOpenMissingLibrary(t *testing.T) {
	if _, err := os.Stat(SystemLibraryPath); err == nil {
		t.Skipf("%s exists on this machine", SystemLibraryPath)
	}
	notLib := filepath.Join(t.TempDir(), "libtensorflowlite_c.so")
	if err := os.WriteFile(notLib, []byte("not a library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, env, want string
	}{
		{"default places", "", "",
			"tflite runtime: libtensorflowlite_c.so not found (looked in: /usr/lib/inspectd/libtensorflowlite_c.so, the standard library paths (ld.so)); " + hint},
		{"configured path", "/nonexistent/libtensorflowlite_c.so", "/also/ignored.so",
			"tflite runtime: cannot load /nonexistent/libtensorflowlite_c.so: No such file or directory; " + hint},
		{"environment", "", "/nonexistent/env/libtensorflowlite_c.so",
			"tflite runtime: cannot load /nonexistent/env/libtensorflowlite_c.so: No such file or directory; " + hint},
		{"not a library", notLib, "",
			"tflite runtime: cannot load " + notLib + ": file too short; " + hint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvLibrary, tc.env)
			l, err := Open(tc.path)
			if err == nil {
				l.Close()
				if tc.path == "" && tc.env == "" {
					t.Skip("libtensorflowlite_c.so is in this machine's standard library paths")
				}
				t.Fatal("Open succeeded")
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Error("the error is more than one line")
			}
		})
	}
}

// TestOpenWithoutSymbols loads a library that is not TFLite's: the error
// names the first symbol of the C API it lacks and the library.
func TestOpenWithoutSymbols(t *testing.T) {
	for _, lib := range []string{"libm.so.6", "libc.so.6"} {
		_, err := Open(lib)
		want := "tflite runtime: " + lib + " has no symbol TfLiteModelCreate: it is not TensorFlow Lite's C library, or too old a version; " + hint
		if err == nil || err.Error() != want {
			t.Errorf("Open(%s) = %v\nwant %s", lib, err, want)
		}
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		want     delegatePlan
		provider string
		err      string
	}{
		{"default is xnnpack", Options{Threads: 2}, delegatePlan{kind: "xnnpack", threads: 2}, "tflite-xnnpack", ""},
		{"none", Options{Delegate: "none", Threads: 4}, delegatePlan{kind: "none", threads: 4}, "tflite-cpu", ""},
		{"gpu, case-insensitive", Options{Delegate: "GPU"}, delegatePlan{kind: "gpu"}, "tflite-gpu", ""},
		{"external with options sorted by key",
			Options{Delegate: "external", ExternalDelegate: "/usr/lib/libvx_delegate.so", ExternalOptions: map[string]string{"z": "1", "backends": "VsiNpu", "m": ""}},
			delegatePlan{kind: "external", library: "/usr/lib/libvx_delegate.so", keys: []string{"backends", "m", "z"}, values: []string{"VsiNpu", "", "1"}}, "tflite-external", ""},
		{"external without library", Options{Delegate: "external"}, delegatePlan{}, "",
			`tflite: delegate "external" needs the path of the delegate library`},
		{"external options with xnnpack", Options{ExternalOptions: map[string]string{"a": "b"}}, delegatePlan{}, "",
			`tflite: an external delegate library or options are set but the delegate is "xnnpack"; they apply to "external" only`},
		{"unknown", Options{Delegate: "npu"}, delegatePlan{}, "",
			`tflite: unknown delegate "npu", want none, xnnpack, gpu, external`},
		{"negative threads", Options{Threads: -1}, delegatePlan{}, "",
			"tflite: threads -1, want 0 (default) or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := plan(tc.opts)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || got.provider() != tc.provider {
				t.Errorf("plan = %+v (%s), want %+v (%s)", got, got.provider(), tc.want, tc.provider)
			}
		})
	}
}

func TestTranspose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h, w, c int
		chw     []float32
		hwc     []float32
	}{
		{"1x1x3", 1, 1, 3, []float32{1, 2, 3}, []float32{1, 2, 3}},
		{"2x2x1 is the same order", 2, 2, 1, []float32{1, 2, 3, 4}, []float32{1, 2, 3, 4}},
		// planes R=[1 2 3 4 5 6], G=[11..16], B=[21..26] of a 2x3 image
		{"2x3x3", 2, 3, 3,
			[]float32{1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16, 21, 22, 23, 24, 25, 26},
			[]float32{1, 11, 21, 2, 12, 22, 3, 13, 23, 4, 14, 24, 5, 15, 25, 6, 16, 26}},
		{"1x2x2", 1, 2, 2, []float32{1, 2, 3, 4}, []float32{1, 3, 2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hwc := make([]float32, len(tc.chw))
			chwToHWC(hwc, tc.chw, tc.h, tc.w, tc.c)
			if !slices.Equal(hwc, tc.hwc) {
				t.Errorf("chwToHWC = %v, want %v", hwc, tc.hwc)
			}
			chw := make([]float32, len(tc.hwc))
			hwcToCHW(chw, tc.hwc, tc.h, tc.w, tc.c)
			if !slices.Equal(chw, tc.chw) {
				t.Errorf("hwcToCHW = %v, want %v", chw, tc.chw)
			}
		})
	}
}

// fakeInterp is an NHWC "graph": heatmap[y,x] = image[y,x,0] - image[y,x,2],
// score = sum of the image, and an NHWC output echoing the image.
type fakeInterp struct {
	h, w   int
	ins    []tensorInfo
	outs   []tensorInfo
	closed bool
	fail   error
}

func newFake(h, w int) *fakeInterp {
	return &fakeInterp{h: h, w: w,
		ins: []tensorInfo{{name: "image", dims: []int{1, h, w, 3}, float: true}},
		outs: []tensorInfo{{name: "heatmap", dims: []int{1, h, w, 1}, float: true}, {name: "score", dims: []int{1}, float: true},
			{name: "echo", dims: []int{1, h, w, 3}, float: true}}}
}

func (f *fakeInterp) inputs() []tensorInfo  { return f.ins }
func (f *fakeInterp) outputs() []tensorInfo { return f.outs }
func (f *fakeInterp) close() error          { f.closed = true; return nil }
func (f *fakeInterp) run(in, out [][]float32) error {
	if f.fail != nil {
		return f.fail
	}
	img := in[0]
	out[1][0] = 0
	for i := range f.h * f.w {
		out[0][i] = img[3*i] - img[3*i+2]
		out[1][0] += img[3*i] + img[3*i+1] + img[3*i+2]
	}
	copy(out[2], img)
	return nil
}

// TestSessionLayout runs the wrapper over an NHWC interpreter: the engine
// sees CHW buffers, the interpreter NHWC ones, the heatmap is copied as is.
func TestSessionLayout(t *testing.T) {
	const h, w = 2, 3
	f := newFake(h, w)
	s, err := newSession(f, "tflite-cpu", nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Input("image")
	if err != nil {
		t.Fatal(err)
	}
	// CHW: R plane 1..6, G plane 0, B plane 10..60.
	for i := range h * w {
		img[i], img[h*w+i], img[2*h*w+i] = float32(i+1), 0, float32(10*(i+1))
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	hm, _ := s.Output("heatmap")
	score, _ := s.Output("score")
	echo, _ := s.Output("echo")
	if want := []float32{-9, -18, -27, -36, -45, -54}; !slices.Equal(hm, want) {
		t.Errorf("heatmap = %v, want %v (R-B per pixel)", hm, want)
	}
	if score[0] != 21+210 {
		t.Errorf("score = %v, want 231", score[0])
	}
	if !slices.Equal(echo, img) {
		t.Errorf("echoed NHWC output back in CHW = %v, want the input %v", echo, img)
	}
	if _, err := s.Output("nope"); err == nil || err.Error() != `tflite session: no output "nope" (have heatmap, score, echo)` {
		t.Errorf("unknown output: %v", err)
	}
	f.fail = errors.New("TfLiteInterpreterInvoke failed")
	if err := s.Run(); err == nil || err.Error() != "tflite session run: TfLiteInterpreterInvoke failed" {
		t.Errorf("failing run: %v", err)
	}
	if err := s.Close(); err != nil || !f.closed {
		t.Errorf("Close = %v, closed %v", err, f.closed)
	}
	if err := s.Run(); err == nil {
		t.Error("Run after Close succeeded")
	}

	f = newFake(h, w)
	f.outs[1].float = false
	if _, err := newSession(f, "", nil); err == nil || err.Error() != `tflite: tensor "score" is not float32; the twins take and give float32` {
		t.Errorf("int8 output: %v", err)
	}
}

func TestCheckShapes(t *testing.T) {
	m := bundle.Manifest{Input: bundle.Input{Width: 3, Height: 2}}
	for _, tc := range []struct {
		name   string
		change func(f *fakeInterp)
		want   string
	}{
		{"matches", func(f *fakeInterp) { f.outs = f.outs[:2] }, ""},
		{"score [1,1]", func(f *fakeInterp) { f.outs = f.outs[:2]; f.outs[1].dims = []int{1, 1} }, ""},
		{"extra output", func(f *fakeInterp) {}, "tflite session: the twin has 3 outputs, want 2 (heatmap, score)"},
		{"NCHW image", func(f *fakeInterp) { f.outs = f.outs[:2]; f.ins[0].dims = []int{1, 3, 2, 3} },
			`tflite session: input "image" has shape [1 3 2 3], the manifest implies [1 2 3 3] (NHWC)`},
		{"renamed output", func(f *fakeInterp) { f.outs = f.outs[:2]; f.outs[0].name = "anomaly" },
			`tflite session: unexpected output "anomaly", want heatmap, score`},
		{"two scores", func(f *fakeInterp) { f.outs = f.outs[:2]; f.outs[1].dims = []int{1, 2} },
			`tflite session: output "score" has shape [1 2], the manifest implies 1 value(s) (NHWC)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(2, 3)
			tc.change(f)
			s, err := newSession(f, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			err = s.checkShapes(localizeShapes(m))
			if (err == nil) != (tc.want == "") || (err != nil && err.Error() != tc.want) {
				t.Errorf("checkShapes = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestReadTwins: a bundle without twins is refused naming it and the
// command that writes them; an IMM bundle needs both.
func TestReadTwins(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 8, AlignSize: 16, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ReadTwins(b)
	want := "tflite runtime: bundle " + dir + " has no TFLite twin of its localize graph (localize.tflite); run `inspectd export-tflite` on the bundle, or set model.runtime = \"onnxruntime\""
	if err == nil || err.Error() != want {
		t.Fatalf("no twins: %v\nwant %s", err, want)
	}
	b.LocalizeTFLite = []byte("twin")
	_, err = ReadTwins(b)
	want = "tflite runtime: bundle " + dir + " has no TFLite twin of its align graph (align.tflite)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("no align twin: %v\nwant %s…", err, want)
	}
	b.AlignTFLite = []byte("align twin")
	tw, err := ReadTwins(b)
	if err != nil || string(tw.Localize) != "twin" || string(tw.Align) != "align twin" {
		t.Errorf("ReadTwins = %q %q, %v", tw.Localize, tw.Align, err)
	}
}

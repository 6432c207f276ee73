package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer/tflite"
	"github.com/inspectd/inspectd/infer/tflite/faketflite"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// tfliteHint ends the one line of a missing TFLite library.
const tfliteHint = "install TensorFlow Lite's C library (libtensorflowlite_c.so, e.g. from your board vendor or a TensorFlow build) or set model.tflite.library"

// fakeTFLite builds infer/tflite's stand-in for libtensorflowlite_c.so (it
// has the C API's symbols, not TFLite's kernels).
func fakeTFLite(t *testing.T) string { return faketflite.Build(t).Library }

// TestTFLiteRuntimeSelected: with model.runtime = "tflite", check-config
// and run check TensorFlow Lite's C library (one line naming what was
// looked for and what to install), its delegate, and the bundle's twins.
func TestTFLiteRuntimeSelected(t *testing.T) {
	if _, err := os.Stat(tflite.SystemLibraryPath); err == nil {
		t.Skipf("%s exists on this machine", tflite.SystemLibraryPath)
	}
	t.Setenv(tflite.EnvLibrary, "")
	fake := fakeTFLite(t)
	tflite := []string{`runtime = "onnxruntime"`, `runtime = "tflite"`}
	for _, tc := range []struct {
		name    string
		replace []string
		key     string
		want    string
	}{
		{"no library", tflite, `library = `,
			"model.tflite.library: tflite runtime: libtensorflowlite_c.so not found (looked in: /usr/lib/inspectd/libtensorflowlite_c.so, the standard library paths (ld.so)); " + tfliteHint},
		{"a library without the C API", append(tflite, `library = ""`, `library = "/lib/x86_64-linux-gnu/libm.so.6"`), `library = `,
			"model.tflite.library: tflite runtime: /lib/x86_64-linux-gnu/libm.so.6 has no symbol TfLiteModelCreate: it is not TensorFlow Lite's C library, or too old a version; " + tfliteHint},
		{"no GPU delegate", append(tflite, `library = ""`, fmt.Sprintf("library = %q", fake), `delegate = "xnnpack"`, `delegate = "gpu"`), `delegate = `,
			"model.tflite.delegate: tflite runtime: the GPU delegate (TfLiteGpuDelegateV2Create) is neither in " + fake + " nor in a loadable libtensorflowlite_gpu_delegate.so"},
		{"bundle without twins", append(tflite, `library = ""`, fmt.Sprintf("library = %q", fake)), `runtime = `,
			"model.runtime: tflite runtime: bundle "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.want, "x86_64-linux-gnu") {
				if _, err := os.Stat("/lib/x86_64-linux-gnu/libm.so.6"); err != nil {
					t.Skip("no /lib/x86_64-linux-gnu/libm.so.6")
				}
			}
			path := configWith(t, tc.replace...)
			want := fmt.Sprintf("%s:%d: %s", path, lineOf(t, path, tc.key), tc.want)
			for _, cmd := range []string{"check-config", "run"} {
				code, stdout, stderr := runCLI(t, cmd, "-c", path)
				if code != 1 || !strings.Contains(stderr, want) {
					t.Errorf("%s: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and %q", cmd, code, stdout, stderr, want)
				}
			}
		})
	}
	t.Run("twins named", func(t *testing.T) {
		path := configWith(t, append(tflite, `library = ""`, fmt.Sprintf("library = %q", fake))...)
		_, _, stderr := runCLI(t, "check-config", "-c", path)
		want := "/bundle has no TFLite twin of its localize graph (localize.tflite); run `inspectd export-tflite` on the bundle, or set model.runtime = \"onnxruntime\""
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr: %s\nwant %q", stderr, want)
		}
	})
}

func TestBenchTFLiteFlags(t *testing.T) {
	t.Setenv(tflite.EnvLibrary, "")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tflite-delegate", "gpu"}, 2, "bench: --tflite-delegate applies to --runtime tflite"},
		{[]string{"--runtime", "tflite", "--provider", "cuda"}, 2, "bench: --provider applies to --runtime onnxruntime"},
		{[]string{"--runtime", "tflite", "--tflite-delegate", "external"}, 2, `bench: --tflite-delegate "external", want none, xnnpack or gpu`},
		{[]string{"--runtime", "tensorflow"}, 2, `bench: --runtime "tensorflow", want onnxruntime or tflite`},
		{[]string{"--runtime", "tflite", "--tflite-library", "/nonexistent/libtensorflowlite_c.so"}, 1,
			"tflite runtime: cannot load /nonexistent/libtensorflowlite_c.so: No such file or directory; " + tfliteHint},
	} {
		code, _, stderr := runCLI(t, append([]string{"bench", "--size", "32x32", "--iterations", "1"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %s\nwant exit %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestRunTFLiteRuntime runs the daemon with model.runtime = "tflite" on a
// bundle with real twins (netdef.TFLiteTwins) and the stand-in library
// (its graph is not the bundle's, so the verdicts mean nothing): the
// station loads the library, the engine factory builds the TFLite engine,
// and parts are inspected to the end.
func TestRunTFLiteRuntime(t *testing.T) {
	fake := fakeTFLite(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if _, err := netdef.WriteRandomBundle(src, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, NoAlign: true, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	files, err := netdef.TFLiteTwins(b)
	if err != nil {
		t.Fatal(err)
	}
	for name := range b.Manifest.Files {
		if files[name], err = os.ReadFile(filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	withTwins := filepath.Join(dir, "bundle")
	m := b.Manifest
	if err := bundle.Write(withTwins, &m, files); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_TFLITE_SPEC", "in image f32 1 32 32 3\nout heatmap f32 1 32 32 1\nout score f32 1\n")
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		img := image.NewRGBA(image.Rect(0, 0, 64, 48))
		for p := range img.Pix {
			img.Pix[p] = uint8(p*(i+3)) | 0x80
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(images, fmt.Sprintf("%02d.png", i)), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := configWith(t,
		`state_dir = "/var/lib/inspectd"`, fmt.Sprintf("state_dir = %q", filepath.Join(dir, "state")),
		`source = "v4l2"`, `source = "images"`,
		`[camera] path = ""`, fmt.Sprintf("path = %q", images),
		`bundle = "bundle"`, fmt.Sprintf("bundle = %q", withTwins),
		`runtime = "onnxruntime"`, `runtime = "tflite"`,
		`library = ""`, fmt.Sprintf("library = %q", fake),
		"[mqtt] enabled = true", "enabled = false",
		"[http] enabled = true", "enabled = false",
	)
	code, stdout, stderr := runCLI(t, "run", "-c", path, "--max-parts", "2", "--print")
	if code != 0 {
		t.Fatalf("run: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	rows := 0
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && (f[1] == "OK" || f[1] == "NG" || f[1] == "ERROR") {
			rows++
		}
	}
	if rows != 2 {
		t.Errorf("%d printed results, want 2:\n%s", rows, stdout)
	}
	if !strings.Contains(stderr, "tflite-xnnpack") {
		t.Errorf("the log does not name the provider tflite-xnnpack:\n%s", stderr)
	}
}

// TestBenchTFLiteRuntime times the random bundle's TFLite twins with the
// stand-in library: bench reports the TFLite provider.
func TestBenchTFLiteRuntime(t *testing.T) {
	fake := fakeTFLite(t)
	t.Setenv("FAKE_TFLITE_SPEC", "in image f32 1 32 32 3\nout heatmap f32 1 32 32 1\nout score f32 1\n")
	code, stdout, stderr := runCLI(t, "bench", "--size", "32x32", "--align", "none", "--iterations", "2", "--threads", "1",
		"--runtime", "tflite", "--tflite-library", fake)
	if code != 0 || !strings.Contains(stdout, "tflite-xnnpack") {
		t.Errorf("bench --runtime tflite: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

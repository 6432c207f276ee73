// Package infertest holds the one way tests open ONNX Runtime, and the one
// policy for what a test does when something it needs is missing:
//
//   - ONNX Runtime is part of the build (CI installs it with `make deps`):
//     without it a test fails, saying to run `make deps`.
//   - The shared data next to the repository (../shared: backbone weights,
//     datasets) and Python with PyTorch are optional: without them a test
//     skips, saying what it needs.
package infertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/models/backbone"
)

// Runtime opens the ONNX Runtime library found by infer.DefaultLibraryPath
// ($INSPECTD_ONNXRUNTIME_LIB, .deps/ above the working directory, or the
// system path) and closes it when the test ends. A missing or unloadable
// library fails the test.
func Runtime(tb testing.TB) *infer.Runtime {
	tb.Helper()
	lib, err := infer.DefaultLibraryPath()
	if err != nil {
		tb.Fatalf("ONNX Runtime not found: %v (run `make deps`)", err)
	}
	rt, err := infer.OpenRuntime(lib)
	if err != nil {
		tb.Fatalf("ONNX Runtime %s: %v (run `make deps`)", lib, err)
	}
	tb.Cleanup(func() {
		if err := rt.Close(); err != nil {
			tb.Error(err)
		}
	})
	return rt
}

// Shared returns the path of rel inside the shared data directory beside
// the repository ($INSPECTD_SHARED, or the first "shared" directory found
// walking up from the working directory), or skips the test saying what
// it needs.
func Shared(tb testing.TB, rel string) string {
	tb.Helper()
	var roots []string
	if d := os.Getenv("INSPECTD_SHARED"); d != "" {
		roots = append(roots, d)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			roots = append(roots, filepath.Join(d, "shared"))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, r := range roots {
		p := filepath.Join(r, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	tb.Skipf("skipped: needs shared/%s beside the repository (or $INSPECTD_SHARED)", rel)
	return ""
}

// Python is the interpreter with Debian's python3-torch: /usr/bin/python3.
const Python = "/usr/bin/python3"

// NeedPython skips the test unless Python can import every module named
// (e.g. "torch", "onnx"), saying which are missing.
func NeedPython(tb testing.TB, modules ...string) string {
	tb.Helper()
	script := "import " + strings.Join(modules, ", ")
	if out, err := exec.Command(Python, "-c", script).CombinedOutput(); err != nil {
		tb.Skipf("skipped: needs %s with %s (python3-torch, python3-onnx; `make deps`): %v: %s",
			Python, strings.Join(modules, ", "), err, strings.TrimSpace(string(out)))
	}
	return Python
}

// Backbone returns the real ImageNet ResNet-18 weights when
// backbone.Locate finds them, else deterministic random weights (logged):
// for tests whose assertions hold either way.
func Backbone(tb testing.TB) *backbone.Weights {
	tb.Helper()
	if dir, err := backbone.Locate(); err == nil {
		w, err := backbone.LoadNPYDir(dir)
		if err != nil {
			tb.Fatal(err)
		}
		return w
	}
	tb.Log("real backbone not found, using random weights")
	return backbone.Random(1)
}

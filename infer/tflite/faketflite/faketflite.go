// Package faketflite builds, for tests, the stand-ins for TensorFlow Lite's
// C library and an external delegate (infer/tflite/testdata/*.c): C code
// with the C API's symbols and signatures, not TFLite's kernels. No machine
// of this project has the real library, so the binding (symbol table,
// calls, buffers, delegates, the interpreter's thread) is exercised against
// these.
package faketflite

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// LibraryName is the file name the stand-in library is built under, the
// real library's (infer/tflite.LibraryName).
const LibraryName = "libtensorflowlite_c.so"

// Libraries are the stand-ins one Build made.
type Libraries struct {
	// Library stands in for libtensorflowlite_c.so.
	Library string
	// Delegate is an external delegate plugin (tflite_plugin_create_delegate).
	Delegate string
	// Log is the file both append every call they receive to
	// ($FAKE_TFLITE_LOG, set for the rest of the test).
	Log string
}

// Build compiles both stand-ins with $CC (default gcc) into a temporary
// directory of t and points their call log at a file there. It skips t
// when no C compiler is installed.
func Build(t testing.TB) Libraries {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%v)", err)
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("faketflite: cannot find its own source directory")
	}
	src := filepath.Join(filepath.Dir(self), "..", "testdata")
	dir := t.TempDir()
	libs := Libraries{
		Library:  filepath.Join(dir, LibraryName),
		Delegate: filepath.Join(dir, "libfake_delegate.so"),
		Log:      filepath.Join(dir, "calls.log"),
	}
	for _, b := range [][2]string{{"fake_tflite.c", libs.Library}, {"fake_delegate.c", libs.Delegate}} {
		if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", b[1], filepath.Join(src, b[0]), "-lpthread").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", b[0], err, out)
		}
	}
	t.Setenv("FAKE_TFLITE_LOG", libs.Log)
	return libs
}

package infer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/onnx"
)

// openRuntime opens the library found by DefaultLibraryPath and closes it at cleanup.
func openRuntime(t testing.TB) *Runtime {
	t.Helper()
	path, err := DefaultLibraryPath()
	if err != nil {
		t.Fatalf("ONNX Runtime not found: %v (run `make deps`; infertest.Runtime has the same policy but cannot be imported here)", err)
	}
	rt, err := OpenRuntime(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Error(err)
		}
	})
	return rt
}

// tinyModel is y = relu(x) + c on [1,2,3].
func tinyModel(t testing.TB) []byte {
	t.Helper()
	g := onnx.NewGraph("tiny")
	x := g.Input("x", onnx.Float, 1, 2, 3)
	c := g.Initializer("c", []int64{1}, []float32{0.5})
	y := g.Node("Add", []string{g.Op("Relu", []string{x}), c}, []string{"y"})[0]
	g.Output(y, onnx.Float, 1, 2, 3)
	m, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newSession(t testing.TB, rt *Runtime, model []byte, opts SessionOptions) *Session {
	t.Helper()
	s, err := rt.NewSession(model, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestRuntimeVersionAndRun(t *testing.T) {
	rt := openRuntime(t)
	if !strings.HasPrefix(rt.Version(), "1.30.") {
		t.Fatalf("version %q", rt.Version())
	}
	s := newSession(t, rt, tinyModel(t), SessionOptions{IntraOpThreads: 1})
	x, err := s.Input("x")
	if err != nil {
		t.Fatal(err)
	}
	copy(x, []float32{-1, 0, 1, 2, -3, 4})
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	y, err := s.Output("y")
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{0.5, 0.5, 1.5, 2.5, 0.5, 4.5}
	for i := range want {
		if y[i] != want[i] {
			t.Fatalf("y = %v, want %v", y, want)
		}
	}
	if _, err := s.Output("z"); err == nil || !strings.Contains(err.Error(), `no output "z" (have y)`) {
		t.Fatalf("Output(z) error %v", err)
	}
	if got := s.Inputs()[0].Shape; len(got) != 3 || got[2] != 3 {
		t.Fatalf("input shape %v", got)
	}
	if allocs := testing.AllocsPerRun(20, func() {
		if err := s.Run(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("Run allocates %v times per call, want 0", allocs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}

func TestOpenRuntimeErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere", "libonnxruntime.so.1")
	fake := filepath.Join(t.TempDir(), "libfake.so.1")
	if err := os.WriteFile(fake, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{missing, fake} {
		rt, err := OpenRuntime(path)
		if err == nil {
			rt.Close()
			t.Fatalf("OpenRuntime(%s) succeeded", path)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name %s", err, path)
		}
	}
	// A closed runtime refuses new sessions.
	path, err := DefaultLibraryPath()
	if err != nil {
		t.Fatal(err)
	}
	closed, err := OpenRuntime(path)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := closed.NewSession(tinyModel(t), SessionOptions{}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("NewSession on closed runtime: %v", err)
	}
	// After failures the right library still loads, and can be shared.
	a := openRuntime(t)
	b := openRuntime(t)
	if a.LibraryPath() != b.LibraryPath() {
		t.Fatal("two runtimes on different libraries")
	}
	link := filepath.Join(t.TempDir(), "other.so.1")
	if err := os.Symlink(a.LibraryPath(), link); err != nil {
		t.Fatal(err)
	}
	if rt, err := OpenRuntime(link); err == nil || !strings.Contains(err.Error(), "already uses") {
		if rt != nil {
			rt.Close()
		}
		t.Fatalf("second library while one is open: %v", err)
	}
}

func TestProviders(t *testing.T) {
	rt := openRuntime(t)
	model := tinyModel(t)
	tests := []struct {
		provider string
		fallback bool
		wantErr  string
		want     string
	}{
		{"cpu", false, "", "cpu"},
		{"", false, "", "cpu"},
		{"cuda", false, `"cuda"`, ""},
		{"tensorrt", false, `"tensorrt"`, ""},
		{"cuda", true, "", "cpu"},
		{"tensorrt", true, "", "cpu"},
		{"vulkan", true, `unknown provider "vulkan"`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.provider, func(t *testing.T) {
			s, err := rt.NewSession(model, SessionOptions{Provider: tc.provider, AllowFallback: tc.fallback, IntraOpThreads: 1})
			if tc.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("provider %q: no error (this CPU-only library lacks it)", tc.provider)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %s", err, tc.wantErr)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Provider() != tc.want {
				t.Fatalf("Provider() = %q, want %q", s.Provider(), tc.want)
			}
			if tc.fallback != (s.FallbackReason() != nil) {
				t.Fatalf("FallbackReason() = %v", s.FallbackReason())
			}
			if err := s.Run(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSessionRejectsModels(t *testing.T) {
	rt := openRuntime(t)
	g := onnx.NewGraph("ints")
	x := g.Input("ids", onnx.Int64, 1, 4)
	g.Output(g.Op("Relu", []string{x}), onnx.Int64, 1, 4)
	intModel, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		model []byte
		want  string
	}{
		{"int64 input", intModel, `"ids" is int64, want float32`},
		{"not onnx", []byte("hello"), "onnxruntime session"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := rt.NewSession(tc.model, SessionOptions{})
			if err == nil {
				s.Close()
				t.Fatal("NewSession succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestFindLibrary(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, "repo", ".deps", "onnxruntime", "linux-x64", "libonnxruntime.so.1")
	arm := filepath.Join(root, "repo", ".deps", "onnxruntime", "linux-arm64", "libonnxruntime.so.1")
	sys := filepath.Join(root, "usr", "libonnxruntime.so.1")
	for _, p := range []string{lib, arm, sys} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	deep := filepath.Join(root, "repo", "a", "b")
	os.MkdirAll(deep, 0o755)
	tests := []struct {
		name, wd, arch, system, want string
		wantErr                      []string
	}{
		{"parent x64", deep, "amd64", "/none", lib, nil},
		{"parent arm64", deep, "arm64", "/none", arm, nil},
		{"system", root, "amd64", sys, sys, nil},
		{"nothing", root, "amd64", "/none/lib.so", "", []string{
			filepath.Join(root, ".deps/onnxruntime/linux-x64/libonnxruntime.so.1"), "/none/lib.so", EnvLibrary}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findLibrary(tc.wd, tc.arch, tc.system)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("found %s", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("findLibrary = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	t.Setenv(EnvLibrary, "/custom/lib.so")
	if p, err := DefaultLibraryPath(); err != nil || p != "/custom/lib.so" {
		t.Fatalf("DefaultLibraryPath with $%s = %q, %v", EnvLibrary, p, err)
	}
}

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		version string
		ok      bool
	}{{"1.30.0", true}, {"1.30.2", true}, {"1.29.1", false}, {"1.3.0", false}, {"1.300.0", false}, {"", false}}
	for _, tc := range tests {
		err := checkVersion("/x/lib.so", tc.version)
		if tc.ok != (err == nil) {
			t.Errorf("checkVersion(%q) = %v", tc.version, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "/x/lib.so") || !strings.Contains(err.Error(), "want 1.30.x")) {
			t.Errorf("error %q must name the library and the wanted version", err)
		}
	}
}

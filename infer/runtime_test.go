package infer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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

// TestProviders runs against the real CPU-only library: a GPU provider
// without fallback is refused in one line naming the provider, the
// library, the providers it has and where to read what to install; with
// fallback the session runs and reports "cpu (fallback)" with the reason.
func TestProviders(t *testing.T) {
	rt := openRuntime(t)
	model := tinyModel(t)
	// The npm package's library is built with CUDA and TensorRT (it lists
	// them) but ships without their provider libraries.
	missing := func(p string) string {
		return fmt.Sprintf(`execution provider %q is not available in the onnxruntime library %s (version %s): it lists %s, but libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so`,
			p, rt.LibraryPath(), rt.Version(), strings.Join(rt.providers, ", "))
	}
	tests := []struct {
		provider string
		fallback bool
		wantErr  string
		want     string
	}{
		{"cpu", false, "", "cpu"},
		{"", false, "", "cpu"},
		{"cuda", false, missing("cuda"), ""},
		{"tensorrt", false, missing("tensorrt"), ""},
		{"cuda", true, "", "cpu (fallback)"},
		{"tensorrt", true, "", "cpu (fallback)"},
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
				if tc.provider != "vulkan" && (!strings.Contains(err.Error(), DocsProviders) || strings.Contains(err.Error(), "\n")) {
					t.Fatalf("error %q: want one line pointing at %s", err, DocsProviders)
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
			if tc.fallback && !strings.Contains(s.FallbackReason().Error(), missing(tc.provider)) {
				t.Fatalf("FallbackReason() = %v, want the missing provider named", s.FallbackReason())
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

// TestCheckVersion is the version rule: older than 1.24 (or a library
// that does not serve the binding's API level) is refused in one line
// naming the library, the version and where to read what to install; 1.24
// and later other than 1.30.x load with an "untested" warning.
func TestCheckVersion(t *testing.T) {
	tests := []struct {
		version string
		apiOK   bool
		want    string // "tested", "untested" or "too old"
	}{
		{"1.30.0", true, "tested"},
		{"1.30.2", true, "tested"},
		{"1.24.0", true, "untested"},
		{"1.25.1", true, "untested"},
		{"1.29.1", true, "untested"},
		{"1.31.0", true, "untested"},
		{"2.0.0", true, "untested"},
		{"1.300.0", true, "untested"},
		{"1.23.2", false, "too old"},
		{"1.17.0", false, "too old"},
		{"1.16.3", false, "too old"},
		{"1.3.0", false, "too old"},
		// The API level decides when the version string says otherwise.
		{"1.30.0", false, "too old"},
		{"1.23.0", true, "too old"},
		{"", false, "too old"},
		{"custom-build", true, "untested"},
	}
	for _, tc := range tests {
		warning, err := checkVersion("/x/lib.so", tc.version, tc.apiOK)
		got := "tested"
		switch {
		case err != nil:
			got = "too old"
		case warning != "":
			got = "untested"
		}
		if got != tc.want {
			t.Errorf("checkVersion(%q, api %v) = %q, %v; want %s", tc.version, tc.apiOK, warning, err, tc.want)
			continue
		}
		switch got {
		case "too old":
			for _, w := range []string{"/x/lib.so", fmt.Sprintf("version %q, too old", tc.version), "needs ONNX Runtime 1.24 or newer", "docs/jetson.md#onnx-runtime-versions"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		case "untested":
			for _, w := range []string{"/x/lib.so", fmt.Sprintf("version %q", tc.version), "tested with 1.30.x", "untested"} {
				if !strings.Contains(warning, w) {
					t.Errorf("warning %q does not contain %q", warning, w)
				}
			}
		}
	}
}

// TestProbeLibrary reads the real CPU library with the package's own
// dlopen probe: version, API level and the compiled-in providers (which
// also checks the OrtApi slot numbers: a wrong slot would not list
// CPUExecutionProvider).
func TestProbeLibrary(t *testing.T) {
	rt := openRuntime(t)
	p, err := probeLibrary(rt.LibraryPath())
	if err != nil {
		t.Fatal(err)
	}
	if p.version != rt.Version() || !strings.HasPrefix(p.version, WantVersion) || !p.apiOK {
		t.Errorf("probe = %+v, runtime version %q", p, rt.Version())
	}
	// The npm build lists the GPU providers it was compiled with
	// (measured: Tensorrt, CUDA, WebGpu, CPU) although their libraries are
	// not in the package.
	if !slices.Contains(p.providers, "CPUExecutionProvider") || !slices.Equal(p.providers, rt.providers) {
		t.Errorf("providers %q (runtime %q), want CPUExecutionProvider listed", p.providers, rt.providers)
	}
	t.Logf("compiled-in providers: %q", p.providers)
	if got := rt.Providers(); !slices.Equal(got, []string{ProviderCPU}) {
		t.Errorf("Runtime.Providers() = %q, want only cpu usable", got)
	}
	if rt.Warning() != "" {
		t.Errorf("Warning() = %q for the tested version", rt.Warning())
	}
	fake := filepath.Join(t.TempDir(), "libfake.so.1")
	if err := os.WriteFile(fake, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := probeLibrary(fake); err == nil || !strings.Contains(err.Error(), "cannot load") {
		t.Errorf("probe of a non-library: %v", err)
	}
	// A real shared library that is not ONNX Runtime.
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if runtime.GOARCH == "arm64" {
		libc = "/lib/aarch64-linux-gnu/libc.so.6"
	}
	if _, err := probeLibrary(libc); err == nil || !strings.Contains(err.Error(), "not an ONNX Runtime library") {
		t.Errorf("probe of libc: %v", err)
	}
}

// TestProviderError is the presence rule on fixture libraries: a provider
// must be compiled in (TensorRT with CUDA) and its provider libraries must
// be beside libonnxruntime.so.1.
func TestProviderError(t *testing.T) {
	all := []string{"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
	cudaOnly := []string{"CUDAExecutionProvider", "CPUExecutionProvider"}
	cpuOnly := []string{"CPUExecutionProvider"}
	dir := func(files ...string) string {
		d := t.TempDir()
		for _, f := range append(files, "libonnxruntime.so.1") {
			if err := os.WriteFile(filepath.Join(d, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(d, "libonnxruntime.so.1")
	}
	const shared, cuda, trt = "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_tensorrt.so"
	full := dir(shared, cuda, trt)
	noTRT := dir(shared, cuda)
	bare := dir()
	tests := []struct {
		name, lib string
		listed    []string
		provider  string
		want      string // "" for available
	}{
		{"cpu always", bare, cpuOnly, "cpu", ""},
		{"empty is cpu", bare, cpuOnly, "", ""},
		{"cuda", full, all, "cuda", ""},
		{"tensorrt", full, all, "tensorrt", ""},
		{"TensorRT case", full, all, "TensorRT", ""},
		{"cuda without trt lib", noTRT, all, "cuda", ""},
		{"tensorrt lib missing", noTRT, all, "tensorrt", "it lists TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider, but " + trt + " is not beside it in " + filepath.Dir(noTRT)},
		{"cpu-only package", bare, all, "cuda", "but " + shared + ", " + cuda + " are not beside it"},
		{"built without tensorrt", full, cudaOnly, "tensorrt", "it was built without TensorrtExecutionProvider (it lists CUDAExecutionProvider, CPUExecutionProvider)"},
		{"built without cuda", full, cpuOnly, "cuda", "it was built without CUDAExecutionProvider (it lists CPUExecutionProvider)"},
		{"unknown", full, all, "rocm", `unknown provider "rocm"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := providerError(tc.lib, "1.25.0", tc.listed, tc.provider)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.provider == "rocm" {
				return
			}
			for _, w := range []string{fmt.Sprintf("execution provider %q is not available in the onnxruntime library %s (version 1.25.0)", strings.ToLower(tc.provider), tc.lib), "install an ONNX Runtime build with", DocsProviders} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestProviderStartFailure: a library whose provider libraries are beside
// it but do not load (here empty files beside a link to the CPU library:
// ONNX Runtime looks for them in the directory of the path it was loaded
// from) passes CheckProvider and fails when the provider is appended. That
// is one line too; with fallback the session runs on the CPU.
func TestProviderStartFailure(t *testing.T) {
	real, err := DefaultLibraryPath()
	if err != nil {
		t.Fatal(err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.Symlink(real, lib); err != nil {
		t.Fatal(err)
	}
	for _, f := range providerLibraries[ProviderTensorRT] {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := OpenRuntime(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if got := rt.Providers(); !slices.Equal(got, []string{"cpu", "cuda", "tensorrt"}) {
		t.Fatalf("Providers() = %q", got)
	}
	for _, p := range []string{ProviderCUDA, ProviderTensorRT} {
		want := fmt.Sprintf("execution provider %q of the onnxruntime library %s (version %s) did not start: ", p, lib, rt.Version())
		_, err := rt.NewSession(tinyModel(t), SessionOptions{Provider: p, IntraOpThreads: 1})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), DocsProviders) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: error %v, want one line containing %q", p, err, want)
		}
		t.Logf("error: %v", err)
		s, err := rt.NewSession(tinyModel(t), SessionOptions{Provider: p, IntraOpThreads: 1, AllowFallback: true})
		if err != nil {
			t.Fatal(err)
		}
		if s.Provider() != ProviderCPUFallback || s.FallbackReason() == nil || !strings.Contains(s.FallbackReason().Error(), want) {
			t.Errorf("%s with fallback: provider %q, reason %v", p, s.Provider(), s.FallbackReason())
		}
		if err := s.Run(); err != nil {
			t.Error(err)
		}
		s.Close()
	}
}

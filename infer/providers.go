package infer

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MinVersion is the oldest ONNX Runtime release inspectd runs with: the
// first that serves the C API level (24) of the onnxruntime_go binding it
// is built with. Older libraries are refused at start-up.
const MinVersion = "1.24"

// ProviderCPUFallback is what [Session.Provider] and [Engine.Provider]
// report when a GPU provider was requested with AllowFallback and the
// session runs on the CPU instead; the status page, /api/status and the
// inspectd_model_info metric show it as is.
const ProviderCPUFallback = ProviderCPU + " (fallback)"

// DocsVersions and DocsProviders are the docs/jetson.md sections start-up
// errors point at.
const (
	DocsVersions  = "docs/jetson.md#onnx-runtime-versions"
	DocsProviders = "docs/jetson.md#gpu-onnx-runtime"
)

// ortProviderNames maps inspectd's provider names to ONNX Runtime's.
var ortProviderNames = map[string]string{
	ProviderCPU:      "CPUExecutionProvider",
	ProviderCUDA:     "CUDAExecutionProvider",
	ProviderTensorRT: "TensorrtExecutionProvider",
}

// checkVersion applies the version rule to the library at path reporting
// version, where apiOK says whether it served the binding's API level:
// older than [MinVersion] (or not serving the API) is an error of one line
// naming the library, the version and what to install; a version other
// than the tested [WantVersion] series is accepted with a warning.
func checkVersion(path, version string, apiOK bool) (warning string, err error) {
	tooOld := fmt.Errorf("onnxruntime library %s is version %q, too old: inspectd needs ONNX Runtime %s or newer (tested with %sx; JetPack 6.1/6.2 builds with TensorRT exist, JetPack 5 and 6.0 ones are too old); install a newer library, see %s",
		path, version, MinVersion, WantVersion, DocsVersions)
	major, minor, ok := parseVersion(version)
	if !apiOK || (ok && (major < 1 || major == 1 && minor < 24)) {
		return "", tooOld
	}
	if strings.HasPrefix(version, WantVersion) {
		return "", nil
	}
	return fmt.Sprintf("onnxruntime library %s is version %q: inspectd is tested with %sx (it needs %s or newer); it should work, but this version is untested",
		path, version, WantVersion, MinVersion), nil
}

// parseVersion reads the major and minor numbers of "1.30.0".
func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

// providerLibraries are the shared libraries ONNX Runtime loads, from the
// directory of libonnxruntime.so.1, when a session asks for a GPU
// provider (provider_bridge_ort.cc). A build lists CUDA and TensorRT in
// GetAvailableProviders whenever it was compiled with them (the npm
// package's CPU library does), even when these files are not beside it.
var providerLibraries = map[string][]string{
	ProviderCUDA:     {"libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"},
	ProviderTensorRT: {"libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_tensorrt.so"},
}

// Providers returns the execution providers this library can offer, in
// inspectd's names: "cpu", then "cuda" and "tensorrt" when they are
// compiled in and their provider libraries are beside the library (see
// [Runtime.CheckProvider]).
func (r *Runtime) Providers() []string {
	out := []string{ProviderCPU}
	for _, p := range []string{ProviderCUDA, ProviderTensorRT} {
		if providerError(r.path, r.version, r.providers, p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// Warning returns why the library is accepted with reservations (a
// version other than the tested one), or "". Callers log it at start-up.
func (r *Runtime) Warning() string { return r.warning }

// CheckProvider reports, in one line, whether provider p ("cpu", "cuda"
// or "tensorrt"; "" is "cpu") can be asked of the library: it is compiled
// in (OrtApi.GetAvailableProviders; TensorRT needs CUDA too, for the nodes
// TensorRT does not take) and its provider libraries are beside the
// library. Both are checked without initialising a provider, so the
// error can say what the library has. A provider that passes can still
// fail to start when CUDA, cuDNN or TensorRT themselves are missing or
// there is no GPU: [Runtime.NewSession] reports that.
func (r *Runtime) CheckProvider(p string) error {
	return providerError(r.path, r.version, r.providers, p)
}

// providerError is CheckProvider for the library at path with version and
// the compiled-in providers listed.
func providerError(path, version string, listed []string, p string) error {
	p = strings.ToLower(p)
	if p == "" {
		p = ProviderCPU
	}
	if _, known := ortProviderNames[p]; !known {
		return fmt.Errorf("onnxruntime: unknown provider %q, want cpu, cuda or tensorrt", p)
	}
	need := []string{p}
	if p == ProviderTensorRT {
		need = append(need, ProviderCUDA)
	}
	var why string
	for _, n := range need {
		if !slices.Contains(listed, ortProviderNames[n]) {
			why = fmt.Sprintf("it was built without %s (it lists %s)", ortProviderNames[n], strings.Join(listed, ", "))
			break
		}
	}
	if why == "" {
		var missing []string
		for _, f := range providerLibraries[p] {
			if !isFile(filepath.Join(filepath.Dir(path), f)) {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			why = fmt.Sprintf("it lists %s, but %s %s not beside it in %s (a CPU-only package)",
				strings.Join(listed, ", "), strings.Join(missing, ", "), map[bool]string{true: "is", false: "are"}[len(missing) == 1], filepath.Dir(path))
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("execution provider %q is not available in the onnxruntime library %s (version %s): %s; install an ONNX Runtime build with %s and its provider libraries (on a Jetson: a JetPack 6 build) and point model.onnxruntime_library or $%s at it, see %s",
		p, path, version, why, providerBuild(p), EnvLibrary, DocsProviders)
}

func providerBuild(p string) string {
	if p == ProviderTensorRT {
		return "TensorRT and CUDA (--use_tensorrt --use_cuda)"
	}
	return "CUDA (--use_cuda)"
}

// providerStartError is the one-line error of a provider the library has
// compiled in but cannot start (its CUDA, cuDNN or TensorRT libraries are
// missing or do not match the build, or there is no GPU).
func providerStartError(p, path, version string, err error) error {
	return fmt.Errorf("execution provider %q of the onnxruntime library %s (version %s) did not start: %s; install the CUDA/cuDNN/TensorRT libraries this build was made for (on a Jetson: the JetPack it was built on), see %s",
		p, path, version, oneLine(err.Error()), DocsProviders)
}

// oneLine joins a multi-line message into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// FallbackReason returns why the engine's localisation graph does not run
// on the requested provider (AllowFallback), or nil.
func (e *Engine) FallbackReason() error {
	if f, ok := e.localize.(interface{ FallbackReason() error }); ok {
		return f.FallbackReason()
	}
	return nil
}

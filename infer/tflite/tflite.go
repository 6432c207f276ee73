// Package tflite runs a bundle's TensorFlow Lite twins (localize.tflite,
// align.tflite) with TensorFlow Lite's C library, behind the same
// [infer.Engine] as ONNX Runtime.
//
// The C library (libtensorflowlite_c.so) is loaded at run time with dlopen
// and its C API is bound by hand ([Open]): the binary builds, and runs with
// ONNX Runtime, on every machine, with or without the library; only a
// configuration that selects model.runtime = "tflite" needs it, and a
// missing library or symbol is then one line naming what was looked for
// and what to install. (github.com/mattn/go-tflite links the library at
// build time, which no build machine of this project has.)
//
// Delegates: "none", "xnnpack" (TfLiteXNNPackDelegateCreate with the
// configured threads), "gpu" (TfLiteGpuDelegateV2Create with its defaults,
// from the C library or libtensorflowlite_gpu_delegate.so) and "external":
// a delegate library implementing TFLite's external-delegate plugin ABI
// (tflite_plugin_create_delegate / tflite_plugin_destroy_delegate), as NPU
// vendors ship them, with string options.
//
// Threads: every C call of an interpreter (creation, the delegate, Invoke,
// deletion) runs on one OS thread locked to a goroutine of its own. The
// CPU kernels do not need it, but TFLite's GPU delegate binds its OpenGL
// ES context (its backend where OpenCL is missing) to the thread that
// created it and must be invoked there, and vendors' NPU delegates carry
// the same kind of rule; Go moves goroutines between threads at will. One
// path for every delegate is the path that is tested; it costs a channel
// hand-off (microseconds) per Run.
//
// A [Session] exposes its tensors in the ONNX graphs' memory order, as
// [infer.GraphSession] requires: the twins take NHWC images ([1,H,W,C]),
// which Run transposes from the CHW buffers the engine fills; a heatmap
// [1,H,W,1] has the memory order of [1,1,H,W] and is copied as is.
package tflite

import (
	"fmt"
	"sort"
	"strings"
)

// EnvLibrary is the environment variable naming libtensorflowlite_c.so.
const EnvLibrary = "INSPECTD_TFLITE_LIB"

// LibraryName is the file name of TensorFlow Lite's C library, looked up
// in the standard library paths (ld.so) last.
const LibraryName = "libtensorflowlite_c.so"

// SystemLibraryPath is where a package installs the library.
const SystemLibraryPath = "/usr/lib/inspectd/" + LibraryName

// GPUDelegateLibrary holds TfLiteGpuDelegateV2Create where the C library
// was built without the GPU delegate.
const GPUDelegateLibrary = "libtensorflowlite_gpu_delegate.so"

// installHint ends every error about a missing or unusable library.
const installHint = "install TensorFlow Lite's C library (" + LibraryName +
	", e.g. from your board vendor or a TensorFlow build) or set model.tflite.library"

// Delegates accepted in Options.Delegate.
const (
	DelegateNone     = "none"
	DelegateXNNPack  = "xnnpack"
	DelegateGPU      = "gpu"
	DelegateExternal = "external"
)

// Delegates lists the accepted delegates.
var Delegates = []string{DelegateNone, DelegateXNNPack, DelegateGPU, DelegateExternal}

// Options configures an interpreter.
type Options struct {
	// Threads is the interpreter's thread count and the XNNPACK delegate's
	// (0: TFLite's default).
	Threads int
	// Delegate is "none", "xnnpack" (also ""), "gpu" or "external".
	Delegate string
	// ExternalDelegate is the path of the delegate library for "external".
	ExternalDelegate string
	// ExternalOptions are passed to the external delegate as key/value
	// strings.
	ExternalOptions map[string]string
	// AllowFallback runs without the delegate when it cannot be created or
	// applied, instead of failing; Session.FallbackReason says why.
	AllowFallback bool
}

// delegatePlan is what an interpreter is created with: the delegate kind,
// the threads and the external delegate's options as the plugin ABI takes
// them (parallel key and value arrays, sorted by key).
type delegatePlan struct {
	kind    string
	threads int
	library string
	keys    []string
	values  []string
}

// plan maps Options onto a delegatePlan.
func plan(o Options) (delegatePlan, error) {
	p := delegatePlan{kind: strings.ToLower(o.Delegate), threads: o.Threads}
	if p.kind == "" {
		p.kind = DelegateXNNPack
	}
	if o.Threads < 0 {
		return delegatePlan{}, fmt.Errorf("tflite: threads %d, want 0 (default) or more", o.Threads)
	}
	switch p.kind {
	case DelegateNone, DelegateXNNPack, DelegateGPU:
		if o.ExternalDelegate != "" || len(o.ExternalOptions) > 0 {
			return delegatePlan{}, fmt.Errorf("tflite: an external delegate library or options are set but the delegate is %q; they apply to %q only", p.kind, DelegateExternal)
		}
	case DelegateExternal:
		if o.ExternalDelegate == "" {
			return delegatePlan{}, fmt.Errorf("tflite: delegate %q needs the path of the delegate library", DelegateExternal)
		}
		p.library = o.ExternalDelegate
		for k := range o.ExternalOptions {
			p.keys = append(p.keys, k)
		}
		sort.Strings(p.keys)
		for _, k := range p.keys {
			p.values = append(p.values, o.ExternalOptions[k])
		}
	default:
		return delegatePlan{}, fmt.Errorf("tflite: unknown delegate %q, want %s", o.Delegate, strings.Join(Delegates, ", "))
	}
	return p, nil
}

// provider names where an interpreter runs, as Engine.Provider reports it.
func (p delegatePlan) provider() string {
	if p.kind == DelegateNone {
		return "tflite-cpu"
	}
	return "tflite-" + p.kind
}

// candidates returns the libraries Open tries, in order, for a configured
// path and the value of $INSPECTD_TFLITE_LIB: the configured path alone,
// else the variable alone, else SystemLibraryPath and then LibraryName in
// the standard library paths.
func candidates(path, env string) []string {
	switch {
	case path != "":
		return []string{path}
	case env != "":
		return []string{env}
	}
	return []string{SystemLibraryPath, LibraryName}
}

// describe names a candidate in the "looked in" list.
func describe(c string) string {
	if c == LibraryName {
		return "the standard library paths (ld.so)"
	}
	return c
}

// notFoundError is the one line for a library found nowhere.
func notFoundError(tried []string) error {
	looked := make([]string, len(tried))
	for i, c := range tried {
		looked[i] = describe(c)
	}
	return fmt.Errorf("tflite runtime: %s not found (looked in: %s); %s", LibraryName, strings.Join(looked, ", "), installHint)
}

// loadError is the one line for a library that exists but does not load.
func loadError(path, dlerr string) error {
	dlerr = strings.TrimPrefix(dlerr, path+": ")
	return fmt.Errorf("tflite runtime: cannot load %s: %s; %s", path, dlerr, installHint)
}

// symbolError is the one line for a library without a symbol of the C API.
func symbolError(path, symbol string) error {
	return fmt.Errorf("tflite runtime: %s has no symbol %s: it is not TensorFlow Lite's C library, or too old a version; %s", path, symbol, installHint)
}

// notFound reports whether dlopen's error for candidate means that
// candidate does not exist, rather than that it exists and cannot be
// loaded (a library it needs is missing: dlerror then names that one).
func notFound(candidate, dlerr string) bool {
	return strings.HasPrefix(dlerr, candidate+": ") && strings.HasSuffix(dlerr, "No such file or directory")
}

package main

import (
	"log/slog"
	"strings"

	"github.com/inspectd/inspectd/infer"
)

// libraryFlagUsage documents the --onnxruntime-library flag.
const libraryFlagUsage = "`path` of libonnxruntime.so.1 (default: $INSPECTD_ONNXRUNTIME_LIB or the standard locations)"

// runtimeLibrary is the ONNX Runtime library to load: path, or
// infer.DefaultLibraryPath when path is empty.
func runtimeLibrary(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	return infer.DefaultLibraryPath()
}

// openRuntime loads ONNX Runtime from runtimeLibrary(path).
func openRuntime(path string) (*infer.Runtime, error) {
	path, err := runtimeLibrary(path)
	if err != nil {
		return nil, err
	}
	return infer.OpenRuntime(path)
}

// logRuntime logs the loaded ONNX Runtime library, its version and the
// providers it can offer, and the library's warning (a version other than
// the tested one) at WARN. A model.provider it lacks was refused before,
// by verifyEnvironment, in one line; with model.allow_fallback the daemon
// logs the fallback when the model loads.
func logRuntime(log *slog.Logger, rt *infer.Runtime) {
	log = log.With("component", "onnxruntime")
	if w := rt.Warning(); w != "" {
		log.Warn(w)
	}
	log.Info("onnxruntime loaded", "library", rt.LibraryPath(), "version", rt.Version(), "providers", strings.Join(rt.Providers(), ","))
}

package main

import (
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

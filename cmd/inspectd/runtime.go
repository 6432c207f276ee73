package main

import (
	"github.com/inspectd/inspectd/infer"
)

// libraryFlagUsage documents the --onnxruntime-library flag.
const libraryFlagUsage = "`path` of libonnxruntime.so.1 (default: $INSPECTD_ONNXRUNTIME_LIB or the standard locations)"

// openRuntime loads ONNX Runtime from path, or from infer.DefaultLibraryPath
// when path is empty.
func openRuntime(path string) (*infer.Runtime, error) {
	if path == "" {
		p, err := infer.DefaultLibraryPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	return infer.OpenRuntime(path)
}

// Package backend declares what the pure-Go training and evaluation code
// needs of an inference runtime, so that cgo stays at the edge: the
// packages under models/ build with CGO_ENABLED=0 and receive the native
// implementation (infer.NewBackend, ONNX Runtime) from cmd/inspectd or from
// their tests.
package backend

import (
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
)

// Session is a compiled fixed-shape graph with float32 tensors allocated
// once (implemented by *infer.Session). Input and Output return the
// tensors' memory: fill inputs, call Run, read outputs. A Session is used by
// one goroutine at a time.
type Session interface {
	// Input returns the data of the named graph input, or an error
	// naming the inputs the graph has.
	Input(name string) ([]float32, error)
	// Output returns the data of the named graph output.
	Output(name string) ([]float32, error)
	// Run executes the graph on the current inputs, overwriting the outputs.
	Run() error
	// Close releases the native resources.
	Close() error
}

// Backend compiles graphs and opens bundles.
type Backend interface {
	// NewSession compiles a serialized ONNX graph on the CPU with the
	// given number of intra-op threads (0: the runtime chooses).
	NewSession(model []byte, threads int) (Session, error)
	// NewEngine opens a loaded bundle exactly as the daemon does.
	NewEngine(b *bundle.Bundle, threads int) (inspection.Engine, error)
}

package infer

import (
	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
)

// NewBackend returns rt as a [backend.Backend]: the native implementation
// handed to the pure-Go training and evaluation packages. Sessions run on
// the CPU. Closing rt stays the caller's job.
func NewBackend(rt *Runtime) backend.Backend { return runtimeBackend{rt} }

type runtimeBackend struct{ rt *Runtime }

func (b runtimeBackend) NewSession(model []byte, threads int) (backend.Session, error) {
	s, err := b.rt.NewSession(model, SessionOptions{IntraOpThreads: threads})
	if err != nil {
		return nil, err // never a typed nil inside the interface
	}
	return s, nil
}

func (b runtimeBackend) NewEngine(bd *bundle.Bundle, threads int) (inspection.Engine, error) {
	e, err := NewEngine(b.rt, bd, EngineOptions{IntraOpThreads: threads})
	if err != nil {
		return nil, err
	}
	return e, nil
}

var (
	_ backend.Session   = (*Session)(nil)
	_ inspection.Engine = (*Engine)(nil)
	_ backend.Backend   = runtimeBackend{}
)

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/infer/tflite"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
)

// tfliteOptions maps [model] and [model.tflite] onto the TFLite runtime's
// options: xnnpack_threads 0 means model.threads, and allow_fallback lets
// a delegate that cannot be used fall back to TFLite's CPU kernels.
func tfliteOptions(m config.Model) tflite.Options {
	threads := m.TFLite.XNNPackThreads
	if threads == 0 {
		threads = m.Threads
	}
	return tflite.Options{
		Threads:          threads,
		Delegate:         m.TFLite.Delegate,
		ExternalDelegate: m.TFLite.ExternalDelegate,
		ExternalOptions:  m.TFLite.ExternalDelegateOptions,
		AllowFallback:    m.AllowFallback,
	}
}

// tfliteLibraries holds the TFLite C libraries a station loaded, by
// configured path (a reload may select the runtime or another library):
// a library stays loaded until the station closes. The zero value is
// ready; it is safe for use by several goroutines.
type tfliteLibraries struct {
	mu   sync.Mutex
	libs map[string]*tflite.Library
	log  *slog.Logger
}

// open returns the library of model.tflite.library (path; "" for the
// default places), loading it the first time.
func (t *tfliteLibraries) open(path string) (*tflite.Library, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.libs[path]; ok {
		return l, nil
	}
	l, err := tflite.Open(path)
	if err != nil {
		return nil, err
	}
	if t.libs == nil {
		t.libs = map[string]*tflite.Library{}
	}
	t.libs[path] = l
	if t.log != nil {
		t.log.Info("tflite runtime loaded", "component", "tflite", "library", l.Path(), "version", l.Version())
	}
	return l, nil
}

// Close unloads every library; the engines must be closed first.
func (t *tfliteLibraries) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for p, l := range t.libs {
		errs = append(errs, l.Close())
		delete(t.libs, p)
	}
	return errors.Join(errs...)
}

// newEngine builds the engine of a verified bundle for model.runtime
// "tflite": the bundle's TFLite twins run by the library of
// model.tflite.library.
func (t *tfliteLibraries) newEngine(b *bundle.Bundle, m config.Model) (inspection.Engine, error) {
	lib, err := t.open(m.TFLite.Library)
	if err != nil {
		return nil, err
	}
	e, err := tflite.NewEngine(lib, b, tfliteOptions(m))
	if err != nil {
		return nil, err // never a typed nil inside the interface
	}
	return e, nil
}

// checkTFLite is check-config's (and run's) test of model.runtime =
// "tflite": the library loads and has the C API's symbols, the delegate's
// functions resolve (its library, for "external"), and, when the bundle
// loads, it carries its TFLite twins. The twins are not compiled here (a
// GPU delegate takes seconds to set up): the daemon does that before
// READY. It returns the key a problem belongs to.
func checkTFLite(cfg *config.Config) (string, error) {
	m := cfg.Model
	lib, err := tflite.Open(m.TFLite.Library)
	if err != nil {
		return "model.tflite.library", err
	}
	defer lib.Close()
	if err := lib.CheckDelegate(tfliteOptions(m)); err != nil {
		if m.TFLite.Delegate == config.DelegateExternal {
			return "model.tflite.external_delegate", err
		}
		return "model.tflite.delegate", err
	}
	// Every product's bundle must carry its twins: a changeover to one
	// without them would fail on the line.
	for i, p := range cfg.ProductList() {
		b, err := bundle.Load(p.Bundle)
		if err != nil {
			continue // the bundle's own problem, reported on its own
		}
		if _, err := tflite.ReadTwins(b); err != nil {
			if len(cfg.Products) > 0 {
				return "model.runtime", fmt.Errorf("product[%d] %q (%s): %w", i+1, p.Name, p.Bundle, err)
			}
			return "model.runtime", err
		}
	}
	return "", nil
}

package infer

/*
#cgo LDFLAGS: -ldl -lm
#include <dlfcn.h>
#include <stdlib.h>
#include "nearest_entry.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// The NearestEntry operator's domain and name in a graph (see
// nearest_entry.h).
const (
	nearestDomain = C.NE_DOMAIN
	nearestOpName = C.NE_OP_NAME
)

// nearestDomains holds, per library path, the custom-op domain that
// registers NearestEntry with ONNX Runtime, and a dlopen handle that keeps
// that library loaded as long as the process runs (the domain belongs to
// it, and sessions of a later Runtime may use it again).
var nearestDomains struct {
	mu     sync.Mutex
	byPath map[string]nearestDomainHandle
}

type nearestDomainHandle struct {
	lib, domain unsafe.Pointer
	err         error
}

// NearestEntrySupported says whether this machine runs ONNX Runtime CPU
// sessions of a localisation graph with the fused NearestEntry operator
// (x86-64 with AVX-512 VNNI); elsewhere they run the standard operators.
func NearestEntrySupported() bool { return C.neSupported() != 0 }

// nearestEntryDomain returns the NearestEntry domain for the library at path,
// created once.
func nearestEntryDomain(path string) (nearestDomainHandle, error) {
	nearestDomains.mu.Lock()
	defer nearestDomains.mu.Unlock()
	if h, ok := nearestDomains.byPath[path]; ok {
		return h, h.err
	}
	if nearestDomains.byPath == nil {
		nearestDomains.byPath = map[string]nearestDomainHandle{}
	}
	h := newNearestDomain(path)
	nearestDomains.byPath[path] = h
	return h, h.err
}

func newNearestDomain(path string) nearestDomainHandle {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	lib := C.dlopen(cpath, C.RTLD_LAZY|C.RTLD_LOCAL)
	if lib == nil {
		return nearestDomainHandle{err: fmt.Errorf("nearest-entry operator: cannot load %s: %s", path, C.GoString(C.dlerror()))}
	}
	var domain unsafe.Pointer
	var msg [256]C.char
	if C.neNewDomain(lib, C.uint32_t(bindingAPIVersion), &domain, &msg[0], C.size_t(len(msg))) != 0 {
		C.dlclose(lib)
		return nearestDomainHandle{err: fmt.Errorf("nearest-entry operator: %s", C.GoString(&msg[0]))}
	}
	return nearestDomainHandle{lib: lib, domain: domain}
}

// addNearestEntry registers the NearestEntry operator of the library at
// path with so.
func addNearestEntry(so *ort.SessionOptions, path string) error {
	raw, err := rawSessionOptions(so)
	if err != nil {
		return err
	}
	h, err := nearestEntryDomain(path)
	if err != nil {
		return err
	}
	var msg [256]C.char
	if C.neAddDomain(h.lib, C.uint32_t(bindingAPIVersion), raw, h.domain, &msg[0], C.size_t(len(msg))) != 0 {
		return fmt.Errorf("nearest-entry operator: %s", C.GoString(&msg[0]))
	}
	return nil
}

// rawSessionOptions returns the OrtSessionOptions pointer inside so:
// onnxruntime_go has no call that registers a custom operator, and keeps
// the pointer as the only field of SessionOptions. The layout is checked,
// so that another binding version turns the fusion off instead of
// corrupting memory.
func rawSessionOptions(so *ort.SessionOptions) (unsafe.Pointer, error) {
	t := reflect.TypeFor[ort.SessionOptions]()
	if t.NumField() != 1 || t.Field(0).Type.Kind() != reflect.Pointer || t.Size() != unsafe.Sizeof(uintptr(0)) {
		return nil, errors.New("nearest-entry operator: onnxruntime_go's SessionOptions is not the one pointer this package knows")
	}
	p := *(*unsafe.Pointer)(unsafe.Pointer(so))
	if p == nil {
		return nil, errors.New("nearest-entry operator: destroyed session options")
	}
	return p, nil
}

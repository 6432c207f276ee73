package infer

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The few parts of onnxruntime_c_api.h this probe needs. ONNX Runtime only
// ever appends to OrtApi, so the slots below are fixed for every release
// that has them (GetAvailableProviders since 1.4; checked against the
// header vendored in onnxruntime_go v1.27.0 with offsetof).
typedef struct OrtStatus OrtStatus;
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} probeApiBase;
typedef probeApiBase *(*probeGetApiBaseFn)(void);
typedef const char *(*probeGetErrorMessageFn)(const OrtStatus *);
typedef void (*probeReleaseStatusFn)(OrtStatus *);
typedef OrtStatus *(*probeGetAvailableProvidersFn)(char ***, int *);
typedef OrtStatus *(*probeReleaseAvailableProvidersFn)(char **, int);

enum {
	probeSlotGetErrorMessage = 2,
	probeSlotReleaseStatus = 93,
	probeSlotGetAvailableProviders = 125,
	probeSlotReleaseAvailableProviders = 126,
	// GetAvailableProviders appeared in API version 4.
	probeMinProvidersApi = 4,
};

typedef struct {
	const char *version; // NULL when OrtGetApiBase is missing
	int api_ok;          // GetApi(want) returned an OrtApi
	char **providers;
	int nproviders;
	char err[256];
} probeResult;

static void probeCopy(char *dst, const char *src) {
	size_t i = 0;
	if (src) {
		for (; src[i] && i < 255; i++) dst[i] = src[i];
	}
	dst[i] = 0;
}

// probeLibrary asks the library at handle for its version, whether it
// serves API version want, and its compiled-in execution providers (copied
// into malloc'ed strings the caller frees with probeFree).
static void probeLibrary(void *handle, uint32_t want, probeResult *r) {
	probeGetApiBaseFn getBase = (probeGetApiBaseFn)dlsym(handle, "OrtGetApiBase");
	if (!getBase) return;
	probeApiBase *base = getBase();
	if (!base) return;
	r->version = base->GetVersionString();
	const void *const *api = (const void *const *)base->GetApi(want);
	r->api_ok = api != NULL;
	if (!api) {
		// An older library: its own API level still lists the providers.
		api = (const void *const *)base->GetApi(probeMinProvidersApi);
		if (!api) return;
	}
	char **list = NULL;
	int n = 0;
	OrtStatus *st = ((probeGetAvailableProvidersFn)api[probeSlotGetAvailableProviders])(&list, &n);
	if (st) {
		probeCopy(r->err, ((probeGetErrorMessageFn)api[probeSlotGetErrorMessage])(st));
		((probeReleaseStatusFn)api[probeSlotReleaseStatus])(st);
		return;
	}
	r->providers = (char **)calloc(n > 0 ? n : 1, sizeof(char *));
	for (int i = 0; i < n; i++) {
		r->providers[i] = strdup(list[i]);
	}
	r->nproviders = n;
	st = ((probeReleaseAvailableProvidersFn)api[probeSlotReleaseAvailableProviders])(list, n);
	if (st) ((probeReleaseStatusFn)api[probeSlotReleaseStatus])(st);
}

static void probeFree(probeResult *r) {
	for (int i = 0; i < r->nproviders; i++) free(r->providers[i]);
	free(r->providers);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// bindingAPIVersion is ORT_API_VERSION of the onnxruntime_c_api.h that
// github.com/yalue/onnxruntime_go v1.27 is built with: it asks the library
// for this API level, which ONNX Runtime 1.24 and later serve.
const bindingAPIVersion = 24

// libraryProbe is what probeLibrary learnt about a library before
// onnxruntime_go initialises it.
type libraryProbe struct {
	// version is the library's GetVersionString.
	version string
	// apiOK is whether the library serves bindingAPIVersion.
	apiOK bool
	// providers are the execution providers compiled into the library
	// (OrtApi.GetAvailableProviders), e.g. "CUDAExecutionProvider".
	providers []string
}

// probeLibrary loads path with its own dlopen handle, reads the version,
// checks the API level the binding needs and lists the library's
// execution providers, then closes the handle. It initialises nothing of
// ONNX Runtime: calling GetApi on a library too old for the binding is
// safe, where onnxruntime_go would only report "NULL".
func probeLibrary(path string) (libraryProbe, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	h := C.dlopen(cpath, C.RTLD_LAZY|C.RTLD_LOCAL)
	if h == nil {
		return libraryProbe{}, fmt.Errorf("cannot load: %s", C.GoString(C.dlerror()))
	}
	defer C.dlclose(h)
	var r C.probeResult
	C.probeLibrary(h, C.uint32_t(bindingAPIVersion), &r)
	defer C.probeFree(&r)
	if r.version == nil {
		return libraryProbe{}, errors.New("no OrtGetApiBase: not an ONNX Runtime library")
	}
	p := libraryProbe{version: C.GoString(r.version), apiOK: r.api_ok != 0}
	if msg := C.GoString(&r.err[0]); msg != "" {
		return p, fmt.Errorf("listing its execution providers: %s", msg)
	}
	list := unsafe.Slice(r.providers, int(r.nproviders))
	for _, s := range list {
		p.providers = append(p.providers, C.GoString(s))
	}
	return p, nil
}

package tflite

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The few types and functions of TensorFlow Lite's C API (tensorflow/lite/
// core/c/c_api.h, delegates/xnnpack/xnnpack_delegate.h, delegates/gpu/
// delegate.h, delegates/external/external_delegate.cc's plugin ABI) that
// inspectd calls, declared here so that no TFLite header is needed to build.
// Every object is opaque; TfLiteStatus and TfLiteType are C enums (int).
enum { inspectd_kTfLiteOk = 0, inspectd_kTfLiteFloat32 = 1 };

typedef void *(*model_create_fn)(const void *, size_t);
typedef void (*void_fn)(void *);
typedef void *(*options_create_fn)(void);
typedef void (*options_set_num_threads_fn)(void *, int32_t);
typedef void (*options_add_delegate_fn)(void *, void *);
typedef void *(*interpreter_create_fn)(const void *, const void *);
typedef int (*status_fn)(void *);
typedef int32_t (*count_fn)(const void *);
typedef void *(*tensor_at_fn)(const void *, int32_t);
typedef int (*tensor_type_fn)(const void *);
typedef int32_t (*tensor_num_dims_fn)(const void *);
typedef int32_t (*tensor_dim_fn)(const void *, int32_t);
typedef size_t (*tensor_byte_size_fn)(const void *);
typedef void *(*tensor_data_fn)(const void *);
typedef const char *(*tensor_name_fn)(const void *);
typedef int (*copy_from_fn)(void *, const void *, size_t);
typedef int (*copy_to_fn)(const void *, void *, size_t);
typedef const char *(*version_fn)(void);

// TfLiteXNNPackDelegateOptions starts with num_threads in every release and
// grows at its end from release to release. It is returned by value through
// memory the caller provides (it is larger than 16 bytes on amd64 and
// arm64 alike), so a larger buffer than the library's struct is safe.
typedef struct { int32_t num_threads; uint32_t flags; uint64_t rest[62]; } xnnpack_options;
typedef xnnpack_options (*xnnpack_options_default_fn)(void);
typedef void *(*delegate_create_fn)(const void *);
typedef void (*report_error_fn)(const char *);
typedef void *(*plugin_create_fn)(char **, char **, size_t, report_error_fn);

typedef struct {
	model_create_fn model_create;
	void_fn model_delete;
	options_create_fn options_create;
	options_set_num_threads_fn options_set_num_threads;
	options_add_delegate_fn options_add_delegate;
	void_fn options_delete;
	interpreter_create_fn interpreter_create;
	status_fn allocate_tensors;
	status_fn invoke;
	count_fn input_count;
	count_fn output_count;
	tensor_at_fn input_tensor;
	tensor_at_fn output_tensor;
	void_fn interpreter_delete;
	tensor_type_fn tensor_type;
	tensor_num_dims_fn tensor_num_dims;
	tensor_dim_fn tensor_dim;
	tensor_byte_size_fn tensor_byte_size;
	tensor_data_fn tensor_data;
	tensor_name_fn tensor_name;
	copy_from_fn copy_from;
	copy_to_fn copy_to;
	version_fn version;
} api;

// The C API's symbols, in the order they are looked up; api's fields in the
// same order.
static const char *api_symbols[] = {
	"TfLiteModelCreate", "TfLiteModelDelete",
	"TfLiteInterpreterOptionsCreate", "TfLiteInterpreterOptionsSetNumThreads",
	"TfLiteInterpreterOptionsAddDelegate", "TfLiteInterpreterOptionsDelete",
	"TfLiteInterpreterCreate", "TfLiteInterpreterAllocateTensors", "TfLiteInterpreterInvoke",
	"TfLiteInterpreterGetInputTensorCount", "TfLiteInterpreterGetOutputTensorCount",
	"TfLiteInterpreterGetInputTensor", "TfLiteInterpreterGetOutputTensor",
	"TfLiteInterpreterDelete",
	"TfLiteTensorType", "TfLiteTensorNumDims", "TfLiteTensorDim", "TfLiteTensorByteSize",
	"TfLiteTensorData", "TfLiteTensorName", "TfLiteTensorCopyFromBuffer", "TfLiteTensorCopyToBuffer",
	"TfLiteVersion",
};

// resolve fills a from handle; it returns the first symbol missing, or NULL.
static const char *resolve(void *handle, api *a) {
	void **slot = (void **)a;
	size_t n = sizeof(api_symbols) / sizeof(api_symbols[0]);
	for (size_t i = 0; i < n; i++) {
		slot[i] = dlsym(handle, api_symbols[i]);
		if (slot[i] == NULL) return api_symbols[i];
	}
	return NULL;
}

static int api_fits(void) { return sizeof(api) == sizeof(api_symbols) / sizeof(api_symbols[0]) * sizeof(void *); }

// open_library returns the handle, or NULL and dlerror's message in *err
// (malloc'd: dlerror is per thread, so it is read in the same C call).
static void *open_library(const char *path, char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		*err = strdup(e ? e : "unknown dlopen error");
	}
	return h;
}
static void *symbol(void *handle, const char *name) { return dlsym(handle, name); }
static int close_library(void *handle) { return dlclose(handle); }

static void *model_create(api *a, const void *d, size_t n) { return a->model_create(d, n); }
static void model_delete(api *a, void *m) { a->model_delete(m); }
static void *options_create(api *a) { return a->options_create(); }
static void options_set_num_threads(api *a, void *o, int32_t n) { a->options_set_num_threads(o, n); }
static void options_add_delegate(api *a, void *o, void *d) { a->options_add_delegate(o, d); }
static void options_delete(api *a, void *o) { a->options_delete(o); }
static void *interpreter_create(api *a, void *m, void *o) { return a->interpreter_create(m, o); }
static int allocate_tensors(api *a, void *i) { return a->allocate_tensors(i); }
static int invoke(api *a, void *i) { return a->invoke(i); }
static int32_t input_count(api *a, void *i) { return a->input_count(i); }
static int32_t output_count(api *a, void *i) { return a->output_count(i); }
static void *input_tensor(api *a, void *i, int32_t k) { return a->input_tensor(i, k); }
static void *output_tensor(api *a, void *i, int32_t k) { return a->output_tensor(i, k); }
static void interpreter_delete(api *a, void *i) { a->interpreter_delete(i); }
static int tensor_type(api *a, void *t) { return a->tensor_type(t); }
static int32_t tensor_num_dims(api *a, void *t) { return a->tensor_num_dims(t); }
static int32_t tensor_dim(api *a, void *t, int32_t k) { return a->tensor_dim(t, k); }
static size_t tensor_byte_size(api *a, void *t) { return a->tensor_byte_size(t); }
static const char *tensor_name(api *a, void *t) { return a->tensor_name(t); }
static int copy_from(api *a, void *t, const void *src, size_t n) { return a->copy_from(t, src, n); }
static int copy_to(api *a, void *t, void *dst, size_t n) { return a->copy_to(t, dst, n); }
static const char *version(api *a) { return a->version(); }

static void *xnnpack_create(void *dflt, void *create, int32_t threads) {
	xnnpack_options o;
	memset(&o, 0, sizeof o);
	o = ((xnnpack_options_default_fn)dflt)();
	if (threads > 0) o.num_threads = threads;
	return ((delegate_create_fn)create)(&o);
}
// TfLiteGpuDelegateV2Create(NULL) uses the delegate's defaults.
static void *gpu_create(void *create) { return ((delegate_create_fn)create)(NULL); }
static void delegate_delete(void *del, void *d) { ((void_fn)del)(d); }

static void report_external(const char *msg) { fprintf(stderr, "tflite external delegate: %s\n", msg); }
static void *plugin_create(void *create, char **keys, char **values, size_t n) {
	return ((plugin_create_fn)create)(keys, values, n, report_external);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// Library is a loaded TensorFlow Lite C library. It is safe for use by
// several goroutines; close its sessions before Close.
type Library struct {
	path    string
	handle  unsafe.Pointer
	api     *C.api // C memory: the function pointers
	version string

	mu  sync.Mutex
	gpu unsafe.Pointer // handle of GPUDelegateLibrary, when opened
}

// Open loads TensorFlow Lite's C library: path when set, else
// $INSPECTD_TFLITE_LIB when set, else SystemLibraryPath and then
// LibraryName in the standard library paths. A library found nowhere, one
// that does not load, or one without a symbol of the C API inspectd calls
// is an error of one line naming what was looked for and what to install.
func Open(path string) (*Library, error) {
	tried := candidates(path, os.Getenv(EnvLibrary))
	for _, c := range tried {
		h, dlerr := dlopen(c)
		if h == nil {
			if notFound(c, dlerr) {
				continue
			}
			return nil, loadError(c, dlerr)
		}
		l, err := bind(c, h)
		if err != nil {
			C.close_library(h)
			return nil, err
		}
		return l, nil
	}
	if len(tried) == 1 && tried[0] != LibraryName {
		return nil, loadError(tried[0], tried[0]+": No such file or directory")
	}
	return nil, notFoundError(tried)
}

func dlopen(path string) (unsafe.Pointer, string) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var cerr *C.char
	h := C.open_library(cp, &cerr)
	if h == nil {
		defer C.free(unsafe.Pointer(cerr))
		return nil, C.GoString(cerr)
	}
	return h, ""
}

// bind resolves the C API in the library at h.
func bind(path string, h unsafe.Pointer) (*Library, error) {
	if C.api_fits() == 0 {
		return nil, errors.New("tflite runtime: internal error: the C API table does not match its symbol list")
	}
	a := (*C.api)(C.calloc(1, C.size_t(unsafe.Sizeof(C.api{}))))
	if missing := C.resolve(h, a); missing != nil {
		C.free(unsafe.Pointer(a))
		return nil, symbolError(path, C.GoString(missing))
	}
	return &Library{path: path, handle: h, api: a, version: C.GoString(C.version(a))}, nil
}

// Path returns the library as it was loaded (a path, or LibraryName when
// found in the standard library paths).
func (l *Library) Path() string { return l.path }

// Version returns TfLiteVersion().
func (l *Library) Version() string { return l.version }

// Close unloads the library. Sessions must be closed first.
func (l *Library) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handle == nil {
		return nil
	}
	if l.gpu != nil {
		C.close_library(l.gpu)
		l.gpu = nil
	}
	C.close_library(l.handle)
	C.free(unsafe.Pointer(l.api))
	l.handle, l.api = nil, nil
	return nil
}

// delegateFuncs are the create and delete functions of a delegate, and the
// library handle they came from when inspectd opened one for them.
type delegateFuncs struct {
	create, deflt, del unsafe.Pointer
	handle             unsafe.Pointer // an external delegate's library, closed with the session
}

func sym(h unsafe.Pointer, name string) unsafe.Pointer {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return C.symbol(h, cn)
}

// delegate resolves the functions of the planned delegate: XNNPACK's and
// the GPU delegate's in the C library (the GPU delegate also in
// GPUDelegateLibrary beside it or in the standard paths), an external
// delegate's in its own library.
func (l *Library) delegate(p delegatePlan) (delegateFuncs, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handle == nil {
		return delegateFuncs{}, errors.New("tflite runtime: library is closed")
	}
	switch p.kind {
	case DelegateXNNPack:
		f := delegateFuncs{deflt: sym(l.handle, "TfLiteXNNPackDelegateOptionsDefault"),
			create: sym(l.handle, "TfLiteXNNPackDelegateCreate"), del: sym(l.handle, "TfLiteXNNPackDelegateDelete")}
		for _, s := range []struct {
			name string
			p    unsafe.Pointer
		}{{"TfLiteXNNPackDelegateOptionsDefault", f.deflt}, {"TfLiteXNNPackDelegateCreate", f.create}, {"TfLiteXNNPackDelegateDelete", f.del}} {
			if s.p == nil {
				return delegateFuncs{}, fmt.Errorf("tflite runtime: %s has no symbol %s (the XNNPACK delegate); use model.tflite.delegate = \"none\" or a library built with XNNPACK", l.path, s.name)
			}
		}
		return f, nil
	case DelegateGPU:
		h := l.handle
		f := delegateFuncs{create: sym(h, "TfLiteGpuDelegateV2Create"), del: sym(h, "TfLiteGpuDelegateV2Delete")}
		if f.create == nil || f.del == nil {
			if l.gpu == nil {
				places := []string{GPUDelegateLibrary}
				if filepath.IsAbs(l.path) {
					places = append([]string{filepath.Join(filepath.Dir(l.path), GPUDelegateLibrary)}, places...)
				}
				var tried []string
				for _, c := range places {
					if g, _ := dlopen(c); g != nil {
						l.gpu = g
						break
					}
					tried = append(tried, describe(c))
				}
				if l.gpu == nil {
					return delegateFuncs{}, fmt.Errorf("tflite runtime: the GPU delegate (TfLiteGpuDelegateV2Create) is neither in %s nor in a loadable %s (looked in: %s); install TensorFlow Lite's GPU delegate library or use model.tflite.delegate = \"xnnpack\"", l.path, GPUDelegateLibrary, strings.Join(tried, ", "))
				}
			}
			f = delegateFuncs{create: sym(l.gpu, "TfLiteGpuDelegateV2Create"), del: sym(l.gpu, "TfLiteGpuDelegateV2Delete")}
			if f.create == nil || f.del == nil {
				return delegateFuncs{}, fmt.Errorf("tflite runtime: %s has no symbol TfLiteGpuDelegateV2Create or TfLiteGpuDelegateV2Delete; install TensorFlow Lite's GPU delegate library or use model.tflite.delegate = \"xnnpack\"", GPUDelegateLibrary)
			}
		}
		return f, nil
	case DelegateExternal:
		h, dlerr := dlopen(p.library)
		if h == nil {
			return delegateFuncs{}, fmt.Errorf("tflite runtime: cannot load the external delegate %s: %s; install the delegate library your NPU's vendor ships or fix model.tflite.external_delegate", p.library, dlerr)
		}
		f := delegateFuncs{create: sym(h, "tflite_plugin_create_delegate"), del: sym(h, "tflite_plugin_destroy_delegate"), handle: h}
		for _, s := range []struct {
			name string
			p    unsafe.Pointer
		}{{"tflite_plugin_create_delegate", f.create}, {"tflite_plugin_destroy_delegate", f.del}} {
			if s.p == nil {
				C.close_library(h)
				return delegateFuncs{}, fmt.Errorf("tflite runtime: the external delegate %s has no symbol %s: it is not a TFLite external delegate plugin", p.library, s.name)
			}
		}
		return f, nil
	}
	return delegateFuncs{}, nil
}

// CheckDelegate resolves what the delegate of opts needs, loading nothing
// else: check-config's test that the configured delegate can be created.
func (l *Library) CheckDelegate(opts Options) error {
	p, err := plan(opts)
	if err != nil {
		return err
	}
	f, err := l.delegate(p)
	if f.handle != nil {
		C.close_library(f.handle)
	}
	return err
}

// worker runs functions on one OS thread, locked to its goroutine.
type worker struct {
	calls chan func()
	done  chan struct{}
}

func startWorker() *worker {
	w := &worker{calls: make(chan func()), done: make(chan struct{})}
	go func() {
		// Never unlocked: the thread ends with the goroutine, and whatever
		// a delegate bound to it with it.
		runtime.LockOSThread()
		for f := range w.calls {
			f()
			w.done <- struct{}{}
		}
	}()
	return w
}

// do runs f on the worker's thread and waits for it.
func (w *worker) do(f func()) {
	w.calls <- f
	<-w.done
}

func (w *worker) stop() { close(w.calls) }

// cInterp is an interpreter of the C library; every C call runs on w.
type cInterp struct {
	l       *Library
	w       *worker
	model   unsafe.Pointer // TfLiteModel
	data    unsafe.Pointer // the model bytes in C memory (TFLite does not copy them)
	interp  unsafe.Pointer // TfLiteInterpreter
	del     unsafe.Pointer // the delegate
	funcs   delegateFuncs
	ins     []unsafe.Pointer
	outs    []unsafe.Pointer
	inInfo  []tensorInfo
	outInfo []tensorInfo
	in, out [][]float32 // run's buffers, set before runOnThread
	runErr  error
	runFn   func() // runOnThread as a value made once, so Run allocates nothing
}

// NewSession compiles a .tflite model with opts. With opts.AllowFallback,
// a delegate that cannot be created or applied is left out (the session
// runs on the CPU and FallbackReason says why).
func (l *Library) NewSession(model []byte, opts Options) (*Session, error) {
	p, err := plan(opts)
	if err != nil {
		return nil, err
	}
	if len(model) == 0 {
		return nil, errors.New("tflite session: empty model")
	}
	it, err := l.newInterp(model, p)
	if err == nil {
		return l.wrap(it, p.provider(), nil)
	}
	if p.kind == DelegateNone || !opts.AllowFallback {
		return nil, err
	}
	cpu := delegatePlan{kind: DelegateNone, threads: p.threads}
	it, err2 := l.newInterp(model, cpu)
	if err2 != nil {
		return nil, errors.Join(err, err2)
	}
	return l.wrap(it, cpu.provider()+" (fallback)", err)
}

func (l *Library) wrap(it *cInterp, provider string, fallback error) (*Session, error) {
	s, err := newSession(it, provider, fallback)
	if err != nil {
		it.close()
		return nil, err
	}
	return s, nil
}

func (l *Library) newInterp(model []byte, p delegatePlan) (_ *cInterp, err error) {
	funcs, err := l.delegate(p)
	if err != nil {
		return nil, err
	}
	c := &cInterp{l: l, w: startWorker(), funcs: funcs}
	c.runFn = c.runOnThread
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	c.w.do(func() { err = c.create(model, p) })
	return c, err
}

// create runs on the worker's thread.
func (c *cInterp) create(model []byte, p delegatePlan) error {
	a := c.l.api
	c.data = C.CBytes(model)
	c.model = C.model_create(a, c.data, C.size_t(len(model)))
	if c.model == nil {
		return errors.New("tflite session: TfLiteModelCreate failed: not a TFLite model this library reads (its messages are on stderr)")
	}
	opts := C.options_create(a)
	if opts == nil {
		return errors.New("tflite session: TfLiteInterpreterOptionsCreate failed")
	}
	defer C.options_delete(a, opts)
	if p.threads > 0 {
		C.options_set_num_threads(a, opts, C.int32_t(p.threads))
	}
	switch p.kind {
	case DelegateXNNPack:
		c.del = C.xnnpack_create(c.funcs.deflt, c.funcs.create, C.int32_t(p.threads))
	case DelegateGPU:
		c.del = C.gpu_create(c.funcs.create)
	case DelegateExternal:
		c.del = c.createExternal(p)
	}
	if p.kind != DelegateNone {
		if c.del == nil {
			return fmt.Errorf("tflite session: the %s delegate could not be created (its messages are on stderr)", p.kind)
		}
		C.options_add_delegate(a, opts, c.del)
	}
	c.interp = C.interpreter_create(a, c.model, opts)
	if c.interp == nil {
		if p.kind != DelegateNone {
			return fmt.Errorf("tflite session: TfLiteInterpreterCreate failed with the %s delegate: the delegate refused the graph (its messages are on stderr)", p.kind)
		}
		return errors.New("tflite session: TfLiteInterpreterCreate failed: an operator this library cannot run? (its messages are on stderr)")
	}
	if C.allocate_tensors(a, c.interp) != C.inspectd_kTfLiteOk {
		return errors.New("tflite session: TfLiteInterpreterAllocateTensors failed (its messages are on stderr)")
	}
	var err error
	if c.ins, c.inInfo, err = c.tensors(int(C.input_count(a, c.interp)), true); err != nil {
		return err
	}
	c.outs, c.outInfo, err = c.tensors(int(C.output_count(a, c.interp)), false)
	return err
}

func (c *cInterp) createExternal(p delegatePlan) unsafe.Pointer {
	n := len(p.keys)
	arr := func(ss []string) **C.char {
		if n == 0 {
			return nil
		}
		a := unsafe.Slice((**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.char)(nil))))), n)
		for i, s := range ss {
			a[i] = C.CString(s)
		}
		return &a[0]
	}
	free := func(pp **C.char) {
		if pp == nil {
			return
		}
		for _, s := range unsafe.Slice(pp, n) {
			C.free(unsafe.Pointer(s))
		}
		C.free(unsafe.Pointer(pp))
	}
	keys, values := arr(p.keys), arr(p.values)
	defer free(keys)
	defer free(values)
	return C.plugin_create(c.funcs.create, keys, values, C.size_t(n))
}

// tensors reads the interpreter's inputs or outputs.
func (c *cInterp) tensors(n int, input bool) ([]unsafe.Pointer, []tensorInfo, error) {
	a := c.l.api
	ps := make([]unsafe.Pointer, n)
	infos := make([]tensorInfo, n)
	for i := range n {
		var t unsafe.Pointer
		if input {
			t = C.input_tensor(a, c.interp, C.int32_t(i))
		} else {
			t = C.output_tensor(a, c.interp, C.int32_t(i))
		}
		if t == nil {
			return nil, nil, fmt.Errorf("tflite session: tensor %d is missing", i)
		}
		ti := tensorInfo{name: C.GoString(C.tensor_name(a, t)), float: C.tensor_type(a, t) == C.inspectd_kTfLiteFloat32}
		elems := 1
		for d := range int(C.tensor_num_dims(a, t)) {
			v := int(C.tensor_dim(a, t, C.int32_t(d)))
			ti.dims = append(ti.dims, v)
			elems *= v
		}
		if ti.float && int(C.tensor_byte_size(a, t)) != 4*elems {
			return nil, nil, fmt.Errorf("tflite session: tensor %q %v holds %d bytes, want %d", ti.name, ti.dims, int(C.tensor_byte_size(a, t)), 4*elems)
		}
		ps[i], infos[i] = t, ti
	}
	return ps, infos, nil
}

func (c *cInterp) inputs() []tensorInfo  { return c.inInfo }
func (c *cInterp) outputs() []tensorInfo { return c.outInfo }

func (c *cInterp) run(in, out [][]float32) error {
	c.in, c.out = in, out
	c.w.do(c.runFn)
	c.in, c.out = nil, nil
	return c.runErr
}

// runOnThread runs on the worker's thread.
func (c *cInterp) runOnThread() {
	a := c.l.api
	c.runErr = nil
	for i, t := range c.ins {
		b := c.in[i]
		if C.copy_from(a, t, unsafe.Pointer(unsafe.SliceData(b)), C.size_t(4*len(b))) != C.inspectd_kTfLiteOk {
			c.runErr = fmt.Errorf("TfLiteTensorCopyFromBuffer of input %q failed", c.inInfo[i].name)
			return
		}
	}
	if C.invoke(a, c.interp) != C.inspectd_kTfLiteOk {
		c.runErr = errors.New("TfLiteInterpreterInvoke failed (its messages are on stderr)")
		return
	}
	for i, t := range c.outs {
		b := c.out[i]
		if C.copy_to(a, t, unsafe.Pointer(unsafe.SliceData(b)), C.size_t(4*len(b))) != C.inspectd_kTfLiteOk {
			c.runErr = fmt.Errorf("TfLiteTensorCopyToBuffer of output %q failed", c.outInfo[i].name)
			return
		}
	}
}

// close deletes the interpreter, then the delegate and the model, on the
// worker's thread, and stops the worker.
func (c *cInterp) close() error {
	if c.w == nil {
		return nil
	}
	a := c.l.api
	c.w.do(func() {
		if c.interp != nil {
			C.interpreter_delete(a, c.interp)
		}
		if c.del != nil {
			C.delegate_delete(c.funcs.del, c.del)
		}
		if c.model != nil {
			C.model_delete(a, c.model)
		}
	})
	c.w.stop()
	if c.data != nil {
		C.free(c.data)
	}
	if c.funcs.handle != nil {
		C.close_library(c.funcs.handle)
	}
	c.w, c.interp, c.del, c.model, c.data, c.funcs = nil, nil, nil, nil, nil, delegateFuncs{}
	return nil
}

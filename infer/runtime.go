// Package infer runs inspectd's ONNX models with ONNX Runtime.
//
// It is the only package that uses cgo for inference (through
// github.com/yalue/onnxruntime_go, which loads libonnxruntime.so.1 at run time
// with dlopen). [OpenRuntime] loads the library and creates the process-wide
// ONNX Runtime environment; [Runtime.NewSession] compiles a fixed-shape model
// for an execution provider (cpu, cuda or tensorrt) with input and output
// tensors allocated once, so that [Session.Run] allocates nothing.
//
// Thread safety: OpenRuntime, Runtime.Close and Runtime.NewSession may be called
// from any goroutine. A Session must be used by one goroutine at a time: Run
// reads the input slices and overwrites the output slices in place, so callers
// fill inputs, call Run and read outputs without another Run in between.
// ONNX Runtime does not need the calling OS thread to be locked.
package infer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/inspectd/inspectd/models/onnx"
)

// EnvLibrary is the environment variable naming libonnxruntime.so.1.
const EnvLibrary = "INSPECTD_ONNXRUNTIME_LIB"

// SystemLibraryPath is the last place [DefaultLibraryPath] looks.
const SystemLibraryPath = "/usr/lib/inspectd/libonnxruntime.so.1"

// WantVersion is the ONNX Runtime release series this package is tested
// against; other releases from [MinVersion] on load with a warning.
const WantVersion = "1.30."

// Execution providers accepted in SessionOptions.Provider.
const (
	ProviderCPU      = "cpu"
	ProviderCUDA     = "cuda"
	ProviderTensorRT = "tensorrt"
)

// DefaultLibraryPath finds libonnxruntime.so.1: $INSPECTD_ONNXRUNTIME_LIB when
// set (returned as is), then .deps/onnxruntime/linux-<arch>/libonnxruntime.so.1
// in the working directory and each parent (as made by scripts/deps.sh), then
// [SystemLibraryPath]. The error lists every place looked at.
func DefaultLibraryPath() (string, error) {
	if p := os.Getenv(EnvLibrary); p != "" {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("onnxruntime library: %w", err)
	}
	return findLibrary(wd, runtime.GOARCH, SystemLibraryPath)
}

func findLibrary(wd, goarch, system string) (string, error) {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[goarch]
	if arch == "" {
		arch = goarch
	}
	rel := filepath.Join(".deps", "onnxruntime", "linux-"+arch, "libonnxruntime.so.1")
	var tried []string
	for d := filepath.Clean(wd); ; d = filepath.Dir(d) {
		p := filepath.Join(d, rel)
		if isFile(p) {
			return p, nil
		}
		tried = append(tried, p)
		if filepath.Dir(d) == d {
			break
		}
	}
	if isFile(system) {
		return system, nil
	}
	tried = append(tried, system)
	return "", fmt.Errorf("onnxruntime library not found (set $%s or run scripts/deps.sh); looked in: %s", EnvLibrary, strings.Join(tried, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// env is the process-wide ONNX Runtime environment. onnxruntime_go keeps one
// global environment, so every Runtime shares it; it is created by the first
// OpenRuntime and destroyed when the last Runtime is closed.
var env struct {
	mu        sync.Mutex
	refs      int
	path      string
	version   string
	warning   string
	providers []string
}

// Runtime is a handle on the loaded ONNX Runtime library. Close it after
// closing its sessions.
type Runtime struct {
	path, version string
	warning       string   // see Warning
	providers     []string // compiled into the library, ONNX Runtime's names
	once          sync.Once
	closed        atomic.Bool
	closeErr      error
}

// OpenRuntime loads the ONNX Runtime shared library at libraryPath (see
// [DefaultLibraryPath]) and initialises the environment, once per process. Later
// calls with the same library share it; a different path while a Runtime is
// open is an error.
//
// Before onnxruntime_go touches it, the library is probed with its own
// dlopen handle (version, API level, compiled-in providers): a library
// older than [MinVersion] is refused with one line naming it, the version
// found and what to install; one other than the tested [WantVersion]
// series loads with [Runtime.Warning] set.
func OpenRuntime(libraryPath string) (*Runtime, error) {
	if libraryPath == "" {
		return nil, errors.New("onnxruntime: empty library path")
	}
	abs, err := filepath.Abs(libraryPath)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime library %s: %w", libraryPath, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("onnxruntime library %s: %w", libraryPath, err)
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.refs > 0 {
		if env.path != abs {
			return nil, fmt.Errorf("onnxruntime library %s: this process already uses %s", libraryPath, env.path)
		}
		env.refs++
		return &Runtime{path: abs, version: env.version, warning: env.warning, providers: env.providers}, nil
	}
	probe, err := probeLibrary(abs)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime library %s: %w", libraryPath, err)
	}
	warning, err := checkVersion(libraryPath, probe.version, probe.apiOK)
	if err != nil {
		return nil, err
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("onnxruntime library %s: %w", libraryPath, err)
	}
	env.refs, env.path, env.version, env.warning, env.providers = 1, abs, probe.version, warning, probe.providers
	return &Runtime{path: abs, version: probe.version, warning: warning, providers: probe.providers}, nil
}

// Version returns the ONNX Runtime version reported by the library.
func (r *Runtime) Version() string { return r.version }

// LibraryPath returns the absolute path of the loaded library.
func (r *Runtime) LibraryPath() string { return r.path }

// Close releases this handle; the last Close destroys the environment and
// unloads the library. Sessions must be closed first. Close is idempotent.
func (r *Runtime) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		env.mu.Lock()
		defer env.mu.Unlock()
		env.refs--
		if env.refs == 0 {
			env.path, env.version, env.warning, env.providers = "", "", "", nil
			if err := ort.DestroyEnvironment(); err != nil {
				r.closeErr = fmt.Errorf("onnxruntime: destroy environment: %w", err)
			}
		}
	})
	return r.closeErr
}

// SessionOptions configures a Session.
type SessionOptions struct {
	// IntraOpThreads is the number of threads used inside one operator; 0 lets
	// ONNX Runtime choose (one per physical core).
	IntraOpThreads int
	// Provider is "cpu" (or ""), "cuda" or "tensorrt". TensorRT sessions also
	// register CUDA for the nodes TensorRT does not take.
	Provider string
	// TensorRTFP16 lets TensorRT build FP16 engines.
	TensorRTFP16 bool
	// EngineCacheDir, if set, enables the TensorRT engine cache in that directory.
	// Engines are specific to the model, the GPU, the runtime and the
	// precision: NewEngine uses one directory per combination
	// ([TensorRTCacheKey]).
	EngineCacheDir string
	// TimingCacheDir, if set, enables TensorRT's timing cache (measured
	// layer timings, which make a later engine build faster) in that
	// directory. Timings are specific to the GPU and the runtime.
	TimingCacheDir string
	// AllowFallback runs on the CPU when the requested provider is unavailable
	// instead of failing; Session.Provider reports [ProviderCPUFallback] and
	// Session.FallbackReason why.
	AllowFallback bool
	// StandardOperators runs the model's graph as given. Otherwise a CPU
	// session of a localisation graph with int8 shared entries runs their
	// comparison as one NearestEntry operator where this machine supports
	// it ([NearestEntrySupported]; [Session.NearestEntry] says whether it
	// did): the same distances without the [cells × entries] products.
	StandardOperators bool
}

// Tensor describes one model input or output of a Session.
type Tensor struct {
	Name  string
	Shape []int64
	// Data is the tensor's memory, shared with ONNX Runtime: write inputs here
	// before Run, read outputs here after Run. Valid until Session.Close.
	Data []float32
}

// Session is a compiled model with pre-allocated float32 input and output
// tensors. Use it from one goroutine at a time.
type Session struct {
	sess     *ort.AdvancedSession
	values   []*ort.Tensor[float32]
	inputs   []Tensor
	outputs  []Tensor
	provider string
	fallback error
	nearest  bool
	// nearestErr is why a graph with the shared-entry comparison runs it
	// on the standard operators.
	nearestErr error
}

// NewSession compiles a serialized ONNX model. Every graph input and output must
// be float32 with fixed dims; tensors are allocated once for them.
func (r *Runtime) NewSession(model []byte, opts SessionOptions) (_ *Session, err error) {
	if r.closed.Load() {
		return nil, errors.New("onnxruntime session: runtime is closed")
	}
	info, err := onnx.ReadModelInfo(model)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime session: %w", err)
	}
	s := &Session{provider: ProviderCPU}
	p := strings.ToLower(opts.Provider)
	switch p {
	case "", ProviderCPU:
		p = ProviderCPU
	case ProviderCUDA, ProviderTensorRT:
	default:
		return nil, fmt.Errorf("onnxruntime session: unknown provider %q, want cpu, cuda or tensorrt", opts.Provider)
	}
	// A provider the library lacks is refused before ONNX Runtime is asked
	// (the error lists what it has); one it has can still fail to start
	// (CUDA or TensorRT libraries missing, no GPU) when it is appended or
	// when the session is created.
	var provErr error
	if p != ProviderCPU {
		provErr = r.CheckProvider(p)
	}
	if provErr != nil && !opts.AllowFallback {
		return nil, provErr
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	var names [2][]string
	var vals [2][]ort.Value
	for k, list := range [2][]onnx.ValueInfo{info.Inputs, info.Outputs} {
		for _, v := range list {
			if v.Type != onnx.Float {
				return nil, fmt.Errorf("onnxruntime session: %q is %s, want float32", v.Name, v.Type)
			}
			for _, d := range v.Dims {
				if d <= 0 {
					return nil, fmt.Errorf("onnxruntime session: %q has shape %v, want fixed dims", v.Name, v.Dims)
				}
			}
			t, err := ort.NewEmptyTensor[float32](ort.NewShape(v.Dims...))
			if err != nil {
				return nil, fmt.Errorf("onnxruntime session: tensor %q %v: %w", v.Name, v.Dims, err)
			}
			s.values = append(s.values, t)
			td := Tensor{Name: v.Name, Shape: v.Dims, Data: t.GetData()}
			if k == 0 {
				s.inputs = append(s.inputs, td)
			} else {
				s.outputs = append(s.outputs, td)
			}
			names[k] = append(names[k], v.Name)
			vals[k] = append(vals[k], t)
		}
	}
	if p == ProviderCPU && !opts.StandardOperators && NearestEntrySupported() {
		if s.sess, s.nearest, s.nearestErr = r.createNearestSession(model, names, vals, opts); s.nearest {
			return s, nil
		}
	}
	if provErr == nil {
		s.sess, err = r.createSession(model, names, vals, opts, p)
		if err == nil {
			s.provider = p
			return s, nil
		}
		if p == ProviderCPU || !opts.AllowFallback || !errors.As(err, new(*providerFailure)) {
			return nil, fmt.Errorf("onnxruntime session (%s, graph %q): %w", p, info.GraphName, err)
		}
		provErr = err
	}
	s.fallback, s.provider = provErr, ProviderCPUFallback
	if s.sess, err = r.createSession(model, names, vals, opts, ProviderCPU); err != nil {
		return nil, fmt.Errorf("onnxruntime session (cpu, graph %q, falling back from %s: %v): %w", info.GraphName, p, provErr, err)
	}
	return s, nil
}

// providerFailure marks an error of a GPU provider that did not start:
// a reason to fall back to the CPU when that is allowed.
type providerFailure struct{ err error }

func (f *providerFailure) Error() string { return f.err.Error() }
func (f *providerFailure) Unwrap() error { return f.err }

// createSession compiles model for provider p on the given tensors. A
// failure of a GPU provider is a *providerFailure.
func (r *Runtime) createSession(model []byte, names [2][]string, vals [2][]ort.Value, opts SessionOptions, p string) (*ort.AdvancedSession, error) {
	so, err := sessionOptions(opts, p)
	if err != nil {
		if p != ProviderCPU {
			return nil, &providerFailure{providerStartError(p, r.path, r.version, err)}
		}
		return nil, err
	}
	defer so.Destroy()
	sess, err := ort.NewAdvancedSessionWithONNXData(model, names[0], names[1], vals[0], vals[1], so)
	if err != nil && p != ProviderCPU {
		return nil, &providerFailure{providerStartError(p, r.path, r.version, err)}
	}
	return sess, err
}

// createNearestSession compiles model on the CPU with its int8 shared-entry
// comparison fused into the NearestEntry operator. ok is false when the
// model has no such comparison, and err says why when it has one but the
// fused session could not be created; the caller then compiles the
// standard graph.
func (r *Runtime) createNearestSession(model []byte, names [2][]string, vals [2][]ort.Value, opts SessionOptions) (_ *ort.AdvancedSession, ok bool, err error) {
	fused, ok, err := fuseNearestEntry(model)
	if err != nil || !ok {
		return nil, false, err
	}
	so, err := sessionOptions(opts, ProviderCPU)
	if err != nil {
		return nil, false, err
	}
	defer so.Destroy()
	if err := addNearestEntry(so, r.path); err != nil {
		return nil, false, err
	}
	sess, err := ort.NewAdvancedSessionWithONNXData(fused, names[0], names[1], vals[0], vals[1], so)
	if err != nil {
		return nil, false, fmt.Errorf("nearest-entry operator: session: %w", err)
	}
	return sess, true, nil
}

// sessionOptions creates ONNX Runtime session options for provider p.
func sessionOptions(opts SessionOptions, p string) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxruntime session options: %w", err)
	}
	if opts.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("onnxruntime session: intra-op threads %d: %w", opts.IntraOpThreads, err)
		}
	}
	// Denormal floats can make CPU kernels many times slower on x86;
	// flushing them to zero changes results far below the model's precision.
	if err := so.AddSessionConfigEntry("session.set_denormal_as_zero", "1"); err != nil {
		so.Destroy()
		return nil, fmt.Errorf("onnxruntime session: set_denormal_as_zero: %w", err)
	}
	// Idle intra-op threads sleep instead of spinning between frames: on a
	// small box the spinning threads steal the cores from the rest of the
	// station (the pipeline, the reject scheduler's timers).
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		so.Destroy()
		return nil, fmt.Errorf("onnxruntime session: allow_spinning: %w", err)
	}
	if p != ProviderCPU {
		if err := appendProvider(so, p, opts); err != nil {
			so.Destroy()
			return nil, err
		}
	}
	return so, nil
}

func appendProvider(so *ort.SessionOptions, p string, opts SessionOptions) error {
	cuda := func() error {
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer co.Destroy()
		if err := co.Update(map[string]string{"device_id": "0"}); err != nil {
			return err
		}
		return so.AppendExecutionProviderCUDA(co)
	}
	if p == ProviderTensorRT {
		to, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return fmt.Errorf("TensorRT: %w", err)
		}
		defer to.Destroy()
		if err := to.Update(tensorRTOptions(opts)); err != nil {
			return fmt.Errorf("TensorRT options: %w", err)
		}
		if err := so.AppendExecutionProviderTensorRT(to); err != nil {
			return fmt.Errorf("TensorRT: %w", err)
		}
	}
	if err := cuda(); err != nil {
		return fmt.Errorf("CUDA: %w", err)
	}
	return nil
}

// tensorRTOptions returns the TensorRT provider options for opts.
func tensorRTOptions(opts SessionOptions) map[string]string {
	o := map[string]string{"device_id": "0", "trt_fp16_enable": boolString(opts.TensorRTFP16)}
	if opts.EngineCacheDir != "" {
		o["trt_engine_cache_enable"] = "1"
		o["trt_engine_cache_path"] = opts.EngineCacheDir
	}
	if opts.TimingCacheDir != "" {
		o["trt_timing_cache_enable"] = "1"
		o["trt_timing_cache_path"] = opts.TimingCacheDir
	}
	return o
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Provider returns the execution provider the session runs on:
// "cpu", "cuda", "tensorrt", or [ProviderCPUFallback] when the requested
// one was unavailable and AllowFallback let it run on the CPU.
func (s *Session) Provider() string { return s.provider }

// NearestEntry says whether the session runs its shared-entry comparison
// as the fused NearestEntry operator (see SessionOptions.StandardOperators).
func (s *Session) NearestEntry() bool { return s.nearest }

// NearestEntryError says why a graph with the shared-entry comparison runs
// it on the standard operators although this machine supports the fused
// one (nil when it runs fused, or has nothing to fuse): the session works
// either way, only slower.
func (s *Session) NearestEntryError() error { return s.nearestErr }

// FallbackReason returns why the requested provider was not used, or nil.
func (s *Session) FallbackReason() error { return s.fallback }

// Inputs returns the model inputs in graph order.
func (s *Session) Inputs() []Tensor { return s.inputs }

// Outputs returns the model outputs in graph order.
func (s *Session) Outputs() []Tensor { return s.outputs }

// Input returns the data slice of the named input.
func (s *Session) Input(name string) ([]float32, error) { return lookup(s.inputs, "input", name) }

// Output returns the data slice of the named output.
func (s *Session) Output(name string) ([]float32, error) { return lookup(s.outputs, "output", name) }

func lookup(ts []Tensor, what, name string) ([]float32, error) {
	var have []string
	for _, t := range ts {
		if t.Name == name {
			return t.Data, nil
		}
		have = append(have, t.Name)
	}
	return nil, fmt.Errorf("onnxruntime session: no %s %q (have %s)", what, name, strings.Join(have, ", "))
}

// Run executes the model on the current input data, overwriting the outputs.
// It allocates nothing on success.
func (s *Session) Run() error {
	if s.sess == nil {
		return errors.New("onnxruntime session: run after close")
	}
	if err := s.sess.Run(); err != nil {
		return fmt.Errorf("onnxruntime session run: %w", err)
	}
	return nil
}

// Close destroys the session and its tensors. It is idempotent.
func (s *Session) Close() error {
	var errs []error
	if s.sess != nil {
		errs = append(errs, s.sess.Destroy())
		s.sess = nil
	}
	for _, v := range s.values {
		errs = append(errs, v.Destroy())
	}
	s.values, s.inputs, s.outputs = nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("onnxruntime session close: %w", err)
	}
	return nil
}

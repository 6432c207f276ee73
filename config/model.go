package config

// Model selects the model bundle and how the inference engine runs it.
type Model struct {
	// Bundle is the model bundle directory written by `inspectd train`
	// (required; relative paths are relative to this file's directory).
	Bundle string `toml:"bundle"`
	// Provider is the ONNX Runtime execution provider: "cpu", "cuda" or
	// "tensorrt".
	Provider string `toml:"provider"`
	// AllowFallback lets the engine fall back to the CPU when the provider
	// is unavailable; otherwise that is a start-up error.
	AllowFallback bool `toml:"allow_fallback"`
	// Threads is the number of intra-op threads of each inference session.
	Threads int `toml:"threads"`
	// OnnxRuntimeLibrary is the path of libonnxruntime.so.1; empty means
	// the INSPECTD_ONNXRUNTIME_LIB variable or the standard locations.
	OnnxRuntimeLibrary string `toml:"onnxruntime_library"`
	// TensorRTFP16 builds TensorRT engines in half precision.
	TensorRTFP16 bool `toml:"tensorrt_fp16"`
	// EngineCacheDir caches TensorRT engines, keyed by model hash and
	// TensorRT version; empty means <state_dir>/engines.
	EngineCacheDir string `toml:"engine_cache_dir"`
	// Runtime runs the bundle's graphs: "onnxruntime" (the ONNX graphs) or
	// "tflite" (their TFLite twins, with TensorFlow Lite's C library).
	Runtime string `toml:"runtime"`
	// TFLite configures the "tflite" runtime.
	TFLite TFLite `toml:"tflite"`
}

// Runtimes accepted in model.runtime.
const (
	RuntimeONNX   = "onnxruntime"
	RuntimeTFLite = "tflite"
)

// TFLite is [model.tflite]: how the "tflite" runtime loads TensorFlow
// Lite's C library and which delegate runs the graphs.
type TFLite struct {
	// Library is the path of libtensorflowlite_c.so; empty means
	// $INSPECTD_TFLITE_LIB, /usr/lib/inspectd/ or the standard library paths.
	Library string `toml:"library"`
	// XNNPackThreads is the interpreter's (and the XNNPACK delegate's)
	// thread count; 0 means model.threads.
	XNNPackThreads int `toml:"xnnpack_threads"`
	// Delegate is "none", "xnnpack", "gpu" or "external".
	Delegate string `toml:"delegate"`
	// ExternalDelegate is the path of an external delegate library (an
	// NPU's), required by delegate "external".
	ExternalDelegate string `toml:"external_delegate"`
	// ExternalDelegateOptions are passed to the external delegate.
	ExternalDelegateOptions map[string]string `toml:"external_delegate_options"`
}

// Delegates accepted in model.tflite.delegate.
const (
	DelegateNone     = "none"
	DelegateXNNPack  = "xnnpack"
	DelegateGPU      = "gpu"
	DelegateExternal = "external"
)

func (m *Model) defaults() {
	*m = Model{Provider: "cpu", Threads: 2, Runtime: RuntimeONNX,
		TFLite: TFLite{Delegate: DelegateXNNPack, ExternalDelegateOptions: map[string]string{}}}
}

func (m *Model) resolvePaths(r pathResolver) {
	m.Bundle = r.path(m.Bundle)
	m.OnnxRuntimeLibrary = r.path(m.OnnxRuntimeLibrary)
	m.EngineCacheDir = r.stateChild(m.EngineCacheDir, "engines")
	m.TFLite.Library = r.path(m.TFLite.Library)
	m.TFLite.ExternalDelegate = r.path(m.TFLite.ExternalDelegate)
}

func (m *Model) validate(v *Checker) {
	if m.Bundle != "" {
		v.ExistingDir("bundle", m.Bundle)
	}
	v.OneOf("provider", m.Provider, "cpu", "cuda", "tensorrt")
	v.IntRange("threads", m.Threads, 1, 64, "")
	if m.OnnxRuntimeLibrary != "" {
		v.ExistingFile("onnxruntime_library", m.OnnxRuntimeLibrary)
	}
	if m.TensorRTFP16 && m.Provider != "tensorrt" {
		v.Errorf("tensorrt_fp16", "is true but provider is %q; fp16 applies to provider \"tensorrt\" only", m.Provider)
	}
	v.OneOf("runtime", m.Runtime, RuntimeONNX, RuntimeTFLite)
	if m.Runtime == RuntimeTFLite && m.Provider != "cpu" {
		v.Errorf("provider", "is %q but runtime is %q, which does not use ONNX Runtime's providers; remove provider and choose model.tflite.delegate (\"gpu\", or \"external\" for an NPU)", m.Provider, m.Runtime)
	}
	m.TFLite.validate(v.In("tflite"))
}

// validate checks [model.tflite] whatever the runtime, so that a switch to
// "tflite" finds it valid.
func (t *TFLite) validate(v *Checker) {
	if t.Library != "" {
		v.ExistingFile("library", t.Library)
	}
	v.IntRange("xnnpack_threads", t.XNNPackThreads, 0, 64, "")
	v.OneOf("delegate", t.Delegate, DelegateNone, DelegateXNNPack, DelegateGPU, DelegateExternal)
	if t.Delegate == DelegateExternal {
		v.Required("external_delegate", t.ExternalDelegate, "set the path of the NPU's TFLite external delegate library (it exports tflite_plugin_create_delegate)")
		if t.ExternalDelegate != "" {
			v.ExistingFile("external_delegate", t.ExternalDelegate)
		}
		return
	}
	if t.ExternalDelegate != "" {
		v.Errorf("external_delegate", "is set but delegate is %q; it applies to delegate = \"external\" only", t.Delegate)
	}
	if len(t.ExternalDelegateOptions) > 0 {
		v.Errorf("external_delegate_options", "are set but delegate is %q; they apply to delegate = \"external\" only", t.Delegate)
	}
}

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
}

func (m *Model) defaults() {
	*m = Model{Provider: "cpu", Threads: 2}
}

func (m *Model) resolvePaths(r pathResolver) {
	m.Bundle = r.path(m.Bundle)
	m.OnnxRuntimeLibrary = r.path(m.OnnxRuntimeLibrary)
	m.EngineCacheDir = r.stateChild(m.EngineCacheDir, "engines")
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
}

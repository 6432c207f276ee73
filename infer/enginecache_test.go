package infer

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/netdef"
)

// TestGPUIdentity reads fixture roots laid out like the real machines
// (testdata/gpuroots: NVIDIA's /proc files on a desktop, the device tree
// and L4T release file on a Jetson).
func TestGPUIdentity(t *testing.T) {
	tests := []struct{ root, want string }{
		{"desktop", "nvidia-h100-80gb-hbm3-gpu-8f6a3d1c"},
		// Two GPUs: the first by bus location (device_id 0 under
		// CUDA_DEVICE_ORDER=PCI_BUS_ID).
		{"desktop2", "nvidia-geforce-rtx-3060-gpu-33334444"},
		{"orin", "nvidia-jetson-agx-orin-developer-kit-r36.4.0"},
		{"orin-norelease", "nvidia-jetson-orin-nano-developer-kit"},
		{"none", "gpu0"},
		{"does-not-exist", "gpu0"},
	}
	for _, tc := range tests {
		t.Run(tc.root, func(t *testing.T) {
			if got := GPUIdentity(filepath.Join("testdata", "gpuroots", tc.root)); got != tc.want {
				t.Errorf("GPUIdentity = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSlug(t *testing.T) {
	tests := []struct{ in, want string }{
		{"NVIDIA Jetson AGX Orin (64GB)", "nvidia-jetson-agx-orin-64gb"},
		{"  --A..b__C  ", "a..b-c"},
		{strings.Repeat("ab ", 40), strings.TrimRight(strings.Repeat("ab-", 22)[:64], "-")},
		{"", ""},
	}
	for _, tc := range tests {
		if got := slug(tc.in); got != tc.want {
			t.Errorf("slug(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTensorRTCacheKey: the key changes with each of bundle hash, GPU,
// runtime version and precision, so a restart with all four unchanged
// finds its engine and any change builds a new one.
func TestTensorRTCacheKey(t *testing.T) {
	const hash = "0123456789abcdef0123456789abcdef"
	base := TensorRTCacheKey(hash, "nvidia-jetson-agx-orin-r36.4.0", "1.30.0", false)
	if base != "0123456789abcdef-nvidia-jetson-agx-orin-r36.4.0-ort1.30.0-fp32" {
		t.Fatalf("key = %q", base)
	}
	for name, other := range map[string]string{
		"hash":    TensorRTCacheKey("fedcba9876543210"+hash[16:], "nvidia-jetson-agx-orin-r36.4.0", "1.30.0", false),
		"gpu":     TensorRTCacheKey(hash, "nvidia-jetson-orin-nano-r36.4.0", "1.30.0", false),
		"release": TensorRTCacheKey(hash, "nvidia-jetson-agx-orin-r36.3.0", "1.30.0", false),
		"ort":     TensorRTCacheKey(hash, "nvidia-jetson-agx-orin-r36.4.0", "1.24.2", false),
		"fp16":    TensorRTCacheKey(hash, "nvidia-jetson-agx-orin-r36.4.0", "1.30.0", true),
	} {
		if other == base {
			t.Errorf("changing the %s keeps the key %q", name, base)
		}
	}
	if got := TimingCacheKey("gpu0", "1.30.0"); got != "timing-gpu0-ort1.30.0" {
		t.Errorf("timing key = %q", got)
	}

	root := t.TempDir()
	eng, timing, err := tensorRTCacheDirs(root, filepath.Join("testdata", "gpuroots", "orin"), hash, "1.30.0", true)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "0123456789abcdef-nvidia-jetson-agx-orin-developer-kit-r36.4.0-ort1.30.0-fp16"); eng != want {
		t.Errorf("engine dir %s, want %s", eng, want)
	}
	if want := filepath.Join(root, "timing-nvidia-jetson-agx-orin-developer-kit-r36.4.0-ort1.30.0"); timing != want {
		t.Errorf("timing dir %s, want %s", timing, want)
	}
	for _, d := range []string{eng, timing} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() || st.Mode().Perm() != 0o750 {
			t.Errorf("%s: %v %v, want a 0750 directory", d, st, err)
		}
	}
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o644)
	if _, _, err := tensorRTCacheDirs(blocker, "/", hash, "1.30.0", false); err == nil || !strings.Contains(err.Error(), "TensorRT cache") {
		t.Errorf("cache under a file: %v", err)
	}
}

// TestTensorRTOptions is the option map handed to ONNX Runtime's TensorRT
// provider (names from onnxruntime's tensorrt_provider_options).
func TestTensorRTOptions(t *testing.T) {
	tests := []struct {
		name string
		opts SessionOptions
		want map[string]string
	}{
		{"defaults", SessionOptions{}, map[string]string{"device_id": "0", "trt_fp16_enable": "0"}},
		{"fp16 and caches", SessionOptions{TensorRTFP16: true, EngineCacheDir: "/var/lib/inspectd/engines/k", TimingCacheDir: "/var/lib/inspectd/engines/timing-gpu0-ort1.30.0"},
			map[string]string{"device_id": "0", "trt_fp16_enable": "1",
				"trt_engine_cache_enable": "1", "trt_engine_cache_path": "/var/lib/inspectd/engines/k",
				"trt_timing_cache_enable": "1", "trt_timing_cache_path": "/var/lib/inspectd/engines/timing-gpu0-ort1.30.0"}},
		{"engine cache only", SessionOptions{EngineCacheDir: "/e"},
			map[string]string{"device_id": "0", "trt_fp16_enable": "0", "trt_engine_cache_enable": "1", "trt_engine_cache_path": "/e"}},
	}
	for _, tc := range tests {
		if got := tensorRTOptions(tc.opts); !maps.Equal(got, tc.want) {
			t.Errorf("%s: options %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestEngineTensorRTCache: the engine derives the cache directories before
// asking for TensorRT, so on this CPU-only library the one-line error names
// the provider and the directories exist under the configured root.
func TestEngineTensorRTCache(t *testing.T) {
	rt := openRuntime(t)
	b := testBundle(t, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 8, NoAlign: true, Seed: 2})
	cache := t.TempDir()
	_, err := NewEngine(rt, b, EngineOptions{Provider: ProviderTensorRT, EngineCacheDir: cache, TensorRTFP16: true})
	if err == nil || !strings.Contains(err.Error(), `execution provider "tensorrt" is not available in the onnxruntime library`) {
		t.Fatalf("err = %v, want the tensorrt provider named", err)
	}
	gpu := GPUIdentity("/")
	for _, d := range []string{TensorRTCacheKey(b.Hash, gpu, rt.Version(), true), TimingCacheKey(gpu, rt.Version())} {
		if _, statErr := os.Stat(filepath.Join(cache, d)); statErr != nil {
			t.Errorf("cache dir not created: %v", statErr)
		}
	}
}

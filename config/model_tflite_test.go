package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestTFLiteModelKeys parses a valid [model.tflite] and checks what the
// runtime receives: the delegate, threads, the external delegate's options
// and its path resolved against the config file's directory.
func TestTFLiteModelKeys(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bundle"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "libvx_delegate.so"), []byte("\x7fELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := `config_version = 1
state_dir = "state"
[station]
id = "line1-cam1"
[model]
bundle = "bundle"
runtime = "tflite"
allow_fallback = true
[model.tflite]
xnnpack_threads = 3
delegate = "external"
external_delegate = "libvx_delegate.so"
external_delegate_options = { backends = "VsiNpu", cache_file_path = "/var/lib/inspectd/npu.cache" }
`
	cfg, err := Parse(filepath.Join(dir, "inspectd.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := TFLite{
		XNNPackThreads:          3,
		Delegate:                DelegateExternal,
		ExternalDelegate:        filepath.Join(dir, "libvx_delegate.so"),
		ExternalDelegateOptions: map[string]string{"backends": "VsiNpu", "cache_file_path": "/var/lib/inspectd/npu.cache"},
	}
	if cfg.Model.Runtime != RuntimeTFLite || !reflect.DeepEqual(cfg.Model.TFLite, want) {
		t.Errorf("model = %q %+v, want tflite %+v", cfg.Model.Runtime, cfg.Model.TFLite, want)
	}
}

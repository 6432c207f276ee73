package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/tflite"
)

// tinyTwin builds a stand-in TFLite model with the given float32 inputs
// and outputs (only its interface matters to Load).
func tinyTwin(t *testing.T, inputs, outputs map[string][]int) []byte {
	t.Helper()
	m := tflite.NewModel("twin")
	var in []tflite.Tensor
	for _, name := range sortedNames(inputs) {
		in = append(in, m.Input(name, tflite.Float32, inputs[name]...))
	}
	for _, name := range sortedNames(outputs) {
		m.Output(m.Rename(m.Op(tflite.OpRelu, tflite.Options{}, in[:1], outputs[name]...), name))
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func sortedNames(m map[string][]int) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

func localizeTwin(t *testing.T, h, w int) []byte {
	return tinyTwin(t, map[string][]int{InputImage: {1, h, w, 3}}, map[string][]int{OutputHeatmap: {1, h, w, 1}, OutputScore: {1}})
}

func alignTwin(t *testing.T, c, h, w int) []byte {
	return tinyTwin(t, map[string][]int{InputImage: {1, h, w, c}, InputTemplate: {1, h, w, c}}, map[string][]int{OutputTransform: {1, 3}})
}

func TestLoadTFLiteTwins(t *testing.T) {
	base := func(t *testing.T) map[string][]byte {
		return map[string][]byte{
			LocalizeGraphName: tinyLocalize(t, 32, 48),
			AlignGraphName:    tinyAlign(t, 1, 16, 32),
			TemplateName:      pngBytes(t, 32, 16),
		}
	}
	tests := []struct {
		name  string
		twins func(t *testing.T) map[string][]byte
		edit  func(m *Manifest)
		want  string // "" = loads
	}{
		{"none", func(t *testing.T) map[string][]byte { return nil }, nil, ""},
		{"both", func(t *testing.T) map[string][]byte {
			return map[string][]byte{LocalizeTFLiteName: localizeTwin(t, 32, 48), AlignTFLiteName: alignTwin(t, 1, 16, 32)}
		}, nil, ""},
		{"localize NCHW", func(t *testing.T) map[string][]byte {
			return map[string][]byte{LocalizeTFLiteName: tinyTwin(t, map[string][]int{InputImage: {1, 3, 32, 48}}, map[string][]int{OutputHeatmap: {1, 32, 48, 1}, OutputScore: {1}})}
		}, nil, `localize.tflite: TFLite input "image" has shape [1 3 32 48], manifest implies [1 32 48 3] (NHWC)`},
		{"localize wrong size", func(t *testing.T) map[string][]byte {
			return map[string][]byte{LocalizeTFLiteName: localizeTwin(t, 48, 32)}
		}, nil, `TFLite input "image" has shape [1 48 32 3], manifest implies [1 32 48 3]`},
		{"localize output renamed", func(t *testing.T) map[string][]byte {
			return map[string][]byte{LocalizeTFLiteName: tinyTwin(t, map[string][]int{InputImage: {1, 32, 48, 3}}, map[string][]int{"heat": {1, 32, 48, 1}, OutputScore: {1}})}
		}, nil, `localize.tflite: unexpected TFLite output "heat"; want heatmap, score`},
		{"align channels", func(t *testing.T) map[string][]byte {
			return map[string][]byte{AlignTFLiteName: alignTwin(t, 3, 16, 32)}
		}, nil, `align.tflite: TFLite input "image" has shape [1 16 32 3], manifest implies [1 16 32 1]`},
		{"align twin without IMM", func(t *testing.T) map[string][]byte {
			return map[string][]byte{AlignTFLiteName: alignTwin(t, 1, 16, 32)}
		}, func(m *Manifest) { m.Align = Align{Method: AlignNone, TemplateSeed: -1} }, `align.tflite: listed in [files] but align.method is "none"`},
		{"not tflite", func(t *testing.T) map[string][]byte {
			return map[string][]byte{LocalizeTFLiteName: []byte("not a model at all")}
		}, nil, `localize.tflite: not a readable TensorFlow Lite model: tflite model: not a TensorFlow Lite flatbuffer`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := base(t)
			m := validManifest()
			if tc.edit != nil {
				tc.edit(m)
				if m.Align.Method == AlignNone {
					delete(files, AlignGraphName)
					delete(files, TemplateName)
				}
			}
			for n, d := range tc.twins(t) {
				files[n] = d
			}
			if err := Write(dir, m, files); err != nil {
				t.Fatalf("Write: %v", err)
			}
			b, err := Load(dir)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if got, want := len(b.LocalizeTFLite) > 0, files[LocalizeTFLiteName] != nil; got != want {
					t.Errorf("LocalizeTFLite loaded %v, want %v", got, want)
				}
				if got, want := len(b.AlignTFLite) > 0, files[AlignTFLiteName] != nil; got != want {
					t.Errorf("AlignTFLite loaded %v, want %v", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load error %v, want one containing %q (ErrInvalid)", err, tc.want)
			}
		})
	}
}

// A twin whose bytes change after the manifest was written fails its checksum.
func TestLoadTFLiteTwinChecksum(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		LocalizeGraphName:  tinyLocalize(t, 32, 48),
		AlignGraphName:     tinyAlign(t, 1, 16, 32),
		TemplateName:       pngBytes(t, 32, 16),
		LocalizeTFLiteName: localizeTwin(t, 32, 48),
	}
	if err := Write(dir, validManifest(), files); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, LocalizeTFLiteName), localizeTwin(t, 32, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "localize.tflite: SHA-256 is") {
		t.Fatalf("Load error %v, want a SHA-256 mismatch on localize.tflite", err)
	}
}

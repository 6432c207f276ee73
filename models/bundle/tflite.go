package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/models/tflite"
	"github.com/inspectd/inspectd/tomlcheck"
)

// File names of the optional TensorFlow Lite twins of the graphs: the same
// networks written from the same weights (models/netdef), with the ONNX
// graphs' input and output names, NHWC images ([1,H,W,C]) and an NHWC
// heatmap ([1,H,W,1]). A bundle carries them when they are listed in
// [files]; Load verifies their checksums like every file and their
// interface against the manifest.
const (
	LocalizeTFLiteName = "localize.tflite"
	AlignTFLiteName    = "align.tflite"
)

// checkTwins verifies the TFLite twins present in files and stores them in b.
func checkTwins(dir string, files map[string][]byte, m *Manifest, b *Bundle) error {
	if data, ok := files[LocalizeTFLiteName]; ok {
		h, w := m.Input.Height, m.Input.Width
		if err := checkTFLite(filepath.Join(dir, LocalizeTFLiteName), data,
			map[string][]int{InputImage: {1, h, w, 3}},
			map[string][]int{OutputHeatmap: {1, h, w, 1}, OutputScore: {1}}); err != nil {
			return err
		}
		b.LocalizeTFLite = data
	}
	if data, ok := files[AlignTFLiteName]; ok {
		p := filepath.Join(dir, AlignTFLiteName)
		if m.Align.Method != AlignIMM {
			return invalid(p, "listed in [files] but align.method is %q: an align twin needs the IMM graph (%q)", m.Align.Method, AlignIMM)
		}
		c, h, w := m.Align.Channels, m.Align.Height, m.Align.Width
		if err := checkTFLite(p, data,
			map[string][]int{InputImage: {1, h, w, c}, InputTemplate: {1, h, w, c}},
			map[string][]int{OutputTransform: {1, 3}}); err != nil {
			return err
		}
		b.AlignTFLite = data
	}
	return nil
}

// checkTFLite verifies a TFLite model's named float32 inputs and outputs.
func checkTFLite(path string, data []byte, inputs, outputs map[string][]int) error {
	info, err := tflite.ReadModelInfo(data)
	if err != nil {
		return invalid(path, "not a readable TensorFlow Lite model: %v", err)
	}
	check := func(kind string, ts []tflite.TensorInfo, want map[string][]int) error {
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if len(ts) != len(want) {
			names := make([]string, len(ts))
			for i, t := range ts {
				names[i] = t.Name
			}
			return invalid(path, "TFLite twin has %d %ss (%s), want %d (%s)", len(ts), kind, strings.Join(names, ", "), len(want), strings.Join(keys, ", "))
		}
		for _, t := range ts {
			shape, ok := want[t.Name]
			if !ok {
				return invalid(path, "unexpected TFLite %s %q; want %s", kind, t.Name, strings.Join(keys, ", "))
			}
			if t.Type != tflite.Float32 {
				return invalid(path, "TFLite %s %q has type %v, want FLOAT32", kind, t.Name, t.Type)
			}
			if !slices.Equal(t.Shape, shape) {
				return invalid(path, "TFLite %s %q has shape %v, manifest implies %v (NHWC)", kind, t.Name, t.Shape, shape)
			}
		}
		return nil
	}
	if err := check("input", info.Inputs, inputs); err != nil {
		return err
	}
	return check("output", info.Outputs, outputs)
}

// ReadListedFile reads the file name of the bundle in dir and checks it
// against its manifest checksum sum, within the size limit Load applies to
// it: for commands that copy a loaded bundle's other files.
func ReadListedFile(dir, name, sum string) ([]byte, error) {
	if !plainName(name) {
		return nil, invalid(dir, "%q is not a plain file name inside the bundle", name)
	}
	p := filepath.Join(dir, name)
	limit := int64(MaxOtherFileBytes)
	if strings.HasSuffix(name, ".onnx") || strings.HasSuffix(name, ".tflite") {
		limit = MaxGraphBytes
	}
	data, err := tomlcheck.ReadFile(p, limit)
	if err != nil {
		return nil, listedFileError(p, err)
	}
	got := sha256.Sum256(data)
	if h := hex.EncodeToString(got[:]); h != sum {
		return nil, invalid(p, "SHA-256 is %s, manifest says %s (file changed since the bundle was loaded)", h, sum)
	}
	return data, nil
}

package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	_ "image/png" // template images
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/models/onnx"
)

// Bundle is a loaded, fully verified model bundle.
type Bundle struct {
	// Dir is the bundle directory.
	Dir string
	// Manifest as read from manifest.toml.
	Manifest Manifest
	// Hash is the SHA-256 of manifest.toml, which covers every file
	// through their checksums: the model's identity in results and caches.
	Hash string
	// AlignGraph and LocalizeGraph are the verified ONNX models (AlignGraph
	// is nil unless the method is AlignIMM).
	AlignGraph    []byte
	LocalizeGraph []byte
	// Template is the alignment template (nil for AlignNone).
	Template image.Image
}

// ErrInvalid is matched (errors.Is) by every verification failure.
var ErrInvalid = errors.New("invalid model bundle")

// invalidError names the file and what is wrong with it.
type invalidError struct {
	path string
	msg  string
}

func (e *invalidError) Error() string        { return fmt.Sprintf("model bundle: %s: %s", e.path, e.msg) }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(path, format string, args ...any) error {
	return &invalidError{path: path, msg: fmt.Sprintf(format, args...)}
}

// Load reads and verifies the bundle in dir.
func Load(dir string) (*Bundle, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, invalid(dir, "%v", unwrapPathError(err))
	}
	if !st.IsDir() {
		return nil, invalid(dir, "not a directory; a bundle is a directory holding %s", ManifestName)
	}
	mpath := filepath.Join(dir, ManifestName)
	raw, err := os.ReadFile(mpath)
	if err != nil {
		return nil, invalid(mpath, "%v (is this a model bundle written by `inspectd train`?)", unwrapPathError(err))
	}
	m, err := parseManifest(mpath, raw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	b := &Bundle{Dir: dir, Manifest: *m, Hash: hex.EncodeToString(sum[:])}

	files, err := readListedFiles(dir, m)
	if err != nil {
		return nil, err
	}
	b.LocalizeGraph = files[m.Localize.Graph]
	if err := checkLocalizeGraph(filepath.Join(dir, m.Localize.Graph), b.LocalizeGraph, m); err != nil {
		return nil, err
	}
	if m.Align.Method == AlignIMM {
		b.AlignGraph = files[m.Align.Graph]
		if err := checkAlignGraph(filepath.Join(dir, m.Align.Graph), b.AlignGraph, m); err != nil {
			return nil, err
		}
	}
	if m.Align.Template != "" {
		tpath := filepath.Join(dir, m.Align.Template)
		img, _, err := image.Decode(bytes.NewReader(files[m.Align.Template]))
		if err != nil {
			return nil, invalid(tpath, "cannot decode the template image: %v", err)
		}
		if sz := img.Bounds().Size(); sz.X != m.Align.Width || sz.Y != m.Align.Height {
			return nil, invalid(tpath, "template is %dx%d, manifest align size is %dx%d", sz.X, sz.Y, m.Align.Width, m.Align.Height)
		}
		b.Template = img
	}
	return b, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseManifest decodes manifest.toml strictly and checks its values.
func parseManifest(path string, raw []byte) (*Manifest, error) {
	var m Manifest
	md, err := toml.NewDecoder(bytes.NewReader(raw)).Decode(&m)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, invalid(fmt.Sprintf("%s:%d:%d", path, pe.Position.Line, pe.Position.Col), "%s", pe.Message)
		}
		return nil, invalid(path, "%s", strings.TrimPrefix(err.Error(), "toml: "))
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, invalid(path, "unknown keys %s (written by a newer inspectd?)", strings.Join(keys, ", "))
	}
	if m.FormatVersion != FormatVersion {
		return nil, invalid(path, "format_version %d is not supported; this inspectd reads format_version %d", m.FormatVersion, FormatVersion)
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if strings.TrimSpace(m.Product) == "" {
		bad("product: must not be empty")
	}
	if m.Input.Height < 16 || m.Input.Height%16 != 0 || m.Input.Width < 16 || m.Input.Width%16 != 0 {
		bad("input: height %d and width %d must be positive multiples of 16", m.Input.Height, m.Input.Width)
	}
	switch m.Input.ColourOrder {
	case "rgb", "grey":
	default:
		bad("input.colour_order: %q, want \"rgb\" or \"grey\"", m.Input.ColourOrder)
	}
	if len(m.Input.Mean) != 3 || len(m.Input.Std) != 3 {
		bad("input.mean and input.std: need 3 values each, got %d and %d", len(m.Input.Mean), len(m.Input.Std))
	}
	for _, s := range m.Input.Std {
		if s <= 0 {
			bad("input.std: %v must be positive", s)
		}
	}
	switch m.Align.Method {
	case AlignNone:
		if m.Align.Graph != "" {
			bad("align.graph: set, but align.method is %q", AlignNone)
		}
	case AlignECC:
		bad("align.method: %q is not implemented by this inspectd yet; use a bundle trained with align %q or %q", AlignECC, AlignIMM, AlignNone)
	case AlignIMM:
		if m.Align.Graph == "" {
			bad("align.graph: required for align.method %q", AlignIMM)
		}
		if m.Align.Template == "" {
			bad("align.template: required for align.method %q", m.Align.Method)
		}
		if m.Align.Height < 16 || m.Align.Height%16 != 0 || m.Align.Width < 16 || m.Align.Width%16 != 0 {
			bad("align: height %d and width %d must be positive multiples of 16", m.Align.Height, m.Align.Width)
		}
		if m.Align.Channels != 1 && m.Align.Channels != 3 {
			bad("align.channels: %d, want 1 (grey) or 3 (RGB)", m.Align.Channels)
		}
	default:
		bad("align.method: %q, want %q, %q or %q", m.Align.Method, AlignNone, AlignIMM, AlignECC)
	}
	if m.Localize.Graph == "" {
		bad("localize.graph: required")
	}
	if m.Localize.D < 1 || m.Localize.D > 4096 {
		bad("localize.d: %d, want 1 to 4096", m.Localize.D)
	}
	if m.Localize.Centre != "local" && m.Localize.Centre != "global" {
		bad("localize.centre: %q, want \"local\" or \"global\"", m.Localize.Centre)
	}
	if m.Backbone.Fingerprint == "" {
		bad("backbone.fingerprint: required (identifies the frozen feature extractor)")
	}
	for _, t := range []struct {
		key string
		v   float64
	}{{"calibration.image_threshold", m.Calibration.ImageThreshold}, {"calibration.pixel_threshold", m.Calibration.PixelThreshold}} {
		if !(t.v > 0 && t.v <= 1) || math.IsNaN(t.v) {
			bad("%s: %v, want a value in (0, 1]", t.key, t.v)
		}
	}
	for name, sum := range m.Files {
		if !plainName(name) {
			bad("files: %q is not a plain file name inside the bundle", name)
		}
		if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			bad("files.%q: %q is not a lower-case hex SHA-256", name, sum)
		}
	}
	for _, ref := range []struct{ key, name string }{
		{"localize.graph", m.Localize.Graph}, {"align.graph", m.Align.Graph}, {"align.template", m.Align.Template},
	} {
		if ref.name == "" {
			continue
		}
		if _, ok := m.Files[ref.name]; !ok {
			bad("%s: %q has no checksum in [files]", ref.key, ref.name)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, invalid(path, "%s", strings.Join(problems, "; "))
	}
	return &m, nil
}

func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && name != ManifestName &&
		!strings.ContainsAny(name, `/\`) && filepath.Base(name) == name
}

// readListedFiles reads every file in m.Files and checks its SHA-256.
func readListedFiles(dir string, m *Manifest) (map[string][]byte, error) {
	names := make([]string, 0, len(m.Files))
	for n := range m.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		p := filepath.Join(dir, n)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, invalid(p, "listed in the manifest but cannot be read: %v", unwrapPathError(err))
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != m.Files[n] {
			return nil, invalid(p, "SHA-256 is %s, manifest says %s (file truncated, corrupted or modified; re-copy the bundle)", got, m.Files[n])
		}
		out[n] = data
	}
	return out, nil
}

// checkGraph verifies an ONNX graph's named inputs and outputs.
func checkGraph(path string, data []byte, inputs, outputs map[string][]int64) error {
	info, err := onnx.ReadModelInfo(data)
	if err != nil {
		return invalid(path, "not a readable ONNX model: %v", err)
	}
	check := func(kind string, vs []onnx.ValueInfo, want map[string][]int64) error {
		if len(vs) != len(want) {
			return invalid(path, "graph has %d %ss %s, want %d (%s)", len(vs), kind, valueNames(vs), len(want), strings.Join(sortedKeys(want), ", "))
		}
		for _, v := range vs {
			dims, ok := want[v.Name]
			if !ok {
				return invalid(path, "unexpected graph %s %q; want %s", kind, v.Name, strings.Join(sortedKeys(want), ", "))
			}
			if v.Type != onnx.Float {
				return invalid(path, "graph %s %q has element type %v, want float32", kind, v.Name, v.Type)
			}
			if !equalDims(v.Dims, dims) {
				return invalid(path, "graph %s %q has shape %v, manifest implies %v", kind, v.Name, v.Dims, dims)
			}
		}
		return nil
	}
	if err := check("input", info.Inputs, inputs); err != nil {
		return err
	}
	return check("output", info.Outputs, outputs)
}

func checkLocalizeGraph(path string, data []byte, m *Manifest) error {
	h, w := int64(m.Input.Height), int64(m.Input.Width)
	return checkGraph(path, data,
		map[string][]int64{InputImage: {1, 3, h, w}},
		map[string][]int64{OutputHeatmap: {1, 1, h, w}, OutputScore: {1}})
}

func checkAlignGraph(path string, data []byte, m *Manifest) error {
	c, h, w := int64(m.Align.Channels), int64(m.Align.Height), int64(m.Align.Width)
	return checkGraph(path, data,
		map[string][]int64{InputImage: {1, c, h, w}, InputTemplate: {1, c, h, w}},
		map[string][]int64{OutputTransform: {1, 3}})
}

func equalDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func valueNames(vs []onnx.ValueInfo) string {
	n := make([]string, len(vs))
	for i, v := range vs {
		n[i] = v.Name
	}
	return "(" + strings.Join(n, ", ") + ")"
}

func sortedKeys(m map[string][]int64) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	_ "image/png" // template images
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/inspectd/inspectd/models/onnx"
	"github.com/inspectd/inspectd/tomlcheck"
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
	// LocalizeTFLite and AlignTFLite are the verified TensorFlow Lite twins
	// of the graphs (LocalizeTFLiteName, AlignTFLiteName), nil when the
	// bundle does not carry them.
	LocalizeTFLite []byte
	AlignTFLite    []byte
}

// ErrInvalid is matched (errors.Is) by every verification failure.
var ErrInvalid = errors.New("invalid model bundle")

// invalidError names the file and what is wrong with it. It wraps the
// cause, if any: a bundle directory, manifest or listed file that does not
// exist also matches fs.ErrNotExist (errors.Is), so callers can tell a
// missing bundle from a corrupt one.
type invalidError struct {
	path string
	msg  string
	err  error
}

func (e *invalidError) Error() string {
	if e.path == "" {
		return "model bundle: " + e.msg
	}
	return fmt.Sprintf("model bundle: %s: %s", e.path, e.msg)
}
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }
func (e *invalidError) Unwrap() error        { return e.err }

func invalid(path, format string, args ...any) error {
	return &invalidError{path: path, msg: fmt.Sprintf(format, args...)}
}

// invalidCause is invalid wrapping the error that caused it.
func invalidCause(path string, cause error, format string, args ...any) error {
	return &invalidError{path: path, msg: fmt.Sprintf(format, args...), err: cause}
}

// Size limits of the files Load reads. A file over its limit is refused
// from its size before it is read.
const (
	// MaxManifestBytes bounds manifest.toml.
	MaxManifestBytes = tomlcheck.MaxFileBytes
	// MaxGraphBytes bounds an ONNX graph: 2 GiB is the most a protobuf
	// message (an ONNX model without external data) can hold.
	MaxGraphBytes = 2<<30 - 1
	// MaxOtherFileBytes bounds every other listed file (the template image).
	MaxOtherFileBytes = 64 << 20
)

// Load reads and verifies the bundle in dir.
//
// Every file it reads must be a regular file (a symbolic link to one is
// followed): a link to a device (/dev/zero) or a named pipe is refused
// before a byte is read, as is a file over its size limit. An image is
// size-checked from its header against the size the manifest gives it
// before it is decoded, so that a small file claiming a huge image cannot
// exhaust memory.
func Load(dir string) (*Bundle, error) {
	if dir == "" {
		return nil, invalid("", "no bundle directory given (the path is empty); name the directory written by `inspectd train`")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, invalidCause(dir, err, "%v; expected the bundle directory written by `inspectd train`", unwrapPathError(err))
	}
	if !st.IsDir() {
		return nil, invalid(dir, "not a directory; a bundle is a directory holding %s", ManifestName)
	}
	mpath := filepath.Join(dir, ManifestName)
	raw, err := tomlcheck.ReadFile(mpath, MaxManifestBytes)
	if err != nil {
		return nil, invalidCause(mpath, err, "%v (is this a model bundle written by `inspectd train`?)", unwrapPathError(err))
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
	if err := checkBakedValues(filepath.Join(dir, m.Localize.Graph), b.LocalizeGraph, m); err != nil {
		return nil, err
	}
	if m.Align.Method == AlignIMM {
		b.AlignGraph = files[m.Align.Graph]
		if err := checkAlignGraph(filepath.Join(dir, m.Align.Graph), b.AlignGraph, m); err != nil {
			return nil, err
		}
	}
	if err := checkTwins(dir, files, m, b); err != nil {
		return nil, err
	}
	if m.Align.Template != "" {
		img, err := decodeTemplate(filepath.Join(dir, m.Align.Template), files[m.Align.Template], m.Align)
		if err != nil {
			return nil, err
		}
		b.Template = img
	}
	return b, nil
}

// decodeTemplate decodes the template image, which must be exactly the
// manifest's align size. The size is read from the image's header first:
// an image of any other size is refused without being decoded, so that a
// header claiming 2,000,000² pixels costs nothing.
func decodeTemplate(path string, data []byte, al Align) (image.Image, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, invalidCause(path, err, "cannot decode the template image's header (want a PNG of %dx%d): %v", al.Width, al.Height, err)
	}
	if cfg.Width != al.Width || cfg.Height != al.Height {
		msg := fmt.Sprintf("template is %dx%d, manifest align size is %dx%d", cfg.Width, cfg.Height, al.Width, al.Height)
		if int64(cfg.Width)*int64(cfg.Height) > int64(al.Width)*int64(al.Height) {
			msg += fmt.Sprintf(" (size read from the %s header; refused without decoding it)", format)
		}
		return nil, invalid(path, "%s", msg)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, invalidCause(path, err, "cannot decode the template image: %v", err)
	}
	if sz := img.Bounds().Size(); sz.X != al.Width || sz.Y != al.Height {
		return nil, invalid(path, "template is %dx%d, manifest align size is %dx%d", sz.X, sz.Y, al.Width, al.Height)
	}
	return img, nil
}

// listedFileError reports a file of the manifest that cannot be read:
// missing, not a regular file, too large or unreadable.
func listedFileError(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return invalidCause(path, err, "listed in the manifest but missing from the bundle directory (re-copy the bundle)")
	}
	return invalidCause(path, err, "listed in the manifest but cannot be read: %v", unwrapPathError(err))
}

// fileLimit is the size limit of the listed file name: MaxGraphBytes for
// a graph, MaxOtherFileBytes for anything else.
func fileLimit(m *Manifest, name string) int64 {
	if name == m.Localize.Graph || name == m.Align.Graph || name == LocalizeTFLiteName || name == AlignTFLiteName {
		return MaxGraphBytes
	}
	return MaxOtherFileBytes
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && name != ManifestName &&
		!strings.ContainsAny(name, `/\`) && filepath.Base(name) == name
}

// readListedFiles reads every file in m.Files and checks its SHA-256.
// Each must be a regular file within its size limit (fileLimit); that is
// checked for every file before any is read, so that a bundle with a link
// to /dev/zero or a named pipe costs neither memory nor a hang.
func readListedFiles(dir string, m *Manifest) (map[string][]byte, error) {
	names := make([]string, 0, len(m.Files))
	for n := range m.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := tomlcheck.CheckFile(p, fileLimit(m, n)); err != nil {
			return nil, listedFileError(p, err)
		}
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		p := filepath.Join(dir, n)
		data, err := tomlcheck.ReadFile(p, fileLimit(m, n))
		if err != nil {
			return nil, listedFileError(p, err)
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

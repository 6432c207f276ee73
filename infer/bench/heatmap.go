package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// npyMagic starts every NumPy .npy file (format version 1.0).
const npyMagic = "\x93NUMPY\x01\x00"

// WriteHeatmap writes values (height×width, row-major) to path as a NumPy
// .npy file of little-endian float32 with shape (height, width), readable
// with numpy.load. The file is written beside path and renamed into place.
func WriteHeatmap(path string, width, height int, values []float32) (err error) {
	if len(values) != width*height {
		return fmt.Errorf("heatmap %s: %d values for %dx%d", path, len(values), width, height)
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", height, width)
	// Pad with spaces so that the data starts on a 64-byte boundary; the
	// header ends in a newline.
	pad := 64 - (len(npyMagic)+2+len(header)+1)%64
	header += string(bytes.Repeat([]byte{' '}, pad%64)) + "\n"
	var buf bytes.Buffer
	buf.WriteString(npyMagic)
	binary.Write(&buf, binary.LittleEndian, uint16(len(header)))
	buf.WriteString(header)
	binary.Write(&buf, binary.LittleEndian, values)

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("heatmap: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("heatmap %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("heatmap %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("heatmap %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("heatmap %s: %w", path, err)
	}
	return nil
}

var npyShape = regexp.MustCompile(`'shape':\s*\((\d+),\s*(\d+)\)`)

// ReadHeatmap reads a heatmap written by WriteHeatmap.
func ReadHeatmap(path string) (width, height int, values []float32, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("heatmap: %w", err)
	}
	bad := func(what string) error {
		return fmt.Errorf("heatmap %s: %s; want a float32 (H, W) .npy written by inspectd bench --dump-heatmap", path, what)
	}
	if len(data) < len(npyMagic)+2 || string(data[:len(npyMagic)]) != npyMagic {
		return 0, 0, nil, bad("not a version 1.0 .npy file")
	}
	n := int(binary.LittleEndian.Uint16(data[len(npyMagic):]))
	start := len(npyMagic) + 2 + n
	if start > len(data) {
		return 0, 0, nil, bad("truncated header")
	}
	header := string(data[len(npyMagic)+2 : start])
	m := npyShape.FindStringSubmatch(header)
	if m == nil || !bytes.Contains([]byte(header), []byte("'descr': '<f4'")) || !bytes.Contains([]byte(header), []byte("'fortran_order': False")) {
		return 0, 0, nil, bad("header " + strconv.Quote(header))
	}
	height, _ = strconv.Atoi(m[1])
	width, _ = strconv.Atoi(m[2])
	body := data[start:]
	if len(body) != 4*width*height {
		return 0, 0, nil, bad(fmt.Sprintf("%d data bytes for shape (%d, %d)", len(body), height, width))
	}
	values = make([]float32, width*height)
	for i := range values {
		values[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	return width, height, values, nil
}

// HeatmapDiff compares a heatmap with a reference of the same size.
type HeatmapDiff struct {
	// MaxAbs is the largest absolute difference.
	MaxAbs float64 `json:"max_abs"`
	// Scale is max(1, the largest absolute reference value).
	Scale float64 `json:"scale"`
	// Rel is MaxAbs / Scale: the figure tolerances apply to, so that a
	// heatmap of large distances is held to the same relative precision as
	// one of small ones, and one of small values to an absolute bound.
	Rel float64 `json:"rel"`
}

// CompareHeatmaps compares got with ref. NaN anywhere is an infinite
// difference.
func CompareHeatmaps(ref, got []float32) (HeatmapDiff, error) {
	if len(ref) != len(got) {
		return HeatmapDiff{}, fmt.Errorf("heatmaps of %d and %d values", len(ref), len(got))
	}
	d := HeatmapDiff{Scale: 1}
	for i := range ref {
		r, g := float64(ref[i]), float64(got[i])
		diff := math.Abs(r - g)
		if math.IsNaN(diff) {
			diff = math.Inf(1)
		}
		d.MaxAbs = max(d.MaxAbs, diff)
		if a := math.Abs(r); !math.IsNaN(a) {
			d.Scale = max(d.Scale, a)
		}
	}
	d.Rel = d.MaxAbs / d.Scale
	return d, nil
}

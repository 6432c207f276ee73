package evaluate

import (
	"archive/zip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// mapsArchive writes one category's heatmaps as a NumPy .npz archive in the
// layout `peers.py --save-maps` uses, so that the same script can score
// both with the same metric code: maps [N,H,W] float32, scores [N] float64
// (the image scores eval used), labels [N] int64 (1: defective) and paths
// [N] (each test image relative to the dataset root). The maps are
// streamed into the archive as the images are scored; the rest is written
// by close.
type mapsArchive struct {
	f      *os.File
	z      *zip.Writer
	maps   io.Writer
	n      int
	size   int
	buf    []byte // one map's bytes, reused
	scores []float64
	labels []int64
	paths  []string
}

// newMapsArchive creates path for n maps of w×h values.
func newMapsArchive(path string, n, w, h int) (*mapsArchive, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	a := &mapsArchive{f: f, z: zip.NewWriter(f), n: n, size: w * h}
	if a.maps, err = a.entry("maps", "<f4", n, h, w); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// entry starts the archive member name.npy and writes its header.
func (a *mapsArchive) entry(name, descr string, shape ...int) (io.Writer, error) {
	w, err := a.z.CreateHeader(&zip.FileHeader{Name: name + ".npy", Method: zip.Store})
	if err != nil {
		return nil, err
	}
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = fmt.Sprint(s)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, tuple)
	// Magic, version 1.0, header length; the header is padded with spaces
	// and ends in a newline so that the data starts on a 64-byte boundary.
	pad := 64 - (10+len(header)+1)%64
	if pad == 64 {
		pad = 0
	}
	header += strings.Repeat(" ", pad) + "\n"
	prefix := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	if _, err := w.Write(append(prefix, header...)); err != nil {
		return nil, err
	}
	return w, nil
}

// add appends one image's heatmap, score, label and path.
func (a *mapsArchive) add(values []float32, score float64, defective bool, path string) error {
	if len(values) != a.size {
		return fmt.Errorf("heatmap has %d values, want %d", len(values), a.size)
	}
	if len(a.scores) == a.n {
		return fmt.Errorf("more than the %d maps announced", a.n)
	}
	a.buf = slices.Grow(a.buf[:0], 4*len(values))[:4*len(values)]
	for i, v := range values {
		binary.LittleEndian.PutUint32(a.buf[4*i:], math.Float32bits(v))
	}
	if _, err := a.maps.Write(a.buf); err != nil {
		return err
	}
	label := int64(0)
	if defective {
		label = 1
	}
	a.scores, a.labels, a.paths = append(a.scores, score), append(a.labels, label), append(a.paths, path)
	return nil
}

// close writes scores, labels and paths and closes the archive; it fails
// unless every announced map was added.
func (a *mapsArchive) close() error {
	err := a.finish()
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (a *mapsArchive) finish() error {
	if len(a.scores) != a.n {
		return fmt.Errorf("%d of the %d maps announced were added", len(a.scores), a.n)
	}
	w, err := a.entry("scores", "<f8", a.n)
	if err != nil {
		return err
	}
	if err := binary.Write(w, binary.LittleEndian, a.scores); err != nil {
		return err
	}
	if w, err = a.entry("labels", "<i8", a.n); err != nil {
		return err
	}
	if err := binary.Write(w, binary.LittleEndian, a.labels); err != nil {
		return err
	}
	// Fixed-width UTF-32 strings, as NumPy stores a '<U' array.
	width := 1
	for _, p := range a.paths {
		width = max(width, utf8.RuneCountInString(p))
	}
	if w, err = a.entry("paths", fmt.Sprintf("<U%d", width), a.n); err != nil {
		return err
	}
	row := make([]byte, 4*width)
	for _, p := range a.paths {
		clear(row)
		i := 0
		for _, r := range p {
			binary.LittleEndian.PutUint32(row[4*i:], uint32(r))
			i++
		}
		if _, err := w.Write(row); err != nil {
			return err
		}
	}
	if err := a.z.Close(); err != nil {
		return err
	}
	return a.f.Sync()
}

// abort closes the file of an archive that will not be completed (the
// caller discards the staging directory it lies in); after close it does
// nothing.
func (a *mapsArchive) abort() {
	a.f.Close() // a second Close only reports os.ErrClosed
}

package camera

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"syscall"

	"gocv.io/x/gocv"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/tomlcheck"
)

// Still-image limits that hold whatever camera.max_pixels says.
const (
	// maxSide is OpenCV's limit on either side of an image
	// (CV_IO_MAX_IMAGE_WIDTH and _HEIGHT, 2^20). OpenCV checks it outside
	// the decoder's exception handler, so an image past it aborts the
	// process; such a file is refused from its header instead.
	maxSide = 1 << 20
	// headerBytes bounds what is read to find an image's size: a JPEG's
	// frame header may follow EXIF and other APPn segments of up to 64 KiB
	// each.
	headerBytes = 1 << 20
	// fileSlack is what an image file may hold beyond 4 bytes per pixel
	// (metadata, ICC profiles, thumbnails).
	fileSlack = 16 << 20
)

// maxFileBytes is the largest image file read for a camera.max_pixels
// limit: 4 bytes per pixel (a 32-bit BMP, or an RGBA PNG stored without
// compression) plus slack. A file past it is skipped without being read.
func maxFileBytes(maxPixels int) int64 { return 4*int64(maxPixels) + fileSlack }

// ImageError is one replayed image that was skipped, and why. Its Error
// names the file and, where the header was read, the size it claims.
type ImageError struct {
	// Path is the file, as listed in the replayed directory.
	Path string
	// Format is "PNG", "JPEG" or "BMP" once the header was recognised.
	Format string
	// Width and Height are the size the file's header claims; 0 when the
	// header could not be read.
	Width, Height int64
	// Reason says what is wrong, without the file name.
	Reason string
}

func (e *ImageError) Error() string { return e.Path + ": " + e.Reason }

// decodeSlot admits one still-image read and decode at a time in the
// process, so decodes cannot pile up: memory holds at most one image file
// and one decoded image (camera.max_pixels × 3 bytes) however the reads
// are abandoned or restarted.
var decodeSlot = make(chan struct{}, 1)

// decodes counts still-image decodes in progress and the most ever seen
// at once (for tests: never more than one).
var decodes struct{ now, max atomic.Int32 }

// openRegular opens path for reading if it is a regular file or a
// symbolic link to one. A named pipe, device, socket or directory is
// refused without being opened (opening a FIFO blocks until a writer
// comes); the file is opened non-blocking and checked again in case it
// was swapped after the check.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if target, lerr := os.Readlink(path); lerr == nil {
				return nil, nil, fmt.Errorf("is a symbolic link to %s, which does not exist", target)
			}
			return nil, nil, errors.New("no longer exists (removed after the directory was listed)")
		}
		return nil, nil, errors.New(statReason(err))
	}
	if !st.Mode().IsRegular() {
		return nil, nil, notRegular(path, st.Mode())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, errors.New(statReason(err))
	}
	st, err = f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = notRegular(path, st.Mode())
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// notRegular says what a non-regular path is, and what it links to.
func notRegular(path string, m fs.FileMode) error {
	if target, err := os.Readlink(path); err == nil {
		return fmt.Errorf("is a symbolic link to %s, %s, not a regular file", target, tomlcheck.FileKind(m))
	}
	return fmt.Errorf("is %s, not a regular file", tomlcheck.FileKind(m))
}

// statReason is an open or stat error without the path the caller names,
// as in "cannot be read (permission denied)".
func statReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("cannot be read (%v)", err)
}

// imageHeader is what an image file's header says.
type imageHeader struct {
	format        string // "PNG", "JPEG" or "BMP"
	width, height int64
}

// readHeader reads the format and size from the start of an image. Only
// PNG, JPEG and BMP are recognised, by their signature as OpenCV does (not
// by the file name): OpenCV would decode other formats whose size nobody
// checked.
func readHeader(r io.Reader) (imageHeader, error) {
	br := bufio.NewReader(r)
	sig, err := br.Peek(8)
	if len(sig) == 0 {
		if err == nil || err == io.EOF {
			return imageHeader{}, errors.New("is empty (0 bytes)")
		}
		return imageHeader{}, err
	}
	switch {
	case bytes.HasPrefix(sig, []byte("\x89PNG\r\n\x1a\n")):
		cfg, err := png.DecodeConfig(br)
		if err != nil {
			return imageHeader{format: "PNG"}, fmt.Errorf("has an unreadable PNG header (%v)", err)
		}
		return imageHeader{"PNG", int64(cfg.Width), int64(cfg.Height)}, nil
	case bytes.HasPrefix(sig, []byte("\xff\xd8\xff")):
		cfg, err := jpeg.DecodeConfig(br)
		if err != nil {
			return imageHeader{format: "JPEG"}, fmt.Errorf("has an unreadable JPEG header (%v)", err)
		}
		return imageHeader{"JPEG", int64(cfg.Width), int64(cfg.Height)}, nil
	case bytes.HasPrefix(sig, []byte("BM")):
		w, h, err := bmpSize(br)
		if err != nil {
			return imageHeader{format: "BMP"}, fmt.Errorf("has an unreadable BMP header (%v)", err)
		}
		return imageHeader{"BMP", w, h}, nil
	}
	return imageHeader{}, fmt.Errorf("is not a PNG, JPEG or BMP file (it starts with %q)", sig)
}

// bmpSize reads a BMP's width and height as OpenCV's decoder does: from a
// BITMAPCOREHEADER (12 bytes, 16-bit sizes) or a BITMAPINFOHEADER or later
// (36 bytes or more, signed 32-bit sizes; a negative height means rows
// stored top-down, so its magnitude is the height).
func bmpSize(r io.Reader) (width, height int64, err error) {
	var h [26]byte
	if _, err := io.ReadFull(r, h[:18]); err != nil {
		return 0, 0, errors.New("truncated file header")
	}
	switch size := binary.LittleEndian.Uint32(h[14:18]); {
	case size == 12:
		if _, err := io.ReadFull(r, h[18:22]); err != nil {
			return 0, 0, errors.New("truncated BITMAPCOREHEADER")
		}
		width = int64(binary.LittleEndian.Uint16(h[18:20]))
		height = int64(binary.LittleEndian.Uint16(h[20:22]))
	case size >= 36:
		if _, err := io.ReadFull(r, h[18:26]); err != nil {
			return 0, 0, errors.New("truncated BITMAPINFOHEADER")
		}
		width = int64(int32(binary.LittleEndian.Uint32(h[18:22])))
		height = int64(int32(binary.LittleEndian.Uint32(h[22:26])))
		if height < 0 {
			height = -height
		}
	default:
		return 0, 0, fmt.Errorf("info header of %d bytes; OpenCV reads 12, or 36 and more", size)
	}
	return width, height, nil
}

// check refuses a size that is empty, past OpenCV's per-side limit or past
// camera.max_pixels.
func (h imageHeader) check(maxPixels int) error {
	switch {
	case h.width <= 0 || h.height <= 0:
		return fmt.Errorf("its %s header claims %dx%d pixels", h.format, h.width, h.height)
	case h.width > maxSide || h.height > maxSide:
		return fmt.Errorf("its %s header claims %dx%d pixels; OpenCV decodes at most %d per side", h.format, h.width, h.height, maxSide)
	case h.width*h.height > int64(maxPixels):
		return fmt.Errorf("its %s header claims %dx%d pixels (%d), more than camera.max_pixels %d", h.format, h.width, h.height, h.width*h.height, maxPixels)
	}
	return nil
}

// probeImage checks one image file without decoding it: a regular file
// (or a link to one), not empty, a PNG, JPEG or BMP header within
// maxPixels, and a file size within maxFileBytes.
func probeImage(path string, maxPixels int) error {
	f, st, err := openRegular(path)
	if err != nil {
		return &ImageError{Path: path, Reason: err.Error()}
	}
	defer f.Close()
	_, err = probeOpen(path, f, st, maxPixels)
	return err
}

// probeOpen is probeImage on an opened file; it reads from the file's
// current offset.
func probeOpen(path string, f *os.File, st os.FileInfo, maxPixels int) (imageHeader, error) {
	if st.Size() == 0 {
		return imageHeader{}, &ImageError{Path: path, Reason: "is empty (0 bytes)"}
	}
	hdr, err := readHeader(io.LimitReader(f, headerBytes))
	if err == nil {
		err = hdr.check(maxPixels)
	}
	if err == nil && st.Size() > maxFileBytes(maxPixels) {
		err = fmt.Errorf("is %d bytes, more than the %d read for an image within camera.max_pixels %d", st.Size(), maxFileBytes(maxPixels), maxPixels)
	}
	if err != nil {
		return hdr, &ImageError{Path: path, Format: hdr.format, Width: hdr.width, Height: hdr.height, Reason: err.Error()}
	}
	return hdr, nil
}

// readImage reads, checks and decodes one image file into a BGR image
// from pool, holding decodeSlot. The header and the file size are checked
// before the file is read; the file is then read into buf (grown as needed
// and kept for the next file), the header checked again in those bytes
// and the same bytes decoded, so a file rewritten meanwhile cannot slip
// past the check. stop
// makes a wait for the slot return errInterrupted. Any other error is an
// *ImageError.
func readImage(path string, maxPixels int, buf *[]byte, pool *bufferPool, stop <-chan struct{}) (*preprocess.BGR, error) {
	select {
	case decodeSlot <- struct{}{}:
	case <-stop:
		return nil, errInterrupted
	}
	defer func() { <-decodeSlot }()

	skip := func(hdr imageHeader, err error) error {
		return &ImageError{Path: path, Format: hdr.format, Width: hdr.width, Height: hdr.height, Reason: err.Error()}
	}
	f, st, err := openRegular(path)
	if err != nil {
		return nil, skip(imageHeader{}, err)
	}
	defer f.Close()
	hdr, err := probeOpen(path, f, st, maxPixels)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, skip(hdr, fmt.Errorf("could not be read (%v)", err))
	}
	// probeOpen bounded the size by maxFileBytes. One byte more than the
	// size is asked for, to notice a file that grew meanwhile.
	size := st.Size()
	if int64(cap(*buf)) < size+1 {
		*buf = make([]byte, size+1)
	}
	data := (*buf)[:size+1]
	n, err := io.ReadFull(f, data)
	switch {
	case err == nil:
		return nil, skip(hdr, fmt.Errorf("grew past %d bytes while being read", size))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		data = data[:n] // the whole file (shorter if it shrank meanwhile)
	default:
		return nil, skip(hdr, fmt.Errorf("could not be read (%v)", err))
	}
	if hdr, err = readHeader(bytes.NewReader(data)); err == nil {
		err = hdr.check(maxPixels)
	}
	if err != nil {
		return nil, skip(hdr, err)
	}

	inFlight := decodes.now.Add(1)
	for most := decodes.max.Load(); inFlight > most && !decodes.max.CompareAndSwap(most, inFlight); most = decodes.max.Load() {
	}
	m, err := gocv.IMDecode(data, gocv.IMReadColor)
	decodes.now.Add(-1)
	if err != nil {
		return nil, skip(hdr, fmt.Errorf("could not be decoded (%v)", err))
	}
	defer m.Close()
	if m.Empty() {
		return nil, skip(hdr, fmt.Errorf("holds %s data OpenCV could not decode (truncated or corrupt)", hdr.format))
	}
	img, err := copyMat(&m, pool)
	if err != nil {
		return nil, skip(hdr, err)
	}
	return img, nil
}

// CheckSource checks what [New] checks — the read and open timeouts and
// camera.max_pixels are positive, the source's own keys (camera.device,
// camera.pipeline, camera.url, camera.path), a video file is a regular
// file — and, for source "images", that at least one image in the
// directory is a regular file (or a link to one) with a PNG, JPEG or BMP
// header within camera.max_pixels. It opens no capture and decodes no
// pixels, so check-config can call it. Errors name the configuration key,
// as in "camera.path: ...".
func CheckSource(cfg config.Camera) error {
	_, err := prepare(cfg)
	return err
}

// prepare checks cfg and returns the source's opener.
func prepare(cfg config.Camera) (source, error) {
	// The defaults live in package config; a section built in code starts
	// from config.Default().Camera.
	if cfg.ReadTimeout.D <= 0 || cfg.OpenTimeout.D <= 0 {
		return source{}, fmt.Errorf("camera.read_timeout %s and camera.open_timeout %s must be positive", cfg.ReadTimeout.D, cfg.OpenTimeout.D)
	}
	if cfg.MaxPixels <= 0 || cfg.MaxPixels > config.MaxMaxPixels {
		return source{}, fmt.Errorf("camera.max_pixels: %d is out of range; allowed 1 to %d pixels per frame", cfg.MaxPixels, config.MaxMaxPixels)
	}
	src, err := newSource(cfg)
	if err != nil {
		return source{}, err
	}
	if cfg.Source == "images" {
		if err := firstReadable(cfg.Path, cfg.MaxPixels); err != nil {
			return source{}, fmt.Errorf("camera.path: %w", err)
		}
	}
	return src, nil
}

// firstReadable returns nil when at least one image in dir passes
// probeImage, else an error naming up to three files and why.
func firstReadable(dir string, maxPixels int) error {
	files, err := listImages(dir)
	if err != nil {
		return err
	}
	var reasons []string
	for _, f := range files {
		err := probeImage(f, maxPixels)
		if err == nil {
			return nil
		}
		if len(reasons) < 3 {
			reasons = append(reasons, err.Error())
		}
	}
	more := ""
	if n := len(files) - len(reasons); n > 0 {
		more = fmt.Sprintf("; and %d more", n)
	}
	return fmt.Errorf("none of the %d image files in %s can be replayed: %s%s", len(files), dir, strings.Join(reasons, "; "), more)
}

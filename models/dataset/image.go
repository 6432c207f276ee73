package dataset

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
)

// Mask is a decoded ground-truth mask: W×H pixels in row-major order, true
// on defect pixels.
type Mask struct {
	W, H int
	Pix  []bool
}

// Count returns the number of defect pixels.
func (m *Mask) Count() int {
	n := 0
	for _, p := range m.Pix {
		if p {
			n++
		}
	}
	return n
}

// format is an image container recognised by its leading bytes.
type format int

const (
	formatUnknown format = iota
	formatPNG
	formatJPEG
	formatBMP
)

// sniff identifies the container from the first bytes of a file.
func sniff(head []byte) format {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return formatPNG
	case bytes.HasPrefix(head, []byte{0xff, 0xd8}):
		return formatJPEG
	case bytes.HasPrefix(head, []byte("BM")):
		return formatBMP
	}
	return formatUnknown
}

// open opens path and identifies its format from its content.
func open(path string) (*os.File, *bufio.Reader, format, error) {
	// Opening a FIFO or a device blocks (and cannot be interrupted):
	// refuse anything but a regular file (or a link to one) first.
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("dataset: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, 0, fmt.Errorf("dataset: %s is not a regular file (%s); expected a PNG, JPEG or BMP image", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("dataset: %w", err)
	}
	r := bufio.NewReader(f)
	head, _ := r.Peek(8)
	fm := sniff(head)
	if fm == formatUnknown {
		f.Close()
		return nil, nil, 0, fmt.Errorf("dataset: %s: unknown image format, expected PNG, JPEG or BMP", path)
	}
	return f, r, fm, nil
}

// LoadImage decodes a PNG, JPEG or BMP image (recognised by content).
// Grey images decode to *image.Gray (or *image.Gray16), colour ones to an
// RGB(A) type of the image package.
func LoadImage(path string) (image.Image, error) {
	f, r, fm, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var img image.Image
	switch fm {
	case formatPNG:
		img, err = png.Decode(r)
	case formatJPEG:
		img, err = jpeg.Decode(r)
	default:
		img, err = decodeBMP(r)
	}
	if err != nil {
		return nil, fmt.Errorf("dataset: decoding %s: %w", path, err)
	}
	return img, nil
}

// DecodeConfig reads the size and colour model of an image from its header
// without decoding the pixels.
func DecodeConfig(path string) (image.Config, error) {
	f, r, fm, err := open(path)
	if err != nil {
		return image.Config{}, err
	}
	defer f.Close()
	var c image.Config
	switch fm {
	case formatPNG:
		c, err = png.DecodeConfig(r)
	case formatJPEG:
		c, err = jpeg.DecodeConfig(r)
	default:
		var h bmpHeader
		if h, err = readBMPHeader(r); err == nil {
			c = image.Config{ColorModel: color.RGBAModel, Width: h.width, Height: h.height}
		}
	}
	if err != nil {
		return image.Config{}, fmt.Errorf("dataset: reading header of %s: %w", path, err)
	}
	return c, nil
}

// LoadMask decodes a mask image; see [MaskFromImage] for which pixels are
// defect pixels.
func LoadMask(path string) (*Mask, error) {
	img, err := LoadImage(path)
	if err != nil {
		return nil, err
	}
	return MaskFromImage(img), nil
}

// MaskFromImage thresholds img: a mask drawn in 0/255 (MVTec) marks
// defects with grey level >= 128. A mask whose brightest pixel is below
// 128 is a label mask (0/1, or small class indices): every non-zero pixel
// is a defect pixel. Thresholding those at 128 would silently empty them.
func MaskFromImage(img image.Image) *Mask {
	b := img.Bounds()
	m := &Mask{W: b.Dx(), H: b.Dy(), Pix: make([]bool, b.Dx()*b.Dy())}
	grey := make([]uint8, len(m.Pix))
	if g, ok := img.(*image.Gray); ok {
		for y := 0; y < m.H; y++ {
			copy(grey[y*m.W:(y+1)*m.W], g.Pix[y*g.Stride:y*g.Stride+m.W])
		}
	} else {
		for y := 0; y < m.H; y++ {
			for x := 0; x < m.W; x++ {
				grey[y*m.W+x] = color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
			}
		}
	}
	var top uint8
	for _, v := range grey {
		top = max(top, v)
	}
	threshold := uint8(128)
	if top < 128 {
		threshold = 1
	}
	for i, v := range grey {
		m.Pix[i] = v >= threshold
	}
	return m
}

// bmpHeader is what decodeBMP needs from the file and info headers.
type bmpHeader struct {
	offset        uint32
	width, height int
	topDown       bool
	bpp           int
	compression   uint32
	paletteSize   int
	infoSize      uint32
}

// readBMPHeader parses the BITMAPFILEHEADER and a BITMAPINFOHEADER (or its
// V4/V5 extensions).
func readBMPHeader(r io.Reader) (bmpHeader, error) {
	var fh [14]byte
	if _, err := io.ReadFull(r, fh[:]); err != nil {
		return bmpHeader{}, fmt.Errorf("BMP file header: %w", err)
	}
	var ih [40]byte
	if _, err := io.ReadFull(r, ih[:]); err != nil {
		return bmpHeader{}, fmt.Errorf("BMP info header: %w", err)
	}
	le := binary.LittleEndian
	h := bmpHeader{offset: le.Uint32(fh[10:]), infoSize: le.Uint32(ih[0:])}
	if h.infoSize < 40 || h.infoSize > 124 {
		return h, fmt.Errorf("BMP info header of %d bytes, expected 40 to 124 (BITMAPINFOHEADER to BITMAPV5HEADER)", h.infoSize)
	}
	w, ht := int32(le.Uint32(ih[4:])), int32(le.Uint32(ih[8:]))
	if ht < 0 {
		h.topDown, ht = true, -ht
	}
	h.width, h.height = int(w), int(ht)
	h.bpp = int(le.Uint16(ih[14:]))
	h.compression = le.Uint32(ih[16:])
	h.paletteSize = int(le.Uint32(ih[32:]))
	if h.width <= 0 || h.height <= 0 || h.width > 1<<15 || h.height > 1<<15 {
		return h, fmt.Errorf("BMP size %dx%d, expected 1 to 32768 pixels a side", h.width, h.height)
	}
	return h, nil
}

// decodeBMP decodes an uncompressed BMP (1, 4, 8, 24 or 32 bits per pixel;
// 32-bit with BI_RGB or the standard BI_BITFIELDS masks). Palette images
// whose palette is grey decode to *image.Gray, others to *image.RGBA.
func decodeBMP(r io.Reader) (image.Image, error) {
	h, err := readBMPHeader(r)
	if err != nil {
		return nil, err
	}
	read := uint32(54)
	switch {
	case h.compression == 0: // BI_RGB
	case h.compression == 3 && h.bpp == 32: // BI_BITFIELDS, masks checked below
	default:
		return nil, fmt.Errorf("BMP compression %d with %d bits per pixel, expected uncompressed 1/4/8/24/32-bit", h.compression, h.bpp)
	}
	// Rest of the info header (V4/V5), possibly with the BI_BITFIELDS masks.
	extra := make([]byte, h.infoSize-40)
	if _, err := io.ReadFull(r, extra); err != nil {
		return nil, fmt.Errorf("BMP info header: %w", err)
	}
	read += uint32(len(extra))
	if h.compression == 3 {
		if len(extra) < 12 {
			m := make([]byte, 12)
			if _, err := io.ReadFull(r, m); err != nil {
				return nil, fmt.Errorf("BMP bit fields: %w", err)
			}
			read += 12
			extra = append(extra, m...)
		}
		le := binary.LittleEndian
		if le.Uint32(extra[0:]) != 0xff0000 || le.Uint32(extra[4:]) != 0xff00 || le.Uint32(extra[8:]) != 0xff {
			return nil, fmt.Errorf("BMP bit fields %08x/%08x/%08x, expected ff0000/ff00/ff", le.Uint32(extra[0:]), le.Uint32(extra[4:]), le.Uint32(extra[8:]))
		}
	}
	var palette []color.RGBA
	grey := true
	switch h.bpp {
	case 1, 4, 8:
		n := h.paletteSize
		if n == 0 {
			n = 1 << h.bpp
		}
		if n > 256 {
			return nil, fmt.Errorf("BMP palette of %d colours, expected at most 256", n)
		}
		buf := make([]byte, 4*n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("BMP palette: %w", err)
		}
		read += uint32(len(buf))
		for i := 0; i < n; i++ {
			c := color.RGBA{R: buf[4*i+2], G: buf[4*i+1], B: buf[4*i], A: 255}
			grey = grey && c.R == c.G && c.G == c.B
			palette = append(palette, c)
		}
	case 24, 32:
		grey = false
	default:
		return nil, fmt.Errorf("BMP with %d bits per pixel, expected 1, 4, 8, 24 or 32", h.bpp)
	}
	if h.offset < read {
		return nil, fmt.Errorf("BMP pixel data offset %d inside the headers (%d bytes)", h.offset, read)
	}
	if _, err := io.CopyN(io.Discard, r, int64(h.offset-read)); err != nil {
		return nil, fmt.Errorf("BMP gap before pixel data: %w", err)
	}
	stride := ((h.width*h.bpp + 31) / 32) * 4
	// Read the pixel data before allocating the image: the buffer grows
	// only with bytes that really arrive, so a short file claiming a huge
	// size fails without allocating gigabytes.
	want := int64(stride) * int64(h.height)
	data, err := io.ReadAll(io.LimitReader(r, want))
	if err != nil {
		return nil, fmt.Errorf("BMP pixel data: %w", err)
	}
	if int64(len(data)) < want {
		return nil, fmt.Errorf("BMP pixel row %d of %d: %w", int64(len(data))/int64(stride), h.height, io.ErrUnexpectedEOF)
	}
	rect := image.Rect(0, 0, h.width, h.height)
	var gimg *image.Gray
	var cimg *image.RGBA
	if grey {
		gimg = image.NewGray(rect)
	} else {
		cimg = image.NewRGBA(rect)
	}
	for i := 0; i < h.height; i++ {
		row := data[i*stride : (i+1)*stride]
		y := h.height - 1 - i
		if h.topDown {
			y = i
		}
		for x := 0; x < h.width; x++ {
			var c color.RGBA
			switch h.bpp {
			case 1, 4, 8:
				bit := x * h.bpp
				idx := int(row[bit/8]>>(8-h.bpp-bit%8)) & (1<<h.bpp - 1)
				if idx >= len(palette) {
					return nil, fmt.Errorf("BMP pixel (%d,%d) uses colour %d of a %d-colour palette", x, y, idx, len(palette))
				}
				c = palette[idx]
			case 24:
				c = color.RGBA{R: row[3*x+2], G: row[3*x+1], B: row[3*x], A: 255}
			case 32:
				c = color.RGBA{R: row[4*x+2], G: row[4*x+1], B: row[4*x], A: 255}
			}
			if grey {
				gimg.Pix[y*gimg.Stride+x] = c.R
			} else {
				o := y*cimg.Stride + 4*x
				copy(cimg.Pix[o:o+4], []byte{c.R, c.G, c.B, c.A})
			}
		}
	}
	if grey {
		return gimg, nil
	}
	return cimg, nil
}

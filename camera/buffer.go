package camera

import (
	"fmt"
	"image"
	"sync"

	"gocv.io/x/gocv"

	"github.com/inspectd/inspectd/models/preprocess"
)

// bufferPool recycles frame images. A buffer of another size than asked
// for is dropped, so a resolution change costs one allocation per frame in
// flight, not a leak.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) get(width, height int) *preprocess.BGR {
	if b, ok := p.pool.Get().(*preprocess.BGR); ok && b.Rect.Dx() == width && b.Rect.Dy() == height && b.Rect.Min == (image.Point{}) {
		return b
	}
	return preprocess.NewBGR(image.Rect(0, 0, width, height))
}

func (p *bufferPool) put(b *preprocess.BGR) {
	if b != nil {
		p.pool.Put(b)
	}
}

// copyMat copies an 8-bit BGR, grey or BGRA Mat into a pooled BGR image.
// The Mat stays owned by the caller.
func copyMat(m *gocv.Mat, pool *bufferPool) (*preprocess.BGR, error) {
	rows, cols := m.Rows(), m.Cols()
	if rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("empty frame %dx%d", cols, rows)
	}
	typ := m.Type()
	data, err := m.DataPtrUint8()
	if err != nil {
		return nil, fmt.Errorf("frame %dx%d: %w", cols, rows, err)
	}
	var channels int
	switch typ {
	case gocv.MatTypeCV8UC3:
		channels = 3
	case gocv.MatTypeCV8UC1:
		channels = 1
	case gocv.MatTypeCV8UC4:
		channels = 4
	default:
		return nil, fmt.Errorf("frame %dx%d has OpenCV type %v; want 8-bit BGR, grey or BGRA", cols, rows, typ)
	}
	step := cols * channels
	if len(data) < step*rows {
		return nil, fmt.Errorf("frame %dx%d: %d bytes of pixel data, want %d", cols, rows, len(data), step*rows)
	}
	dst := pool.get(cols, rows)
	switch channels {
	case 3:
		if dst.Stride == step {
			copy(dst.Pix, data[:step*rows])
			break
		}
		for y := 0; y < rows; y++ {
			copy(dst.Pix[y*dst.Stride:y*dst.Stride+step], data[y*step:(y+1)*step])
		}
	case 1:
		for y := 0; y < rows; y++ {
			src, out := data[y*step:(y+1)*step], dst.Pix[y*dst.Stride:]
			for x, v := range src {
				out[3*x], out[3*x+1], out[3*x+2] = v, v, v
			}
		}
	case 4:
		for y := 0; y < rows; y++ {
			src, out := data[y*step:(y+1)*step], dst.Pix[y*dst.Stride:]
			for x := 0; x < cols; x++ {
				out[3*x], out[3*x+1], out[3*x+2] = src[4*x], src[4*x+1], src[4*x+2]
			}
		}
	}
	return dst, nil
}

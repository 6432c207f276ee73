package archive

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// texturedFrame returns a w×h BGR frame with gradients and noise, so that
// JPEG sizes and times are realistic.
func texturedFrame(w, h int) *preprocess.BGR {
	f := preprocess.NewBGR(image.Rect(0, 0, w, h))
	seed := uint32(1)
	for y := range h {
		for x := range w {
			seed = seed*1664525 + 1013904223
			n := int(seed>>27) - 16
			i := f.PixOffset(x, y)
			f.Pix[i] = uint8(min(max(x*255/w+n, 0), 255))
			f.Pix[i+1] = uint8(min(max(y*255/h+n, 0), 255))
			f.Pix[i+2] = uint8(min(max(128+int(60*math.Sin(float64(x+y)/40))+n, 0), 255))
		}
	}
	return f
}

func benchSnapshot(w, h int) *inspection.Snapshot {
	hm := preprocess.NewHeatmap(256, 256)
	for y := range 256 {
		for x := range 256 {
			d := math.Hypot(float64(x-160), float64(y-100))
			hm.Values[y*256+x] = float32(0.05 + 0.6*math.Exp(-d*d/200))
		}
	}
	roi := image.Rect(w/10, h/10, w-w/10, h-h/10)
	return &inspection.Snapshot{
		Frame: texturedFrame(w, h), ROI: roi, Heatmap: hm,
		Transform: preprocess.Transform{Tx: 0.02, Ty: -0.01, Theta: 0.05},
	}
}

// BenchmarkDeliver archives NG results with frame, overlay and JSON, into a
// real directory, under a budget that makes eviction part of the steady
// state.
func BenchmarkDeliver(b *testing.B) {
	for _, sz := range []image.Point{{640, 480}, {1920, 1080}} {
		b.Run(fmt.Sprintf("%dx%d", sz.X, sz.Y), func(b *testing.B) {
			e := newEnv(b, func(c *config.Archive) { c.MaxSizeMB = 64 })
			snap := benchSnapshot(sz.X, sz.Y)
			r := result(1, inspection.NG)
			r.Snapshot = snap
			r.Regions = []inspection.Region{{X: sz.X / 2, Y: sz.Y / 3, Width: 40, Height: 30, Area: 900, Peak: 0.65}}
			var bytes int64
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.ID = fmt.Sprintf("st1-20260501T120000-%06d", i)
				r.VerdictTime = testStart.Add(time.Duration(i) * time.Millisecond)
				if err := e.a.Deliver(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			s := e.a.Stats()
			if s.Errors != 0 {
				b.Fatalf("Stats = %+v", s)
			}
			if s.Written > 0 {
				bytes = s.Bytes / int64(e.a.idx.len())
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
			b.ReportMetric(float64(bytes)/1024, "KiB/set")
		})
	}
}

// BenchmarkFrameJPEG compares ways to JPEG-encode a BGR frame: through the
// RGBA copy the archive uses (which the overlay then draws on), through a
// YCbCr 4:4:4 or 4:2:0 conversion (no overlay possible without another
// copy), and through the generic image.Image path.
func BenchmarkFrameJPEG(b *testing.B) {
	f := texturedFrame(1920, 1080)
	var buf bytes.Buffer
	enc := func(m image.Image) {
		buf.Reset()
		if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("convert-rgba", func(b *testing.B) {
		var rd renderer
		for b.Loop() {
			rd.toRGBA(f)
		}
	})
	b.Run("rgba", func(b *testing.B) {
		var rd renderer
		for b.Loop() {
			enc(rd.toRGBA(f))
		}
	})
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio420} {
		b.Run("ycbcr"+ratio.String()[len("YCbCrSubsampleRatio"):], func(b *testing.B) {
			m := image.NewYCbCr(f.Rect, ratio)
			for b.Loop() {
				bgrToYCbCr(m, f)
				enc(m)
			}
		})
	}
	b.Run("generic", func(b *testing.B) {
		for b.Loop() {
			enc(f)
		}
	})
	b.Run("draw", func(b *testing.B) {
		m := image.NewRGBA(f.Rect)
		for b.Loop() {
			draw.Draw(m, m.Rect, f, image.Point{}, draw.Src)
			enc(m)
		}
	})
}

// bgrToYCbCr is the alternative measured by BenchmarkFrameJPEG (chroma of
// subsampled formats taken from the top-left pixel, as a lower bound on the
// cost).
func bgrToYCbCr(m *image.YCbCr, f *preprocess.BGR) {
	b := f.Rect
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			i := f.PixOffset(x, y)
			yy, cb, cr := color.RGBToYCbCr(f.Pix[i+2], f.Pix[i+1], f.Pix[i])
			m.Y[m.YOffset(x, y)] = yy
			ci := m.COffset(x, y)
			m.Cb[ci], m.Cr[ci] = cb, cr
		}
	}
}

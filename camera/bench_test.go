package camera

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// BenchmarkCopyMat measures the per-frame copy from OpenCV into a pooled
// BGR image.
func BenchmarkCopyMat(b *testing.B) {
	for _, size := range []image.Point{{640, 480}, {1920, 1080}} {
		b.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(b *testing.B) {
			m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(1, 2, 3, 0), size.Y, size.X, gocv.MatTypeCV8UC3)
			defer m.Close()
			var pool bufferPool
			b.SetBytes(int64(3 * size.X * size.Y))
			b.ReportAllocs()
			for b.Loop() {
				img, err := copyMat(&m, &pool)
				if err != nil {
					b.Fatal(err)
				}
				pool.put(img)
			}
		})
	}
}

// BenchmarkImagesNext measures a whole frame through the camera: decode a
// PNG with OpenCV, copy, hand over through Next, release.
func BenchmarkImagesNext(b *testing.B) {
	for _, size := range []image.Point{{640, 480}, {1920, 1080}} {
		b.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(b *testing.B) {
			dir := b.TempDir()
			f, err := os.Create(filepath.Join(dir, "0.png"))
			if err != nil {
				b.Fatal(err)
			}
			if err := png.Encode(f, image.NewGray(image.Rectangle{Max: size})); err != nil {
				b.Fatal(err)
			}
			f.Close()
			cfg := testConfig("images")
			cfg.Path, cfg.Loop = dir, true
			cam, _ := startCamera(b, cfg)
			b.SetBytes(int64(3 * size.X * size.Y))
			b.ReportAllocs()
			var last time.Time
			ctx := context.Background()
			for b.Loop() {
				fr, err := cam.Next(ctx, last)
				if err != nil {
					b.Fatal(err)
				}
				last = fr.Time
				fr.Release()
			}
		})
	}
}

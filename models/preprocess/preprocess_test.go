package preprocess

import (
	"image"
	"image/color"
	"math"
	"slices"
	"strings"
	"testing"
)

func gradient(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, color.RGBA{uint8(x), uint8(y), uint8(255 - x), 255})
		}
	}
	return img
}

func TestFillSameSizeIsExact(t *testing.T) {
	img := gradient(32, 16)
	dst := make([]float32, 3*32*16)
	if err := Fill(dst, img, Spec{Width: 32, Height: 16, Channels: 3}); err != nil {
		t.Fatal(err)
	}
	for y := range 16 {
		for x := range 32 {
			o := y*32 + x
			if got, want := dst[o], float32(x)/255; math.Abs(float64(got-want)) > 1e-6 {
				t.Fatalf("R(%d,%d) = %v, want %v", x, y, got, want)
			}
			if got, want := dst[512+o], float32(y)/255; math.Abs(float64(got-want)) > 1e-6 {
				t.Fatalf("G(%d,%d) = %v, want %v", x, y, got, want)
			}
		}
	}
}

func TestFillDownscaleKeepsLinearGradient(t *testing.T) {
	// A linear ramp stays linear under half-pixel resampling: output x maps
	// to source (x+0.5)·4 − 0.5, away from the clamped border.
	img := gradient(128, 8)
	dst := make([]float32, 32*2)
	if err := Fill(dst, img, Spec{Width: 32, Height: 2, Channels: 1}); err != nil {
		t.Fatal(err)
	}
	for x := 1; x < 31; x++ {
		// 4×4 blocks are averaged first: block x covers source 4x..4x+3.
		src := (float64(x)+0.5)*4 - 0.5
		wantGrey := (0.299*src + 0.587*1.5 + 0.114*(255-src)) / 255
		if math.Abs(float64(dst[x])-wantGrey) > 2e-3 {
			t.Errorf("grey(%d) = %v, want %v", x, dst[x], wantGrey)
		}
	}
}

func TestFillCropAndWarp(t *testing.T) {
	img := gradient(64, 64)
	dst := make([]float32, 3*16*16)
	// Crop (10,20)-(26,36), shifted by +3 px in x by the warp.
	warp := Affine{{1, 0, 3}, {0, 1, 0}}
	if err := Fill(dst, img, Spec{Width: 16, Height: 16, Channels: 3, Crop: image.Rect(10, 20, 26, 36), Warp: &warp}); err != nil {
		t.Fatal(err)
	}
	if got, want := dst[5*16+4]*255, float32(10+4+3); math.Abs(float64(got-want)) > 1e-3 {
		t.Errorf("R = %v, want %v", got, want)
	}
	if got, want := dst[256+5*16+4]*255, float32(20+5); math.Abs(float64(got-want)) > 1e-3 {
		t.Errorf("G = %v, want %v", got, want)
	}
}

func TestFillGenericImageMatchesFastPath(t *testing.T) {
	img := gradient(40, 30)
	fast := make([]float32, 3*20*12)
	slow := make([]float32, 3*20*12)
	spec := Spec{Width: 20, Height: 12, Channels: 3}
	if err := Fill(fast, img, spec); err != nil {
		t.Fatal(err)
	}
	ycc := image.NewNRGBA64(img.Bounds()) // no fast path
	for y := range 30 {
		for x := range 40 {
			ycc.Set(x, y, img.At(x, y))
		}
	}
	if err := Fill(slow, ycc, spec); err != nil {
		t.Fatal(err)
	}
	for i := range fast {
		if math.Abs(float64(fast[i]-slow[i])) > 1e-6 {
			t.Fatalf("value %d: fast %v, generic %v", i, fast[i], slow[i])
		}
	}
}

func TestFillAllocatesNothing(t *testing.T) {
	img := gradient(640, 480)
	dst := make([]float32, 3*256*256)
	spec := Spec{Width: 256, Height: 256, Channels: 3, Crop: image.Rect(0, 0, 480, 480)}
	var p Preparer
	_ = p.Fill(dst, img, spec)
	if n := testing.AllocsPerRun(3, func() { _ = p.Fill(dst, img, spec) }); n != 0 {
		t.Errorf("Fill allocates %v times per call", n)
	}
}

func TestFillErrors(t *testing.T) {
	img := gradient(8, 8)
	for _, tc := range []struct {
		spec Spec
		n    int
		want string
	}{
		{Spec{Width: 0, Height: 4, Channels: 3}, 0, "must be positive"},
		{Spec{Width: 4, Height: 4, Channels: 2}, 32, "2 channels"},
		{Spec{Width: 4, Height: 4, Channels: 3}, 10, "tensor has 10 values, want 48"},
		{Spec{Width: 4, Height: 4, Channels: 1, Crop: image.Rect(4, 4, 12, 12)}, 16, "outside"},
	} {
		err := Fill(make([]float32, tc.n), img, tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Fill(%+v) error %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func BenchmarkFill720pTo256(b *testing.B) {
	img := gradient(1280, 720)
	dst := make([]float32, 3*256*256)
	spec := Spec{Width: 256, Height: 256, Channels: 3, Crop: image.Rect(280, 0, 1000, 720)}
	var p Preparer
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Fill(dst, img, spec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFillWarp256(b *testing.B) {
	img := gradient(256, 256)
	dst := make([]float32, 3*256*256)
	warp := Affine{{0.999, -0.02, 3}, {0.02, 0.999, -2}}
	spec := Spec{Width: 256, Height: 256, Channels: 3, Warp: &warp}
	var p Preparer
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Fill(dst, img, spec); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAffineInvert(t *testing.T) {
	a := Affine{{0.8, -0.6, 12}, {0.6, 0.8, -5}}
	inv, err := a.Invert()
	if err != nil {
		t.Fatal(err)
	}
	// a·inv·p = p for a few points.
	for _, p := range [][2]float64{{0, 0}, {10, -3}, {255, 128}} {
		x := inv[0][0]*p[0] + inv[0][1]*p[1] + inv[0][2]
		y := inv[1][0]*p[0] + inv[1][1]*p[1] + inv[1][2]
		bx := a[0][0]*x + a[0][1]*y + a[0][2]
		by := a[1][0]*x + a[1][1]*y + a[1][2]
		if math.Abs(bx-p[0]) > 1e-9 || math.Abs(by-p[1]) > 1e-9 {
			t.Errorf("a·inv·%v = (%v, %v)", p, bx, by)
		}
	}
	if _, err := (Affine{{1, 2, 0}, {2, 4, 0}}).Invert(); err == nil || !strings.Contains(err.Error(), "singular") {
		t.Errorf("singular matrix: err = %v", err)
	}
}

// TestFillAveragesEachAxis: a crop reduced 8× across and 2× down (a part
// cropped long and stretched to a square input) is averaged 8 pixels wide
// and 2 high — each output pixel is exactly the mean of its 8×2 footprint
// — not by the smaller factor alone, which would leave fine texture
// aliased along x.
func TestFillAveragesEachAxis(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 512, 128))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 7919 % 251) // fine, irregular texture
	}
	spec := Spec{Width: 64, Height: 64, Channels: 1}
	dst := make([]float32, spec.Len())
	if err := Fill(dst, src, spec); err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for y := range 64 {
		for x := range 64 {
			var sum float64
			for yy := 2 * y; yy < 2*y+2; yy++ {
				for xx := 8 * x; xx < 8*x+8; xx++ {
					sum += float64(src.Pix[yy*src.Stride+xx])
				}
			}
			worst = math.Max(worst, math.Abs(float64(dst[y*64+x])-sum/16/255))
		}
	}
	if worst > 1e-5 {
		t.Errorf("output differs from the mean of its 8×2 footprint by up to %.3g", worst)
	}
}

// TestToFrame: a shift by whole heatmap pixels comes back exactly, the
// parts it brought from outside the crop are 0, the identity changes
// nothing, and a turn followed by ToFrame returns a smooth map to where it
// was (within the resampling's blur).
func TestToFrame(t *testing.T) {
	const w, h, cw, ch = 16, 12, 64, 48 // 4 crop pixels per heatmap pixel
	heat := make([]float32, w*h)
	for i := range heat {
		heat[i] = float32(i%w) + 100*float32(i/w)
	}
	dst := make([]float32, w*h)
	shift := Affine{{1, 0, 8}, {0, 1, -4}} // aligned (x, y) samples the crop at (x+8, y−4): 2 columns right, 1 row up
	if err := ToFrame(dst, heat, w, h, shift, cw, ch); err != nil {
		t.Fatal(err)
	}
	for y := range h {
		for x := range w {
			// Crop pixel (x, y) was aligned pixel (x−2, y+1).
			want := float32(0)
			if x-2 >= 0 && y+1 < h {
				want = heat[(y+1)*w+x-2]
			}
			if dst[y*w+x] != want {
				t.Fatalf("(%d,%d) = %v, want %v", x, y, dst[y*w+x], want)
			}
		}
	}
	if err := ToFrame(dst, heat, w, h, IdentityAffine(), cw, ch); err != nil || !slices.Equal(dst, heat) {
		t.Errorf("identity: %v, changed the map", err)
	}
	if err := ToFrame(dst, heat, w, h, Affine{}, cw, ch); err == nil {
		t.Error("a singular warp was accepted")
	}
	// A turn about the centre and back: the centre of a smooth map
	// returns to within a few per cent.
	smooth := make([]float32, 64*64)
	for i := range smooth {
		x, y := float64(i%64), float64(i/64)
		smooth[i] = float32(math.Exp(-((x-32)*(x-32) + (y-30)*(y-30)) / 200))
	}
	turn := Transform{Theta: 0.3}.Pixel(256, 256)
	img := image.NewGray(image.Rect(0, 0, 256, 256))
	for y := range 256 {
		for x := range 256 {
			img.Pix[y*256+x] = uint8(255 * smooth[(y/4)*64+x/4])
		}
	}
	aligned := make([]float32, 64*64)
	if err := Fill(aligned, img, Spec{Width: 64, Height: 64, Channels: 1, Warp: &turn}); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, 64*64)
	if err := ToFrame(back, aligned, 64, 64, turn, 256, 256); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]int{{32, 30}, {28, 34}, {36, 26}} {
		i := p[1]*64 + p[0]
		if math.Abs(float64(back[i]-smooth[i])) > 0.05 {
			t.Errorf("turned and back at %v: %.3f, want %.3f", p, back[i], smooth[i])
		}
	}
}

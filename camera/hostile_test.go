package camera

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// pngClaiming is a tiny PNG (69 bytes) whose header claims width×height
// 8-bit RGB pixels: signature, IHDR, one IDAT of a few compressed bytes,
// IEND. Decoding it would allocate width×height×3 bytes.
func pngClaiming(t testing.TB, width, height uint32) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		b.WriteString(typ)
		b.Write(data)
		_ = binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], width)
	binary.BigEndian.PutUint32(ihdr[4:], height)
	ihdr[8], ihdr[9] = 8, 2 // 8 bits, RGB
	chunk("IHDR", ihdr)
	// A zlib stream holding one stored byte: the first row's filter byte.
	chunk("IDAT", []byte("\x78\x01\x01\x01\x00\xfe\xff\x00\x00\x01\x00\x01"))
	chunk("IEND", nil)
	return b.Bytes()
}

// bmpClaiming is a 24-bit BMP with a 54-byte BITMAPINFOHEADER claiming
// width×height (a negative height means rows stored top-down), followed
// by one row of pixels.
func bmpClaiming(width, height int32) []byte {
	h := make([]byte, 54+12)
	copy(h, "BM")
	binary.LittleEndian.PutUint32(h[2:], uint32(len(h)))
	binary.LittleEndian.PutUint32(h[10:], 54)
	binary.LittleEndian.PutUint32(h[14:], 40)
	binary.LittleEndian.PutUint32(h[18:], uint32(width))
	binary.LittleEndian.PutUint32(h[22:], uint32(height))
	binary.LittleEndian.PutUint16(h[26:], 1)
	binary.LittleEndian.PutUint16(h[28:], 24)
	return h
}

// encodePNG returns a width×height PNG of noise (slow to decode) whose
// pixel (0,0) is imageColour(tag, 0, 0).
func encodePNG(t testing.TB, width, height, tag int, noise bool) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	r := rand.New(rand.NewPCG(uint64(tag), 1))
	for y := range height {
		for x := range width {
			c := imageColour(tag, x, y)
			if noise {
				c = color.RGBA{uint8(r.Uint32()), uint8(r.Uint32()), uint8(r.Uint32()), 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	img.SetRGBA(0, 0, imageColour(tag, 0, 0))
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func mkfifo(t testing.TB, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// skipLog collects what OnSkip reports.
type skipLog struct {
	mu    sync.Mutex
	skips []*ImageError
}

func (l *skipLog) add(e *ImageError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.skips = append(l.skips, e)
}

func (l *skipLog) all() []*ImageError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.skips)
}

// TestHostileImagesAreSkippedInOrder replays a directory of good images
// among hostile files (issue 24, findings 2, 4 and 15): a 69-byte PNG
// claiming 100,000², a BMP with a height of -2e9, an empty file, a
// truncated PNG, a named pipe, a symbolic link to /dev/zero, a text file
// named .jpg and a file removed after the directory was listed. The
// process survives (OpenCV is never asked to decode the huge ones), every
// bad file is skipped with a report naming it, the good ones (one through a
// symbolic link) arrive once each in name order, and the replay without
// loop ends after the last file with no reopening.
func TestHostileImagesAreSkippedInOrder(t *testing.T) {
	dir := t.TempDir()
	elsewhere := t.TempDir()
	good := func(tag int) []byte { return encodePNG(t, 16, 12, tag, false) }
	truncated := encodePNG(t, 64, 64, 9, true)
	truncated = truncated[:len(truncated)/2]
	writeFile(t, filepath.Join(dir, "000.png"), good(0))
	writeFile(t, filepath.Join(dir, "001.png"), nil)
	bomb := pngClaiming(t, 100000, 100000)
	if len(bomb) != 69 {
		t.Fatalf("the PNG claiming 100000² is %d bytes, want 69", len(bomb))
	}
	writeFile(t, filepath.Join(dir, "002.png"), bomb)
	writeFile(t, filepath.Join(dir, "003.png"), truncated)
	writeFile(t, filepath.Join(dir, "004.bmp"), bmpClaiming(1, -2_000_000_000))
	writeFile(t, filepath.Join(dir, "005.png"), good(1))
	mkfifo(t, filepath.Join(dir, "006.png"))
	symlink(t, "/dev/zero", filepath.Join(dir, "007.png"))
	writeFile(t, filepath.Join(elsewhere, "good.png"), good(2))
	symlink(t, filepath.Join(elsewhere, "good.png"), filepath.Join(dir, "008.png"))
	writeFile(t, filepath.Join(dir, "009.jpg"), []byte("not an image at all"))
	writeFile(t, filepath.Join(dir, "010.png"), good(7))
	writeFile(t, filepath.Join(dir, "011.PNG"), good(3))

	cfg := testConfig("images")
	cfg.Path = dir
	cam, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { cam.Close() })
	skips := &skipLog{}
	cam.OnSkip(skips.add)
	if err := cam.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Removed after listing, before the reader gets to it.
	if err := os.Remove(filepath.Join(dir, "010.png")); err != nil {
		t.Fatal(err)
	}

	var got []uint8
	var last time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		f, err := cam.Next(ctx, last)
		cancel()
		if errors.Is(err, inspection.ErrEndOfStream) {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d frames: %v", len(got), err)
		}
		if len(got) > 10 {
			t.Fatalf("more than 10 frames from 4 good images: the replay restarted (red per frame %v)", got)
		}
		got = append(got, f.Image.(*preprocess.BGR).Pix[2])
		last = f.Time
		f.Release()
	}
	want := []uint8{imageColour(0, 0, 0).R, imageColour(1, 0, 0).R, imageColour(2, 0, 0).R, imageColour(3, 0, 0).R}
	if !slices.Equal(got, want) {
		t.Errorf("red of each frame %v, want %v (images 000, 005, 008 via a link, 011 once each, in order)", got, want)
	}
	if st := cam.Stats(); st.Reconnects != 0 || st.Captured != 4 {
		t.Errorf("stats %+v, want 4 captured and no reopening", st)
	}
	if st := cam.Status(); !strings.Contains(st.Detail, "end of replay after 4 frames") {
		t.Errorf("status %+v, want the end of the replay after 4 frames", st)
	}

	wantSkips := []struct {
		file, reason string
		w, h         int64
	}{
		{"001.png", "is empty (0 bytes)", 0, 0},
		{"002.png", "its PNG header claims 100000x100000 pixels (10000000000), more than camera.max_pixels 67108864", 100000, 100000},
		{"003.png", "holds PNG data OpenCV could not decode (truncated or corrupt)", 64, 64},
		{"004.bmp", "its BMP header claims 1x2000000000 pixels; OpenCV decodes at most 1048576 per side", 1, 2000000000},
		{"006.png", "is a named pipe (FIFO), not a regular file", 0, 0},
		{"007.png", "is a symbolic link to /dev/zero, a character device, not a regular file", 0, 0},
		{"009.jpg", `is not a PNG, JPEG or BMP file (it starts with "not an i")`, 0, 0},
		{"010.png", "no longer exists (removed after the directory was listed)", 0, 0},
	}
	gotSkips := skips.all()
	if n := cam.Skipped(); n != uint64(len(wantSkips)) || len(gotSkips) != len(wantSkips) {
		t.Errorf("Skipped() = %d, OnSkip saw %d, want %d", n, len(gotSkips), len(wantSkips))
	}
	for i, w := range wantSkips {
		if i >= len(gotSkips) {
			break
		}
		g := gotSkips[i]
		if g.Path != filepath.Join(dir, w.file) || g.Reason != w.reason || g.Width != w.w || g.Height != w.h {
			t.Errorf("skip %d = %q (%dx%d)\nwant %s: %s (%dx%d)", i, g.Error(), g.Width, g.Height, w.file, w.reason, w.w, w.h)
		}
	}
}

// TestImageHeaderChecks checks the header reading and the refusals'
// text, file by file, without decoding anything.
func TestImageHeaderChecks(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	core := make([]byte, 26)
	copy(core, "BM")
	binary.LittleEndian.PutUint32(core[14:], 12)
	binary.LittleEndian.PutUint16(core[18:], 640)
	binary.LittleEndian.PutUint16(core[20:], 480)
	odd := bmpClaiming(4, 4)
	binary.LittleEndian.PutUint32(odd[14:], 20)
	jpegHuge := []byte("\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xda\x00\x08")
	writeFile(t, path("ok.png"), encodePNG(t, 8, 6, 1, false))
	writeFile(t, path("bomb40k.png"), pngClaiming(t, 40000, 40000))
	writeFile(t, path("wide.png"), pngClaiming(t, 2_000_000, 1))
	writeFile(t, path("topdown.bmp"), bmpClaiming(640, -480))
	writeFile(t, path("negwidth.bmp"), bmpClaiming(-5, 5))
	writeFile(t, path("core.bmp"), core)
	writeFile(t, path("odd.bmp"), odd)
	writeFile(t, path("short.bmp"), []byte("BM\x00\x00"))
	writeFile(t, path("huge.jpg"), jpegHuge)
	writeFile(t, path("sig.png"), []byte("\x89PNG\r\n\x1a\n\x00\x00"))
	writeFile(t, path("tiff.png"), []byte("II*\x00rest"))
	symlink(t, path("missing.png"), path("dangling.png"))
	symlink(t, dir, path("dirlink.png"))

	tests := []struct {
		name, want string
		maxPixels  int
	}{
		{"ok.png", "", config.DefaultMaxPixels},
		{"ok.png", "ok.png: its PNG header claims 8x6 pixels (48), more than camera.max_pixels 47", 47},
		{"bomb40k.png", "its PNG header claims 40000x40000 pixels (1600000000), more than camera.max_pixels 67108864", config.DefaultMaxPixels},
		{"wide.png", "its PNG header claims 2000000x1 pixels; OpenCV decodes at most 1048576 per side", config.DefaultMaxPixels},
		{"topdown.bmp", "", config.DefaultMaxPixels},
		{"topdown.bmp", "its BMP header claims 640x480 pixels (307200), more than camera.max_pixels 1000", 1000},
		{"negwidth.bmp", "its BMP header claims -5x5 pixels", config.DefaultMaxPixels},
		{"core.bmp", "its BMP header claims 640x480 pixels (307200), more than camera.max_pixels 1000", 1000},
		{"odd.bmp", "has an unreadable BMP header (info header of 20 bytes; OpenCV reads 12, or 36 and more)", config.DefaultMaxPixels},
		{"short.bmp", "has an unreadable BMP header (truncated file header)", config.DefaultMaxPixels},
		{"huge.jpg", "its JPEG header claims 65535x65535 pixels (4294836225), more than camera.max_pixels 67108864", config.DefaultMaxPixels},
		{"sig.png", "has an unreadable PNG header (unexpected EOF)", config.DefaultMaxPixels},
		{"tiff.png", `is not a PNG, JPEG or BMP file (it starts with "II*\x00rest")`, config.DefaultMaxPixels},
		{"dangling.png", "is a symbolic link to " + path("missing.png") + ", which does not exist", config.DefaultMaxPixels},
		{"dirlink.png", "is a symbolic link to " + dir + ", a directory, not a regular file", config.DefaultMaxPixels},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d", tc.name, tc.maxPixels), func(t *testing.T) {
			err := probeImage(path(tc.name), tc.maxPixels)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("probeImage = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path(tc.name)+": ") {
				t.Fatalf("probeImage = %v\nwant %s: %s", err, path(tc.name), tc.want)
			}
		})
	}
}

// TestOversizedFileIsNotRead: a file past 4 bytes per allowed pixel plus
// slack is refused from its size, before it is read.
func TestOversizedFileIsNotRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.bmp")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bmpClaiming(100, 100)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxFileBytes(10000) + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	want := fmt.Sprintf("%s: is %d bytes, more than the %d read for an image within camera.max_pixels 10000", path, maxFileBytes(10000)+1, maxFileBytes(10000))
	if err := probeImage(path, 10000); err == nil || err.Error() != want {
		t.Fatalf("probeImage = %v\nwant %s", err, want)
	}
	var buf []byte
	_, err = readImage(path, 10000, &buf, &bufferPool{}, nil)
	if err == nil || err.Error() != want || cap(buf) != 0 {
		t.Fatalf("readImage = %v (read %d bytes)\nwant %s, nothing read", err, cap(buf), want)
	}
}

// TestSlowDecodeIsWaitedFor (finding 11): an image whose decode outlasts
// read_timeout is waited for, not abandoned and started again beside a
// fresh decode. Abandoned decodes piled up to 7.1 GB on a decompression
// bomb; here each image is decoded once, one at a time, none is lost, and
// the camera never reopens.
func TestSlowDecodeIsWaitedFor(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("%03d.png", i)), encodePNG(t, 1200, 1200, i, true))
	}
	decodes.max.Store(0)
	cfg := testConfig("images")
	cfg.Path = dir
	cfg.ReadTimeout = config.Dur(time.Millisecond) // every decode takes longer
	cam, states := startCamera(t, cfg)
	var got []uint8
	var last time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f, err := cam.Next(ctx, last)
		cancel()
		if errors.Is(err, inspection.ErrEndOfStream) {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d frames: %v", len(got), err)
		}
		got = append(got, f.Image.(*preprocess.BGR).Pix[2])
		last = f.Time
		f.Release()
	}
	want := []uint8{imageColour(0, 0, 0).R, imageColour(1, 0, 0).R, imageColour(2, 0, 0).R}
	if !slices.Equal(got, want) {
		t.Errorf("red of each frame %v, want %v: each image once, in order", got, want)
	}
	if st := cam.Stats(); st.Reconnects != 0 || st.Captured != 3 {
		t.Errorf("stats %+v, want 3 frames and no reopening", st)
	}
	if n := decodes.max.Load(); n != 1 {
		t.Errorf("%d decodes ran at once, want 1", n)
	}
	if !slices.Contains(states.states(), inspection.CameraStalled) {
		t.Errorf("state changes %v: a decode past read_timeout should show as stalled", states.states())
	}
	states.mu.Lock()
	changes := slices.Clone(states.changes)
	states.mu.Unlock()
	for _, c := range changes {
		if c.State == inspection.CameraStalled && !strings.Contains(c.Detail, "still reading or decoding a file, waiting for it") {
			t.Errorf("stalled detail %q", c.Detail)
		}
	}
}

// TestOneDecodeAtATime: however many readers ask at once, one image is
// read and decoded at a time in the process.
func TestOneDecodeAtATime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "noise.png")
	writeFile(t, path, encodePNG(t, 800, 800, 0, true))
	decodes.max.Store(0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			pool := &bufferPool{}
			for range 3 {
				img, err := readImage(path, config.DefaultMaxPixels, &buf, pool, nil)
				if err != nil {
					t.Error(err)
					return
				}
				pool.put(img)
			}
		}()
	}
	wg.Wait()
	if n := decodes.max.Load(); n != 1 {
		t.Errorf("%d decodes ran at once, want 1", n)
	}
}

// TestReplayOfUndecodableFilesBacksOff: a looping replay whose files all
// pass the header check but none decodes reports it and reopens with a
// growing backoff rather than every 100 ms.
func TestReplayOfUndecodableFilesBacksOff(t *testing.T) {
	dir := t.TempDir()
	broken := encodePNG(t, 64, 64, 1, true)
	broken = broken[:len(broken)/2]
	writeFile(t, filepath.Join(dir, "a.png"), broken)
	writeFile(t, filepath.Join(dir, "b.png"), broken)
	cfg := testConfig("images")
	cfg.Path, cfg.Loop = dir, true
	cam, _ := startCamera(t, cfg)
	waitState(t, cam, inspection.CameraReconnecting, 3*time.Second)
	if d := cam.Status().Detail; !strings.Contains(d, "none of the 2 image files could be replayed (the last: "+filepath.Join(dir, "b.png")+": holds PNG data OpenCV could not decode") {
		t.Errorf("detail %q", d)
	}
	time.Sleep(time.Second)
	// Reopened after 100, 200, 400, 800 ms: at most 5 passes of 2 files
	// (with the backoff starting again at 100 ms each time, 10 or more).
	if n := cam.Skipped(); n < 2 || n > 10 {
		t.Errorf("Skipped() = %d in ~1 s, want a few passes of 2 files, backing off", n)
	}
}

// TestCheckSource (finding 14): what New refuses, CheckSource refuses with
// the same words, without building a camera; an image directory needs
// one file with a readable header within camera.max_pixels.
func TestCheckSource(t *testing.T) {
	good := t.TempDir()
	writePNGs(t, good, 1, 4, 4)
	mixed := t.TempDir()
	writeFile(t, filepath.Join(mixed, "0.png"), nil)
	writeFile(t, filepath.Join(mixed, "1.png"), encodePNG(t, 4, 4, 0, false))
	bad := t.TempDir()
	writeFile(t, filepath.Join(bad, "a.png"), nil)
	writeFile(t, filepath.Join(bad, "b.png"), pngClaiming(t, 100000, 100000))
	mkfifo(t, filepath.Join(bad, "c.png"))
	symlink(t, "/dev/zero", filepath.Join(bad, "d.bmp"))
	other := t.TempDir()
	fifo := filepath.Join(other, "clip.avi")
	mkfifo(t, fifo)
	zero := filepath.Join(other, "zero.avi")
	symlink(t, "/dev/zero", zero)

	tests := []struct {
		name string
		edit func(*config.Camera)
		want string
	}{
		{"good images", func(c *config.Camera) { c.Source, c.Path = "images", good }, ""},
		{"one good image among bad", func(c *config.Camera) { c.Source, c.Path = "images", mixed }, ""},
		{"nothing replayable", func(c *config.Camera) { c.Source, c.Path = "images", bad }, "camera.path: none of the 4 image files in " + bad + " can be replayed: " +
			bad + "/a.png: is empty (0 bytes); " +
			bad + "/b.png: its PNG header claims 100000x100000 pixels (10000000000), more than camera.max_pixels 67108864; " +
			bad + "/c.png: is a named pipe (FIFO), not a regular file; and 1 more"},
		{"images past max_pixels", func(c *config.Camera) { c.Source, c.Path, c.MaxPixels = "images", good, 15 }, "camera.path: none of the 1 image files in " + good + " can be replayed: " +
			good + "/000.png: its PNG header claims 4x4 pixels (16), more than camera.max_pixels 15"},
		{"video file is a FIFO", func(c *config.Camera) { c.Source, c.Path = "file", fifo }, `camera.path: ` + fifo + ` is a named pipe (FIFO), not a regular file; source "file" needs a video file`},
		{"video file links to a device", func(c *config.Camera) { c.Source, c.Path = "file", zero }, `camera.path: ` + zero + ` is a symbolic link to /dev/zero, a character device, not a regular file; source "file" needs a video file`},
		{"max_pixels zero", func(c *config.Camera) { c.Source, c.Path, c.MaxPixels = "images", good, 0 }, "camera.max_pixels: 0 is out of range; allowed 1 to 1073741824 pixels per frame"},
		{"zero read timeout", func(c *config.Camera) { c.Source, c.Path, c.ReadTimeout = "images", good, config.Duration{} }, "camera.read_timeout 0s and camera.open_timeout 5s must be positive"},
		{"unknown source", func(c *config.Camera) { c.Source = "usb" }, `camera.source: "usb" is not one of v4l2, gstreamer, rtsp, file, images`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("")
			tc.edit(&cfg)
			err := CheckSource(cfg)
			cam, newErr := New(cfg, nil)
			if cam != nil {
				cam.Close()
			}
			if tc.want == "" {
				if err != nil || newErr != nil {
					t.Fatalf("CheckSource = %v, New = %v; want both nil", err, newErr)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("CheckSource = %v\nwant %s", err, tc.want)
			}
			if newErr == nil || newErr.Error() != err.Error() {
				t.Errorf("New = %v, want the same error as CheckSource", newErr)
			}
		})
	}
}

// TestErrorsSayCameraOnce (finding 15): the daemon prefixes the camera's
// errors with "camera: "; the camera's own errors must not, or the
// operator reads "camera: camera: open ...".
func TestErrorsSayCameraOnce(t *testing.T) {
	cfg := testConfig("v4l2")
	cfg.Device = "/dev/video97"
	cam, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	startErr := cam.Start(context.Background())
	cfg.ReadTimeout = config.Duration{}
	_, newErr := New(cfg, nil)
	for _, err := range []error{startErr, newErr} {
		if err == nil {
			t.Fatal("want an error")
		}
		if strings.HasPrefix(err.Error(), "camera: ") {
			t.Errorf("%q: the caller adds \"camera: \"", err)
		}
	}
	if shown := fmt.Errorf("camera: %w", startErr).Error(); shown != "camera: open v4l2 /dev/video97: device /dev/video97 does not exist (camera not connected?)" {
		t.Errorf("as the daemon shows it: %q", shown)
	}
}

// TestVideoFramesPastMaxPixelsRefused (finding 2, source "file"): the
// frame size the capture reports is checked before the first read.
func TestVideoFramesPastMaxPixelsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clip.avi")
	writeAVI(t, path, 3, 64, 48, 25)
	cfg := testConfig("file")
	cfg.Path, cfg.MaxPixels = path, 3000
	cam, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	err = cam.Start(context.Background())
	want := "open file " + path + ": its frames are 64x48 pixels (3072), more than camera.max_pixels 3000"
	if err == nil || err.Error() != want {
		t.Fatalf("Start = %v\nwant %s", err, want)
	}
}

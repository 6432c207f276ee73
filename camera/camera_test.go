package camera

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

func TestNewRejectsWhatConfigCannotCheck(t *testing.T) {
	dir := t.TempDir()
	empty := t.TempDir()
	writePNGs(t, dir, 1, 4, 4)
	if err := os.WriteFile(filepath.Join(empty, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*config.Camera)
		want string
	}{
		{"unknown source", func(c *config.Camera) { c.Source = "usb" }, `camera.source: "usb" is not one of`},
		{"images dir missing", func(c *config.Camera) { c.Source, c.Path = "images", filepath.Join(dir, "nope") }, "camera.path: open " + filepath.Join(dir, "nope")},
		{"images dir without images", func(c *config.Camera) { c.Source, c.Path = "images", empty }, "camera.path: " + empty + " holds no .png, .jpg, .jpeg or .bmp files"},
		{"file missing", func(c *config.Camera) { c.Source, c.Path = "file", filepath.Join(dir, "x.avi") }, "camera.path: stat "},
		{"file is a directory", func(c *config.Camera) { c.Source, c.Path = "file", dir }, `is a directory; source "file" needs a video file`},
		{"pipeline without appsink", func(c *config.Camera) { c.Source, c.Pipeline = "gstreamer", "videotestsrc ! fakesink" }, `camera.pipeline: "videotestsrc ! fakesink" has no appsink`},
		{"empty pipeline", func(c *config.Camera) { c.Source = "gstreamer" }, "camera.pipeline: must not be empty"},
		{"rtsp url not rtsp", func(c *config.Camera) { c.Source, c.URL = "rtsp", "http://cam/x" }, `camera.url: "http://cam/x" is not an rtsp://`},
		{"v4l2 without device", func(c *config.Camera) { c.Source = "v4l2" }, "camera.device: must not be empty"},
		{"zero read timeout", func(c *config.Camera) { c.Source, c.Path, c.ReadTimeout = "images", dir, config.Duration{} }, "camera.read_timeout 0s and camera.open_timeout 5s must be positive"},
		{"zero open timeout", func(c *config.Camera) { c.Source, c.Path, c.OpenTimeout = "images", dir, config.Duration{} }, "camera.read_timeout 1s and camera.open_timeout 0s must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("")
			tc.edit(&cfg)
			_, err := New(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestImagesReplayInNameOrderWithBGRPixels(t *testing.T) {
	const n, w, h = 5, 32, 24
	dir := t.TempDir()
	writePNGs(t, dir, n, w, h)
	cfg := testConfig("images")
	cfg.Path = dir // fps 0: one image per Next, none dropped
	cam, states := startCamera(t, cfg)

	var last time.Time
	for i := range n {
		f := next(t, cam, last, 2*time.Second)
		if f.Seq != uint64(i+1) {
			t.Errorf("frame %d: Seq = %d", i, f.Seq)
		}
		bgr, ok := f.Image.(*preprocess.BGR)
		if !ok {
			t.Fatalf("frame image is %T, want *preprocess.BGR", f.Image)
		}
		if got := bgr.Bounds().Size(); got.X != w || got.Y != h {
			t.Fatalf("frame size %v, want %dx%d", got, w, h)
		}
		for _, p := range [][2]int{{0, 0}, {w - 1, 0}, {5, h - 1}, {w - 1, h - 1}} {
			want := imageColour(i, p[0], p[1])
			o := bgr.PixOffset(p[0], p[1])
			if got := [3]uint8{bgr.Pix[o], bgr.Pix[o+1], bgr.Pix[o+2]}; got != [3]uint8{want.B, want.G, want.R} {
				t.Fatalf("frame %d pixel %v = BGR %v, want %v", i, p, got, [3]uint8{want.B, want.G, want.R})
			}
		}
		last = f.Time
		f.Release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := cam.Next(ctx, last); !errors.Is(err, inspection.ErrEndOfStream) {
		t.Fatalf("Next after the last image = %v, want ErrEndOfStream", err)
	}
	st := cam.Stats()
	if st.Captured != n || st.Delivered != n || st.Dropped != 0 {
		t.Errorf("stats %+v, want %d captured and delivered, none dropped", st, n)
	}
	if got := cam.Status(); got.State != inspection.CameraOffline || !strings.Contains(got.Detail, "end of replay after 5 frames") {
		t.Errorf("status %+v, want offline at the end of the replay", got)
	}
	if got, want := states.states(), []inspection.CameraState{inspection.CameraOnline, inspection.CameraOffline}; !slices.Equal(got, want) {
		t.Errorf("state changes %v, want %v", got, want)
	}
}

func TestImagesLoop(t *testing.T) {
	dir := t.TempDir()
	writePNGs(t, dir, 3, 8, 8)
	cfg := testConfig("images")
	cfg.Path, cfg.Loop = dir, true
	cam, _ := startCamera(t, cfg)
	var last time.Time
	for i := range 8 {
		f := next(t, cam, last, 2*time.Second)
		bgr := f.Image.(*preprocess.BGR)
		if got, want := bgr.Pix[2], imageColour(i%3, 0, 0).R; got != want {
			t.Fatalf("frame %d: red %d, want %d (image %d)", i, got, want, i%3)
		}
		last = f.Time
		f.Release()
	}
}

func TestImagesPacedAtFPS(t *testing.T) {
	dir := t.TempDir()
	writePNGs(t, dir, 4, 8, 8)
	cfg := testConfig("images")
	cfg.Path, cfg.Loop, cfg.FPS = dir, true, 20
	cam, _ := startCamera(t, cfg)
	first := next(t, cam, time.Time{}, 2*time.Second)
	last := first.Time
	first.Release()
	const frames = 10
	for range frames {
		f := next(t, cam, last, 2*time.Second)
		last = f.Time
		f.Release()
	}
	perFrame := last.Sub(first.Time) / frames
	if perFrame < 40*time.Millisecond || perFrame > 65*time.Millisecond {
		t.Errorf("%s per frame at fps 20, want ~50ms", perFrame)
	}
}

func TestROICheckedAgainstFrameSize(t *testing.T) {
	dir := t.TempDir()
	writePNGs(t, dir, 1, 64, 48)
	for _, tc := range []struct {
		roi  config.ROI
		want string
	}{
		{config.ROI{}, ""},
		{config.ROI{X: 10, Y: 8, Width: 54, Height: 40}, ""},
		{config.ROI{X: 60, Y: 0, Width: 10, Height: 10}, "camera.roi: x=60 y=0 width=10 height=10 reaches (70,10), outside the 64x48 frame (frames from images "},
	} {
		cfg := testConfig("images")
		cfg.Path, cfg.ROI = dir, tc.roi
		cam, _ := startCamera(t, cfg)
		if err := cam.CheckROI(); err != nil {
			t.Fatalf("CheckROI before the first frame = %v, want nil", err)
		}
		next(t, cam, time.Time{}, 2*time.Second).Release()
		err := cam.CheckROI()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ROI %+v: CheckROI = %v, want %q", tc.roi, err, tc.want)
		}
	}
}

func TestNextBeforeStartAndAfterClose(t *testing.T) {
	dir := t.TempDir()
	writePNGs(t, dir, 1, 4, 4)
	cfg := testConfig("images")
	cfg.Path = dir
	cam, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cam.Next(context.Background(), time.Time{}); err == nil || !strings.Contains(err.Error(), "before Start") {
		t.Errorf("Next before Start = %v", err)
	}
	if err := cam.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	cam.Close()
	cam.Close()
	if _, err := cam.Next(context.Background(), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	if err := cam.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if st := cam.Status(); st.State != inspection.CameraOffline {
		t.Errorf("status after Close %+v", st)
	}
}

const testPattern = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! video/x-raw,format=BGR ! appsink"

func TestGStreamerLiveFrames(t *testing.T) {
	cfg := testConfig("gstreamer")
	cfg.Pipeline = testPattern
	cam, _ := startCamera(t, cfg)

	var last *time.Time
	var prevSeq uint64
	for i := range 5 {
		after := time.Time{}
		if last != nil {
			after = *last
		}
		f := next(t, cam, after, 3*time.Second)
		if f.Seq <= prevSeq {
			t.Fatalf("frame %d: Seq %d after %d", i, f.Seq, prevSeq)
		}
		if !after.IsZero() && !f.Time.After(after) {
			t.Fatalf("frame %d: Time %v not after %v", i, f.Time, after)
		}
		if got := f.Image.Bounds().Size(); got.X != 320 || got.Y != 240 {
			t.Fatalf("frame size %v", got)
		}
		prevSeq = f.Seq
		tm := f.Time
		last = &tm
		f.Release()
	}
	if st := cam.Status(); st.State != inspection.CameraOnline {
		t.Errorf("status %+v, want online", st)
	}

	// Not asking for 300 ms at 30 fps: the camera keeps only the newest frame.
	before := cam.Stats()
	time.Sleep(300 * time.Millisecond)
	f := next(t, cam, *last, time.Second)
	f.Release()
	after := cam.Stats()
	if dropped := after.Dropped - before.Dropped; dropped < 5 {
		t.Errorf("dropped %d frames in 300 ms unread at 30 fps, want ≥5 (stats %+v)", dropped, after)
	}
	if f.Seq-prevSeq < 6 {
		t.Errorf("newest frame Seq %d only %d after %d: not the newest", f.Seq, f.Seq-prevSeq, prevSeq)
	}
	if age := f.Age(time.Now()); age > 100*time.Millisecond {
		t.Errorf("frame age %s after the wait, want the newest", age)
	}
	if after.Captured != after.Delivered+after.Dropped && after.Captured != after.Delivered+after.Dropped+1 {
		t.Errorf("stats do not add up: %+v", after)
	}

	// A frame from the future is never returned: Next waits for ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := cam.Next(ctx, time.Now().Add(time.Hour)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next(after the future) = %v, want deadline exceeded", err)
	}
}

func TestOpenErrorsNameTheSource(t *testing.T) {
	// A TCP listener that accepts and never answers makes rtspsrc hang in
	// DESCRIBE, i.e. inside OpenCV's open.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	silentURL := "rtsp://127.0.0.1:" + strings.Split(silent.Addr().String(), ":")[1] + "/cam"

	tests := []struct {
		name    string
		edit    func(*config.Camera)
		timeout time.Duration
		want    string
	}{
		{"missing gstreamer element", func(c *config.Camera) {
			c.Source, c.Pipeline = "gstreamer", "nvarguscamerasrc ! video/x-raw ! appsink"
		}, 3 * time.Second, `open gstreamer pipeline "nvarguscamerasrc ! video/x-raw ! appsink": OpenCV's GStreamer backend could not open it`},
		{"open hangs", func(c *config.Camera) { c.Source, c.URL = "rtsp", silentURL }, time.Second,
			"open " + silentURL + ": timed out after 1s"},
		{"v4l2 device missing", func(c *config.Camera) { c.Source, c.Device = "v4l2", "/dev/video97" }, 3 * time.Second,
			"open v4l2 /dev/video97: device /dev/video97 does not exist (camera not connected?)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("")
			tc.edit(&cfg)
			cfg.OpenTimeout = config.Dur(tc.timeout)
			cam, err := New(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer cam.Close()
			start := time.Now()
			err = cam.Start(context.Background())
			took := time.Since(start)
			if err == nil || err.Error() != tc.want && !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Start = %v\nwant %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if took > tc.timeout+500*time.Millisecond {
				t.Errorf("Start took %s, open_timeout %s", took, tc.timeout)
			}
			if st := cam.Status(); st.State != inspection.CameraOffline || st.Detail != err.Error() {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestV4L2RealDevice(t *testing.T) {
	if _, err := os.Stat("/dev/video0"); err != nil {
		t.Skip("no /dev/video0 on this machine (no camera, no v4l2loopback): real V4L2 capture untested")
	}
	cfg := testConfig("v4l2")
	cfg.Device = "/dev/video0"
	cam, _ := startCamera(t, cfg)
	next(t, cam, time.Time{}, 5*time.Second).Release()
}

func TestFileReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clip.avi")
	const n = 10
	writeAVI(t, path, n, 64, 48, 50)

	t.Run("once", func(t *testing.T) {
		cfg := testConfig("file")
		cfg.Path = path // fps 0: the file's own 50 fps
		cam, _ := startCamera(t, cfg)
		start := time.Now()
		var last time.Time
		var blues []uint8
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			f, err := cam.Next(ctx, last)
			cancel()
			if errors.Is(err, inspection.ErrEndOfStream) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			bgr := f.Image.(*preprocess.BGR)
			blues = append(blues, bgr.Pix[0])
			if g, r := bgr.Pix[1], bgr.Pix[2]; absDiff(g, 100) > 8 || absDiff(r, 200) > 8 {
				t.Fatalf("pixel green %d red %d, want ~100, ~200", g, r)
			}
			last = f.Time
			f.Release()
		}
		took := time.Since(start)
		st := cam.Stats()
		if st.Captured != n {
			t.Errorf("captured %d frames of %d", st.Captured, n)
		}
		if len(blues) < n/2 || !slices.IsSorted(blues) {
			t.Errorf("blue per delivered frame %v: want rising, most of %d frames", blues, n)
		}
		if took < 150*time.Millisecond {
			t.Errorf("10 frames at 50 fps took %s: not paced", took)
		}
	})
	t.Run("loop", func(t *testing.T) {
		cfg := testConfig("file")
		cfg.Path, cfg.Loop, cfg.FPS = path, true, 200
		cam, _ := startCamera(t, cfg)
		var last time.Time
		for range 30 {
			f := next(t, cam, last, 2*time.Second)
			last = f.Time
			f.Release()
		}
		if st := cam.Stats(); st.Captured < 2*n {
			t.Errorf("captured %d frames from a %d-frame looping file", st.Captured, n)
		}
	})
}

func absDiff(a, b uint8) uint8 {
	if a > b {
		return a - b
	}
	return b - a
}

func TestRTSPReconnectsAfterServerKilled(t *testing.T) {
	port := freePort(t)
	srv := startRTSPServer(t, port)
	cfg := testConfig("rtsp")
	cfg.URL = srv.url()
	cam, states := startCamera(t, cfg)
	f := next(t, cam, time.Time{}, 5*time.Second)
	lastSeq, last := f.Seq, f.Time
	f.Release()

	srv.kill()
	took := waitState(t, cam, inspection.CameraReconnecting, 3*time.Second)
	t.Logf("reconnecting %s after SIGKILL: %s", took, cam.Status().Detail)
	srv.start()
	took = waitState(t, cam, inspection.CameraOnline, 15*time.Second)
	t.Logf("online %s after restart", took)
	f = next(t, cam, last, 3*time.Second)
	if f.Seq <= lastSeq {
		t.Errorf("Seq %d after reconnect, was %d", f.Seq, lastSeq)
	}
	f.Release()
	if st := cam.Stats(); st.Reconnects != 1 {
		t.Errorf("stats %+v, want 1 reconnect", st)
	}
	if got := states.states(); !slices.Contains(got, inspection.CameraReconnecting) {
		t.Errorf("state changes %v", got)
	}
}

func TestRTSPStallDetectedAndRecovered(t *testing.T) {
	port := freePort(t)
	srv := startRTSPServer(t, port)
	cfg := testConfig("rtsp")
	cfg.URL = srv.url()
	cfg.OpenTimeout = config.Dur(2 * time.Second)
	cam, states := startCamera(t, cfg)
	f := next(t, cam, time.Time{}, 5*time.Second)
	last := f.Time
	f.Release()

	srv.signal(syscall.SIGSTOP)
	frozen := time.Now()
	// Next with a deadline returns the context's error, not a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	_, err := cam.Next(ctx, time.Now())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next while frozen = %v, want deadline exceeded", err)
	}
	if took := time.Since(frozen); took > 1700*time.Millisecond {
		t.Errorf("Next with a 1.5s deadline returned after %s", took)
	}
	t.Logf("Next while frozen: %v", err)
	waitState(t, cam, inspection.CameraReconnecting, 2*time.Second)
	if got := states.states(); !slices.Contains(got, inspection.CameraStalled) {
		t.Errorf("state changes %v, want stalled before reconnecting", got)
	}
	for _, c := range states.changes {
		if c.State == inspection.CameraStalled {
			if want := "no frame for 1s from " + srv.url(); c.Detail != want {
				t.Errorf("stalled detail %q, want %q", c.Detail, want)
			}
			if d := c.Since.Sub(frozen); d > 1500*time.Millisecond {
				t.Errorf("stalled %s after the freeze, read_timeout 1s", d)
			}
		}
	}

	srv.signal(syscall.SIGCONT)
	took := waitState(t, cam, inspection.CameraOnline, 15*time.Second)
	t.Logf("online %s after SIGCONT", took)
	f = next(t, cam, last, 3*time.Second)
	f.Release()
}

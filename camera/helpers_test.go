package camera

import (
	"bufio"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// testConfig returns a camera configuration with short test deadlines.
func testConfig(source string) config.Camera {
	return config.Camera{
		Source:      source,
		OpenTimeout: config.Dur(5 * time.Second),
		ReadTimeout: config.Dur(time.Second),
		MaxFrameAge: config.Dur(time.Second),
		MaxPixels:   config.DefaultMaxPixels,
	}
}

// testLogger writes the camera's log lines to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startCamera builds and starts a camera that is closed at cleanup.
func startCamera(t testing.TB, cfg config.Camera) (*Camera, *stateLog) {
	t.Helper()
	cam, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	states := &stateLog{}
	cam.Watch(states.add)
	t.Cleanup(func() { cam.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cam.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return cam, states
}

// stateLog records state changes and lets a test wait for one.
type stateLog struct {
	mu      sync.Mutex
	changes []inspection.CameraStatus
}

func (l *stateLog) add(st inspection.CameraStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes = append(l.changes, st)
}

func (l *stateLog) states() []inspection.CameraState {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []inspection.CameraState
	for _, c := range l.changes {
		out = append(out, c.State)
	}
	return out
}

// waitState waits until cam is in state, failing after timeout.
func waitState(t testing.TB, cam *Camera, state inspection.CameraState, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cam.Status().State == state {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("camera did not become %s within %s; status %+v", state, timeout, cam.Status())
	return 0
}

// next calls Next with a deadline and fails the test on error.
func next(t testing.TB, cam *Camera, after time.Time, timeout time.Duration) *inspection.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	f, err := cam.Next(ctx, after)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return f
}

// imageColour is the colour of test image i at (x, y): distinct R per
// image, G and B following the position, so channel order is checked.
func imageColour(i, x, y int) color.RGBA {
	return color.RGBA{R: uint8(10 + 20*i), G: uint8(x), B: uint8(y), A: 255}
}

// writePNGs writes n width×height PNGs named 000.png, 001.png, ...
func writePNGs(t testing.TB, dir string, n, width, height int) {
	t.Helper()
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, width, height))
		for y := range height {
			for x := range width {
				img.SetRGBA(x, y, imageColour(i, x, y))
			}
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%03d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// writeAVI writes an MJPG .avi of n frames, frame i a solid colour with
// blue = 20*i, at fps.
func writeAVI(t testing.TB, path string, n, width, height int, fps float64) {
	t.Helper()
	w, err := gocv.VideoWriterFile(path, "MJPG", fps, width, height, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !w.IsOpened() {
		t.Fatalf("VideoWriter could not open %s", path)
	}
	for i := range n {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(20*i), 100, 200, 0), height, width, gocv.MatTypeCV8UC3)
		err := w.Write(m)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// freePort returns a TCP port free on 127.0.0.1 at the time of the call.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// rtspServer runs testdata/rtsp_server.py on a port.
type rtspServer struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
}

const python = "/usr/bin/python3"

// startRTSPServer starts the Python GStreamer RTSP server, skipping the
// test when Python's GStreamer RTSP bindings are not installed.
func startRTSPServer(t testing.TB, port int) *rtspServer {
	t.Helper()
	check := exec.Command(python, "-c", `import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer`)
	if out, err := check.CombinedOutput(); err != nil {
		t.Skipf("no Python GStreamer RTSP server (apt: python3-gi gir1.2-gst-rtsp-server-1.0): %v: %s", err, out)
	}
	s := &rtspServer{t: t, port: port}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *rtspServer) url() string { return fmt.Sprintf("rtsp://127.0.0.1:%d/test", s.port) }

func (s *rtspServer) start() {
	s.t.Helper()
	cmd := exec.Command(python, "testdata/rtsp_server.py", fmt.Sprint(s.port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = bufio.NewReader(stdout).WriteTo(devNull{})
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			s.t.Fatalf("rtsp server: %q", line)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		s.t.Fatal("rtsp server did not start within 10s")
	}
	s.cmd = cmd
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

// kill ends the server with SIGKILL (and resumes it first if stopped).
func (s *rtspServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *rtspServer) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

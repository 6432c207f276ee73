package camera

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/models/preprocess"
)

// errEndOfReplay is returned by a grabber when a replay without loop has no
// more frames.
var errEndOfReplay = errors.New("end of replay")

// errInterrupted is returned by a grab that was cut short by interrupt.
var errInterrupted = errors.New("read interrupted")

// grabber is one opened source. grab and close run on the grabber's worker
// goroutine only; interrupt may be called from another goroutine while grab
// blocks, after which the grabber is never read again.
type grabber interface {
	// grab reads the next frame into a buffer from pool. It returns
	// errEndOfReplay after the last frame of a replay without loop.
	grab(pool *bufferPool) (*preprocess.BGR, error)
	// interrupt stops further reads. Where the backend allows it, it
	// returns a function that makes a blocked grab return (to be run on
	// another goroutine); otherwise nil.
	interrupt() func()
	// close releases the capture and every Mat. Safe after interrupt.
	close()
	// nativeFPS is the source's own frame rate, 0 when unknown.
	nativeFPS() float64
}

// source says how to open one configured frame source.
type source struct {
	kind        string
	description string // for messages: "rtsp rtsp://host/stream", "images /data/run1"
	replay      bool   // file or images: paced in Go, may end
	open        func() (grabber, error)
}

// newSource checks what the configuration alone cannot and returns the opener.
func newSource(cfg config.Camera) (source, error) {
	switch cfg.Source {
	case "v4l2":
		if strings.TrimSpace(cfg.Device) == "" {
			return source{}, errors.New(`camera.device: must not be empty for source "v4l2"`)
		}
		return source{kind: "v4l2", description: "v4l2 " + cfg.Device, open: func() (grabber, error) { return openV4L2(cfg) }}, nil
	case "gstreamer":
		if strings.TrimSpace(cfg.Pipeline) == "" {
			return source{}, errors.New(`camera.pipeline: must not be empty for source "gstreamer"`)
		}
		if !strings.Contains(cfg.Pipeline, "appsink") {
			return source{}, fmt.Errorf("camera.pipeline: %q has no appsink; end the pipeline with \"! appsink\"", cfg.Pipeline)
		}
		return source{kind: "gstreamer", description: fmt.Sprintf("gstreamer pipeline %q", cfg.Pipeline), open: func() (grabber, error) {
			return openVideo(cfg.Pipeline, gocv.VideoCaptureGstreamer, "GStreamer", true)
		}}, nil
	case "rtsp":
		u, err := url.Parse(cfg.URL)
		if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
			return source{}, fmt.Errorf("camera.url: %q is not an rtsp:// or rtsps:// URL with a host", cfg.URL)
		}
		pipeline := rtspPipeline(cfg)
		return source{kind: "rtsp", description: u.Redacted(), open: func() (grabber, error) {
			return openVideo(pipeline, gocv.VideoCaptureGstreamer, "GStreamer", true)
		}}, nil
	case "file":
		st, err := os.Stat(cfg.Path)
		if err != nil {
			return source{}, fmt.Errorf("camera.path: %w", err)
		}
		if st.IsDir() {
			return source{}, fmt.Errorf("camera.path: %s is a directory; source \"file\" needs a video file (use source \"images\" for a directory)", cfg.Path)
		}
		return source{kind: "file", description: "file " + cfg.Path, replay: true, open: func() (grabber, error) {
			return openFile(cfg.Path, cfg.Loop)
		}}, nil
	case "images":
		if _, err := listImages(cfg.Path); err != nil {
			return source{}, fmt.Errorf("camera.path: %w", err)
		}
		return source{kind: "images", description: "images " + cfg.Path, replay: true, open: func() (grabber, error) {
			files, err := listImages(cfg.Path)
			if err != nil {
				return nil, err
			}
			return &imageGrabber{files: files, loop: cfg.Loop}, nil
		}}, nil
	default:
		return source{}, fmt.Errorf("camera.source: %q is not one of v4l2, gstreamer, rtsp, file, images", cfg.Source)
	}
}

// rtspPipeline builds the GStreamer pipeline that reads an RTSP stream as
// BGR frames. decodebin picks the depayloader and decoder (H.264, H.265,
// MJPEG); TCP interleaving makes a dead server visible at once; the appsink
// keeps only the newest buffer so a slow reader never sees stale frames.
func rtspPipeline(cfg config.Camera) string {
	caps := "video/x-raw,format=BGR"
	scale := ""
	if cfg.Width > 0 && cfg.Height > 0 {
		scale = "videoscale ! "
		caps += fmt.Sprintf(",width=%d,height=%d", cfg.Width, cfg.Height)
	}
	location := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(cfg.URL)
	return fmt.Sprintf(`rtspsrc location="%s" latency=0 protocols=tcp ! decodebin ! videoconvert ! %s%s ! appsink sync=false drop=true max-buffers=1`,
		location, scale, caps)
}

// openV4L2 opens a V4L2 device by path or index and requests the
// configured size and rate.
func openV4L2(cfg config.Camera) (grabber, error) {
	var (
		vc  *gocv.VideoCapture
		err error
	)
	if index, convErr := strconv.Atoi(cfg.Device); convErr == nil {
		vc, err = gocv.VideoCaptureDeviceWithAPI(index, gocv.VideoCaptureV4L2)
	} else {
		if _, statErr := os.Stat(cfg.Device); statErr != nil {
			if errors.Is(statErr, os.ErrNotExist) {
				return nil, fmt.Errorf("device %s does not exist (camera not connected?)", cfg.Device)
			}
			return nil, statErr
		}
		vc, err = gocv.VideoCaptureFileWithAPI(cfg.Device, gocv.VideoCaptureV4L2)
	}
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return nil, fmt.Errorf("OpenCV's V4L2 backend could not open %s (busy, or not a capture device?)", cfg.Device)
	}
	if cfg.Width > 0 && cfg.Height > 0 {
		vc.Set(gocv.VideoCaptureFrameWidth, float64(cfg.Width))
		vc.Set(gocv.VideoCaptureFrameHeight, float64(cfg.Height))
	}
	if cfg.FPS > 0 {
		vc.Set(gocv.VideoCaptureFPS, cfg.FPS)
	}
	return &videoGrabber{vc: vc, interruptible: false}, nil
}

// openVideo opens a GStreamer pipeline or a URL with the given backend.
func openVideo(target string, api gocv.VideoCaptureAPI, backend string, interruptible bool) (grabber, error) {
	vc, err := gocv.VideoCaptureFileWithAPI(target, api)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return nil, fmt.Errorf("OpenCV's %s backend could not open it (its warning on stderr names the cause, e.g. a missing element)", backend)
	}
	return &videoGrabber{vc: vc, interruptible: interruptible}, nil
}

// openFile opens a video file with the FFmpeg backend, which reads it
// unpaced; the camera paces it.
func openFile(path string, loop bool) (grabber, error) {
	g, err := openVideo(path, gocv.VideoCaptureFFmpeg, "FFmpeg", false)
	if err != nil {
		return nil, err
	}
	vg := g.(*videoGrabber)
	vg.replay, vg.loop, vg.path = true, loop, path
	return vg, nil
}

// videoGrabber reads an OpenCV VideoCapture.
type videoGrabber struct {
	vc            *gocv.VideoCapture
	frame         gocv.Mat // created on the worker goroutine by the first grab
	haveFrame     bool
	interruptible bool // the GStreamer backend: closing the capture unblocks Read

	replay, loop bool // a video file
	path         string
	sinceRewind  int // frames read since open or the last rewind

	mu          sync.Mutex
	reading     bool // inside vc.Read
	interrupted bool // no further Read may start
	vcClosed    bool
}

func (g *videoGrabber) grab(pool *bufferPool) (*preprocess.BGR, error) {
	if !g.haveFrame {
		g.frame = gocv.NewMat()
		g.haveFrame = true
	}
	for attempt := 0; ; attempt++ {
		g.mu.Lock()
		if g.interrupted || g.vcClosed {
			g.mu.Unlock()
			return nil, errInterrupted
		}
		g.reading = true
		g.mu.Unlock()
		ok := g.vc.Read(&g.frame)
		g.mu.Lock()
		g.reading = false
		interrupted := g.interrupted
		g.mu.Unlock()
		if interrupted {
			return nil, errInterrupted
		}
		if ok && !g.frame.Empty() {
			g.sinceRewind++
			return copyMat(&g.frame, pool)
		}
		if !g.replay {
			return nil, errors.New("the source returned no frame (stream ended or device lost)")
		}
		if g.sinceRewind == 0 {
			return nil, errors.New("the video file has no readable frames")
		}
		if !g.loop {
			return nil, errEndOfReplay
		}
		if err := g.rewind(); err != nil {
			return nil, err
		}
	}
}

// rewind starts a video file again. Seeking is unreliable across codecs
// and containers, so the file is reopened.
func (g *videoGrabber) rewind() error {
	g.closeCapture()
	vc, err := gocv.VideoCaptureFileWithAPI(g.path, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return fmt.Errorf("reopening %s to loop failed", g.path)
	}
	g.mu.Lock()
	g.vc, g.vcClosed, g.sinceRewind = vc, false, 0
	g.mu.Unlock()
	return nil
}

// interrupt stops all further reads. With GStreamer a Read in progress is
// unblocked by closing the capture (it returns ~0.1 s later), which the
// returned function does; the caller runs it on another goroutine because
// tearing a pipeline down can itself take a while. Other backends cannot
// be unblocked: interrupt returns nil and the worker closes the capture
// when Read finally returns.
func (g *videoGrabber) interrupt() func() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.interrupted = true
	if !g.interruptible || !g.reading || g.vcClosed {
		return nil
	}
	g.vcClosed = true
	// Close a copy so no goroutine writes the struct the blocked Read is
	// using; the worker never touches g.vc again.
	vc := *g.vc
	return func() { vc.Close() }
}

func (g *videoGrabber) closeCapture() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.vcClosed {
		return
	}
	g.vcClosed = true
	vc := *g.vc
	vc.Close()
}

func (g *videoGrabber) close() {
	g.closeCapture()
	if g.haveFrame {
		g.frame.Close()
		g.haveFrame = false
	}
}

func (g *videoGrabber) nativeFPS() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.vcClosed {
		return 0
	}
	return g.vc.Get(gocv.VideoCaptureFPS)
}

// imageExtensions are the still-image formats replayed by source "images".
var imageExtensions = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".bmp": true}

// listImages returns the PNG, JPEG and BMP files of dir in byte-wise name
// order (zero-pad numbered names).
func listImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() && imageExtensions[strings.ToLower(filepath.Ext(e.Name()))] {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no .png, .jpg, .jpeg or .bmp files", dir)
	}
	sort.Strings(files)
	return files, nil
}

// imageGrabber replays a directory of still images.
type imageGrabber struct {
	files []string
	next  int
	loop  bool
}

func (g *imageGrabber) grab(pool *bufferPool) (*preprocess.BGR, error) {
	if g.next >= len(g.files) {
		if !g.loop {
			return nil, errEndOfReplay
		}
		g.next = 0
	}
	name := g.files[g.next]
	g.next++
	img := gocv.IMRead(name, gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		return nil, fmt.Errorf("cannot decode %s", name)
	}
	return copyMat(&img, pool)
}

func (g *imageGrabber) interrupt() func()  { return nil }
func (g *imageGrabber) close()             {}
func (g *imageGrabber) nativeFPS() float64 { return 0 }

// replayPeriod is the pacing of a replay: the configured fps, else the
// file's own rate, else 0 (each frame is read once the previous one has
// been taken).
func replayPeriod(fps float64, g grabber) time.Duration {
	if fps <= 0 {
		fps = g.nativeFPS()
	}
	if fps <= 0 || fps > 1000 {
		return 0
	}
	return time.Duration(float64(time.Second) / fps)
}

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
	// waitSlowReads: a read past read_timeout is a slow decode of a local
	// file, not a stalled camera; the reader reports the stall and keeps
	// waiting for it instead of abandoning it and reopening (which would
	// start another decode beside it and lose the file).
	waitSlowReads bool
	// open opens the source; skipped reports an image a replay skips.
	open func(skipped func(*ImageError)) (grabber, error)
}

// newSource checks what the configuration alone cannot and returns the opener.
func newSource(cfg config.Camera) (source, error) {
	switch cfg.Source {
	case "v4l2":
		if strings.TrimSpace(cfg.Device) == "" {
			return source{}, errors.New(`camera.device: must not be empty for source "v4l2"`)
		}
		return source{kind: "v4l2", description: "v4l2 " + cfg.Device, open: func(func(*ImageError)) (grabber, error) { return openV4L2(cfg) }}, nil
	case "gstreamer":
		if strings.TrimSpace(cfg.Pipeline) == "" {
			return source{}, errors.New(`camera.pipeline: must not be empty for source "gstreamer"`)
		}
		if !strings.Contains(cfg.Pipeline, "appsink") {
			return source{}, fmt.Errorf("camera.pipeline: %q has no appsink; end the pipeline with \"! appsink\"", cfg.Pipeline)
		}
		return source{kind: "gstreamer", description: fmt.Sprintf("gstreamer pipeline %q", cfg.Pipeline), open: func(func(*ImageError)) (grabber, error) {
			return openVideo(cfg.Pipeline, gocv.VideoCaptureGstreamer, "GStreamer", true, cfg.MaxPixels)
		}}, nil
	case "rtsp":
		u, err := url.Parse(cfg.URL)
		if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
			return source{}, fmt.Errorf("camera.url: %q is not an rtsp:// or rtsps:// URL with a host", cfg.URL)
		}
		pipeline := rtspPipeline(cfg)
		return source{kind: "rtsp", description: u.Redacted(), open: func(func(*ImageError)) (grabber, error) {
			return openVideo(pipeline, gocv.VideoCaptureGstreamer, "GStreamer", true, cfg.MaxPixels)
		}}, nil
	case "file":
		st, err := os.Stat(cfg.Path)
		if err != nil {
			return source{}, fmt.Errorf("camera.path: %w", err)
		}
		if st.IsDir() {
			return source{}, fmt.Errorf("camera.path: %s is a directory; source \"file\" needs a video file (use source \"images\" for a directory)", cfg.Path)
		}
		if !st.Mode().IsRegular() {
			// FFmpeg would block opening a named pipe, or read a device
			// such as /dev/zero for ever.
			return source{}, fmt.Errorf("camera.path: %s %v; source \"file\" needs a video file", cfg.Path, notRegular(cfg.Path, st.Mode()))
		}
		return source{kind: "file", description: "file " + cfg.Path, replay: true, open: func(func(*ImageError)) (grabber, error) {
			return openFile(cfg.Path, cfg.Loop, cfg.MaxPixels)
		}}, nil
	case "images":
		if _, err := listImages(cfg.Path); err != nil {
			return source{}, fmt.Errorf("camera.path: %w", err)
		}
		pos := &replayPosition{}
		return source{kind: "images", description: "images " + cfg.Path, replay: true, waitSlowReads: true, open: func(skipped func(*ImageError)) (grabber, error) {
			files, err := listImages(cfg.Path)
			if err != nil {
				return nil, err
			}
			return &imageGrabber{files: files, next: pos.resume(files), loop: cfg.Loop, maxPixels: cfg.MaxPixels,
				pos: pos, skipped: skipped, stop: make(chan struct{})}, nil
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
// configured size and rate; frames larger than camera.max_pixels are
// refused.
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
	if err := checkFrameSize(vc, cfg.MaxPixels); err != nil {
		vc.Close()
		return nil, err
	}
	return &videoGrabber{vc: vc, interruptible: false}, nil
}

// openVideo opens a GStreamer pipeline or a URL with the given backend;
// frames larger than maxPixels are refused.
func openVideo(target string, api gocv.VideoCaptureAPI, backend string, interruptible bool, maxPixels int) (grabber, error) {
	vc, err := gocv.VideoCaptureFileWithAPI(target, api)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return nil, fmt.Errorf("OpenCV's %s backend could not open it (its warning on stderr names the cause, e.g. a missing element)", backend)
	}
	if err := checkFrameSize(vc, maxPixels); err != nil {
		vc.Close()
		return nil, err
	}
	return &videoGrabber{vc: vc, interruptible: interruptible}, nil
}

// checkFrameSize refuses an opened capture whose frame size, as its
// properties report it before the first read, is past camera.max_pixels
// or OpenCV's per-side limit. A backend that does not know the size yet
// (0) is let through.
func checkFrameSize(vc *gocv.VideoCapture, maxPixels int) error {
	w, h := int64(vc.Get(gocv.VideoCaptureFrameWidth)), int64(vc.Get(gocv.VideoCaptureFrameHeight))
	switch {
	case w <= 0 || h <= 0:
		return nil
	case w > maxSide || h > maxSide:
		return fmt.Errorf("its frames are %dx%d pixels; OpenCV handles at most %d per side", w, h, maxSide)
	case w*h > int64(maxPixels):
		return fmt.Errorf("its frames are %dx%d pixels (%d), more than camera.max_pixels %d", w, h, w*h, maxPixels)
	}
	return nil
}

// openFile opens a video file with the FFmpeg backend, which reads it
// unpaced; the camera paces it.
func openFile(path string, loop bool, maxPixels int) (grabber, error) {
	g, err := openVideo(path, gocv.VideoCaptureFFmpeg, "FFmpeg", false, maxPixels)
	if err != nil {
		return nil, err
	}
	vg := g.(*videoGrabber)
	vg.replay, vg.loop, vg.path, vg.maxPixels = true, loop, path, maxPixels
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
	maxPixels    int
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
	if err := checkFrameSize(vc, g.maxPixels); err != nil {
		vc.Close()
		return fmt.Errorf("reopening %s to loop: %w", g.path, err)
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

// listImages returns the entries of dir named .png, .jpg, .jpeg or .bmp
// (any case) in byte-wise name order (zero-pad numbered names). Regular
// files and symbolic links are listed, and so are named pipes, devices
// and sockets with such a name, so that the replay skips them with a
// message saying what they are instead of passing over them in silence;
// only subdirectories are left out.
func listImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && imageExtensions[strings.ToLower(filepath.Ext(e.Name()))] {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no .png, .jpg, .jpeg or .bmp files", dir)
	}
	sort.Strings(files)
	return files, nil
}

// replayPosition is where an image replay stands: the last file it tried.
// It outlives the grabber, so a reopen continues after that file instead
// of starting the directory again (which would count its images as new
// parts and never end a replay without loop).
type replayPosition struct {
	mu   sync.Mutex
	last string
}

// resume returns the index in files (sorted) of the first file after the
// last one tried.
func (p *replayPosition) resume(files []string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == "" {
		return 0
	}
	return sort.Search(len(files), func(i int) bool { return files[i] > p.last })
}

func (p *replayPosition) set(path string) {
	p.mu.Lock()
	p.last = path
	p.mu.Unlock()
}

// imageGrabber replays a directory of still images. A file that cannot be
// replayed (vanished, empty, not a regular file, an unreadable header, a
// size past camera.max_pixels, undecodable data) is reported to skipped
// and the next file is read in the same grab; the position is kept.
type imageGrabber struct {
	files     []string
	next      int
	loop      bool
	maxPixels int
	pos       *replayPosition
	skipped   func(*ImageError)
	buf       []byte        // the file being decoded, reused
	stop      chan struct{} // closed by interrupt
	stopOnce  sync.Once
}

func (g *imageGrabber) grab(pool *bufferPool) (*preprocess.BGR, error) {
	var last error
	for tried := 0; ; tried++ {
		if g.next >= len(g.files) {
			if !g.loop {
				return nil, errEndOfReplay
			}
			g.next = 0
		}
		if tried == len(g.files) {
			// A whole loop without one image: fail, and let the camera
			// reopen (relist) the directory with backoff.
			return nil, fmt.Errorf("none of the %d image files could be replayed (the last: %v)", len(g.files), last)
		}
		name := g.files[g.next]
		g.next++
		g.pos.set(name)
		img, err := readImage(name, g.maxPixels, &g.buf, pool, g.stop)
		if err == nil {
			return img, nil
		}
		var skip *ImageError
		if !errors.As(err, &skip) {
			return nil, err
		}
		last = err
		if g.skipped != nil {
			g.skipped(skip)
		}
	}
}

// interrupt makes a grab waiting for the decode slot return; a decode in
// progress cannot be cut short (the worker closes the grabber after it).
func (g *imageGrabber) interrupt() func() {
	g.stopOnce.Do(func() { close(g.stop) })
	return nil
}

func (g *imageGrabber) close()             { g.buf = nil }
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

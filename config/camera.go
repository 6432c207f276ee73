package config

import (
	"fmt"
	"image"
	"net/url"
	"strings"
	"time"
)

// Camera selects the frame source and the region of interest.
type Camera struct {
	// Source is one of "v4l2", "gstreamer", "rtsp", "file" (a video file)
	// or "images" (a directory of images replayed in name order).
	Source string `toml:"source"`
	// Device is the V4L2 device for source "v4l2".
	Device string `toml:"device"`
	// Pipeline is the GStreamer pipeline for source "gstreamer"; it must
	// end in an appsink.
	Pipeline string `toml:"pipeline"`
	// URL is the stream address for source "rtsp".
	URL string `toml:"url"`
	// Path is the video file or image directory for "file" and "images".
	Path string `toml:"path"`
	// Loop restarts file and image replay at the end instead of stopping.
	Loop bool `toml:"loop"`
	// Width and Height request a capture size in pixels; 0 keeps the
	// source's own.
	Width  int `toml:"width"`
	Height int `toml:"height"`
	// FPS requests a frame rate; 0 keeps the source's own.
	FPS float64 `toml:"fps"`
	// OpenTimeout bounds opening the source (a bad GStreamer pipeline can
	// hang forever otherwise).
	OpenTimeout Duration `toml:"open_timeout"`
	// ReadTimeout bounds one frame read; a camera that stops delivering is
	// reported as a fault.
	ReadTimeout Duration `toml:"read_timeout"`
	// MaxFrameAge is the oldest frame still inspected; older ones are
	// dropped and counted.
	MaxFrameAge Duration `toml:"max_frame_age"`
	// MaxPixels is the largest frame, in pixels (width × height), the
	// camera decodes or accepts. An image whose header claims more is
	// skipped in a replay before it is decoded (a 69-byte PNG can claim
	// 100,000² pixels, and a small PNG can inflate to gigabytes); a video
	// source whose frames are larger is refused when opened.
	MaxPixels int `toml:"max_pixels"`
	// ROI crops every frame before inspection.
	ROI ROI `toml:"roi"`
}

// ROI is a rectangle in frame pixels; zero width and height mean the full frame.
type ROI struct {
	X      int `toml:"x"`
	Y      int `toml:"y"`
	Width  int `toml:"width"`
	Height int `toml:"height"`
}

// Rect is the ROI in a frame of the given size: the whole frame for a zero
// ROI. The one place where camera.roi becomes a rectangle.
func (r ROI) Rect(frame image.Point) image.Rectangle {
	if r.Width == 0 || r.Height == 0 {
		return image.Rectangle{Max: frame}
	}
	return image.Rect(r.X, r.Y, r.X+r.Width, r.Y+r.Height)
}

// Fits reports whether the ROI lies inside a frame of the given size: nil
// when it does (a zero ROI always does), else an error naming camera.roi.
func (r ROI) Fits(frame image.Point) error {
	rect := r.Rect(frame)
	if rect.In(image.Rectangle{Max: frame}) {
		return nil
	}
	return fmt.Errorf("camera.roi: x=%d y=%d width=%d height=%d reaches (%d,%d), outside the %dx%d frame",
		r.X, r.Y, r.Width, r.Height, rect.Max.X, rect.Max.Y, frame.X, frame.Y)
}

// FrameTooOld reports whether a frame of the given age is past
// camera.max_frame_age (0 = no limit): the camera does not hand out such a
// frame, and the daemon does not inspect one that aged while queued.
func (c Camera) FrameTooOld(age time.Duration) bool {
	return c.MaxFrameAge.D > 0 && age > c.MaxFrameAge.D
}

// Camera source kinds.
var cameraSources = []string{"v4l2", "gstreamer", "rtsp", "file", "images"}

// Frame size limits, in pixels.
const (
	// DefaultMaxPixels is camera.max_pixels by default: 8192×8192, above
	// every common industrial area-scan sensor (the largest, 65 MP class,
	// are 9344×7000) and 16k line-scan strips of up to 4096 lines. One
	// such frame is 192 MiB as BGR, decoded once and copied once.
	DefaultMaxPixels = 8192 * 8192
	// MinMaxPixels is the smallest camera.max_pixels accepted (256×256), so
	// that a value meant in megapixels ("50") is refused, not applied.
	MinMaxPixels = 256 * 256
	// MaxMaxPixels is the largest camera.max_pixels accepted: OpenCV's own
	// limit (CV_IO_MAX_IMAGE_PIXELS, 2^30); past it OpenCV's decoders
	// throw an exception that ends the process.
	MaxMaxPixels = 1 << 30
)

func (c *Camera) defaults() {
	*c = Camera{
		Source:      "v4l2",
		Device:      "/dev/video0",
		OpenTimeout: Dur(10 * time.Second),
		ReadTimeout: Dur(2 * time.Second),
		MaxFrameAge: Dur(time.Second),
		MaxPixels:   DefaultMaxPixels,
	}
}

func (c *Camera) resolvePaths(r pathResolver) { c.Path = r.path(c.Path) }

func (c *Camera) validate(v *Checker) {
	v.OneOf("source", c.Source, cameraSources...)
	switch c.Source {
	case "v4l2":
		v.Required("device", c.Device, `source "v4l2" needs a device such as "/dev/video0"`)
	case "gstreamer":
		v.Required("pipeline", c.Pipeline, `source "gstreamer" needs a pipeline ending in "appsink"`)
		if c.Pipeline != "" && !strings.Contains(c.Pipeline, "appsink") {
			v.Errorf("pipeline", "%q has no appsink; end the pipeline with \"! appsink\" so inspectd can read frames", c.Pipeline)
		}
	case "rtsp":
		if u, err := url.Parse(c.URL); c.URL == "" || err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
			v.Errorf("url", "%q is not an rtsp:// or rtsps:// URL with a host", c.URL)
		}
	case "file":
		if c.Path == "" {
			v.Errorf("path", "must not be empty; source \"file\" needs a video file")
		} else {
			v.ExistingFile("path", c.Path)
		}
	case "images":
		if c.Path == "" {
			v.Errorf("path", "must not be empty; source \"images\" needs a directory of images")
		} else {
			v.ExistingDir("path", c.Path)
		}
	}
	v.IntRange("width", c.Width, 0, 16384, "pixels (0 = source default)")
	v.IntRange("height", c.Height, 0, 16384, "pixels (0 = source default)")
	v.FloatRange("fps", c.FPS, 0, 1000, "frames per second (0 = source default)")
	v.Duration("open_timeout", c.OpenTimeout, 100*time.Millisecond, 5*time.Minute)
	v.Duration("read_timeout", c.ReadTimeout, 10*time.Millisecond, time.Minute)
	v.Duration("max_frame_age", c.MaxFrameAge, 10*time.Millisecond, time.Minute)
	v.IntRange("max_pixels", c.MaxPixels, MinMaxPixels, MaxMaxPixels, "pixels per frame (width × height)")
	if c.Width > 0 && c.Height > 0 && c.MaxPixels >= MinMaxPixels && c.Width*c.Height > c.MaxPixels {
		v.Errorf("max_pixels", "%d is less than camera.width × camera.height = %d × %d = %d; raise max_pixels or request a smaller frame", c.MaxPixels, c.Width, c.Height, c.Width*c.Height)
	}

	roi := v.In("roi")
	roi.IntRange("x", c.ROI.X, 0, 16384, "pixels")
	roi.IntRange("y", c.ROI.Y, 0, 16384, "pixels")
	roi.IntRange("width", c.ROI.Width, 0, 16384, "pixels (0 = full frame)")
	roi.IntRange("height", c.ROI.Height, 0, 16384, "pixels (0 = full frame)")
	if (c.ROI.Width == 0) != (c.ROI.Height == 0) {
		roi.Errorf("width", "width %d and height %d must both be 0 (full frame) or both be set", c.ROI.Width, c.ROI.Height)
	}
	if c.Width > 0 && c.ROI.Width > 0 && c.ROI.X+c.ROI.Width > c.Width {
		roi.Errorf("width", "x + width = %d exceeds camera.width %d", c.ROI.X+c.ROI.Width, c.Width)
	}
	if c.Height > 0 && c.ROI.Height > 0 && c.ROI.Y+c.ROI.Height > c.Height {
		roi.Errorf("height", "y + height = %d exceeds camera.height %d", c.ROI.Y+c.ROI.Height, c.Height)
	}
}

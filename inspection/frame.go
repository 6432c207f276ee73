package inspection

import (
	"image"
	"sync/atomic"
	"time"
)

// Frame is one captured image. Image is usually a *preprocess.BGR that the
// engine reads without a conversion copy. A Frame may come from a pool: the
// consumer calls Release exactly once when it no longer reads Image, after
// which the pixels may be reused. Frames that are never released are
// reclaimed by the garbage collector.
type Frame struct {
	// Seq numbers the frames of one camera source, from 1, across reconnects.
	Seq uint64
	// Time is the capture time, read from the monotonic clock when the
	// frame left the source.
	Time time.Time
	// Image holds the pixels.
	Image image.Image

	released atomic.Bool
	release  func()
}

// NewFrame returns a frame whose Release calls release (which may be nil).
func NewFrame(seq uint64, t time.Time, img image.Image, release func()) *Frame {
	return &Frame{Seq: seq, Time: t, Image: img, release: release}
}

// Release hands the frame's pixels back to its source. Calls after the
// first do nothing.
func (f *Frame) Release() {
	if f == nil || !f.released.CompareAndSwap(false, true) {
		return
	}
	if f.release != nil {
		f.release()
	}
}

// Age returns how long ago the frame was captured.
func (f *Frame) Age(now time.Time) time.Duration { return now.Sub(f.Time) }

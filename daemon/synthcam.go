package daemon

import (
	"context"
	"image"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// SyntheticCamera is an in-memory frame source that hands out a fixed
// pattern frame as fast as it is asked for, each stamped with the time of
// the request. `inspectd bench --pipeline` and `make soak` use it to measure
// the pipeline without a camera's pacing; frames come from a small pool, so
// a long run allocates no pixels.
type SyntheticCamera struct {
	pattern *preprocess.BGR
	pool    sync.Pool
	seq     atomic.Uint64
	watch   []func(inspection.CameraStatus)
	closed  atomic.Bool
}

var _ inspection.Camera = (*SyntheticCamera)(nil)

// NewSyntheticCamera returns a source of w×h frames showing a smooth
// gradient with texture (so image decoders and resizers do real work).
func NewSyntheticCamera(w, h int) *SyntheticCamera {
	p := preprocess.NewBGR(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			i := p.PixOffset(x, y)
			p.Pix[i] = uint8(x * 255 / max(1, w-1))
			p.Pix[i+1] = uint8(y * 255 / max(1, h-1))
			p.Pix[i+2] = uint8((x*7 + y*13) % 256)
		}
	}
	c := &SyntheticCamera{pattern: p}
	c.pool.New = func() any { return preprocess.NewBGR(p.Rect) }
	return c
}

// Start reports the camera online.
func (c *SyntheticCamera) Start(context.Context) error {
	for _, w := range c.watch {
		w(inspection.CameraStatus{State: inspection.CameraOnline, Since: time.Now()})
	}
	return nil
}

// Next returns a new frame at once.
func (c *SyntheticCamera) Next(ctx context.Context, after time.Time) (*inspection.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.closed.Load() {
		return nil, inspection.ErrEndOfStream
	}
	buf := c.pool.Get().(*preprocess.BGR)
	copy(buf.Pix, c.pattern.Pix)
	now := time.Now()
	if !now.After(after) {
		now = after.Add(time.Nanosecond)
	}
	return inspection.NewFrame(c.seq.Add(1), now, buf, func() { c.pool.Put(buf) }), nil
}

// Status is always online.
func (c *SyntheticCamera) Status() inspection.CameraStatus {
	return inspection.CameraStatus{State: inspection.CameraOnline}
}

// Stats counts the frames handed out.
func (c *SyntheticCamera) Stats() inspection.CameraStats {
	n := c.seq.Load()
	return inspection.CameraStats{Captured: n, Delivered: n}
}

// Watch registers fn for state changes.
func (c *SyntheticCamera) Watch(fn func(inspection.CameraStatus)) { c.watch = append(c.watch, fn) }

// Close ends the stream.
func (c *SyntheticCamera) Close() error {
	c.closed.Store(true)
	return nil
}

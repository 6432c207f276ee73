package inspection

import (
	"context"
	"errors"
	"time"
)

// CameraState is the health of a frame source.
type CameraState string

// Camera states.
const (
	CameraStarting     CameraState = "starting"     // opening for the first time
	CameraOnline       CameraState = "online"       // frames arrive within read_timeout
	CameraStalled      CameraState = "stalled"      // no frame within read_timeout; about to reconnect
	CameraReconnecting CameraState = "reconnecting" // reopening after a stall or an error, with backoff
	CameraOffline      CameraState = "offline"      // closed, or a replay reached its end
)

// CameraStatus is a camera's state with the reason for it.
type CameraStatus struct {
	State CameraState `json:"state"`
	Since time.Time   `json:"since"`
	// Detail says why the camera left the online state ("" when online).
	Detail string `json:"detail,omitempty"`
}

// CameraStats counts frames and reconnects since Start.
type CameraStats struct {
	Captured   uint64 `json:"captured"`   // frames read from the source
	Delivered  uint64 `json:"delivered"`  // frames returned by Next
	Dropped    uint64 `json:"dropped"`    // frames overwritten before anyone asked for them
	Reconnects uint64 `json:"reconnects"` // successful reopenings after a stall or an error
	Skipped    uint64 `json:"skipped"`    // replayed images skipped: vanished, empty, not a regular file, no readable header, past camera.max_pixels, undecodable
}

// ErrEndOfStream is returned by Camera.Next when a replay without loop has
// delivered its last frame.
var ErrEndOfStream = errors.New("camera: end of replay")

// Camera is a frame source. The implementation owns a reader goroutine that
// keeps only the newest frame, reads under read_timeout, declares the source
// stalled when a read hangs, and reopens it with backoff; Next never blocks
// longer than its context allows.
type Camera interface {
	// Start opens the source within open_timeout and starts reading. It
	// fails, naming the source, when the source cannot be opened.
	Start(ctx context.Context) error
	// Next returns the newest frame captured after `after` (a zero time
	// accepts any frame), waiting for one until ctx ends. It returns
	// ErrEndOfStream after the last frame of a replay without loop.
	Next(ctx context.Context, after time.Time) (*Frame, error)
	// Status reports the current state.
	Status() CameraStatus
	// Stats reports the counters.
	Stats() CameraStats
	// Watch registers fn, called on every state change from the camera's
	// goroutine; fn must not block. Call before Start.
	Watch(fn func(CameraStatus))
	// Close stops reading and releases the source. Safe to call twice.
	Close() error
}

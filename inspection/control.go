package inspection

import (
	"context"
	"errors"
	"time"
)

// Trigger sources, as recorded in Result.Trigger.
const (
	TriggerFreeRun  = "free_run"
	TriggerSoftware = "software" // HTTP POST /api/trigger
	TriggerMQTT     = "mqtt"
	TriggerGPIO     = "gpio"
)

// ErrTriggerMode is returned by Control.Trigger when the station's trigger
// mode does not accept triggers from that source.
var ErrTriggerMode = errors.New("trigger mode does not accept this trigger")

// ErrPaused is returned by Control.Trigger while inspection is paused.
var ErrPaused = errors.New("inspection is paused")

// Control is what command channels (HTTP API, MQTT commands, GPIO inputs)
// may ask of the daemon. Every method is safe for concurrent use and
// returns quickly.
type Control interface {
	// Trigger asks for one inspected part. partID "" lets the daemon number
	// it. source is one of the Trigger* constants. The part's Result follows
	// through the sinks; the error says why the trigger was refused (nothing
	// happens then).
	Trigger(partID, source string) error
	// Reload re-reads the configuration and the bundle, verifies them and
	// swaps the engine between two parts; on any failure the old ones stay.
	Reload(ctx context.Context) error
	// SetThresholds changes the image and/or pixel threshold at runtime
	// (nil leaves one unchanged). Values must lie in (0, 1].
	SetThresholds(image, pixel *float64) error
	// Pause stops taking triggers (free-run stops inspecting); Resume
	// undoes it.
	Pause()
	Resume()
	// Status returns a snapshot of the daemon.
	Status() Status
}

// TriggerObserver is implemented by sinks that must know about a part
// before its verdict (the reject scheduler: the actuation time counts from
// the trigger). PartTriggered is called on the trigger's goroutine as soon
// as the trigger is accepted and must not block.
type TriggerObserver interface {
	PartTriggered(partID string, at time.Time)
}

package inspection

import (
	"context"
	"time"
)

// Sink receives every Result. The daemon gives each sink its own bounded
// queue and goroutine, so Deliver may block (on a disk, a broker, a PLC)
// without stalling inspection; when the queue is full results are dropped
// for that sink, counted and logged.
//
// The daemon only delivers: it drains a sink's queue on shutdown but never
// starts or closes the sink. Whoever built the sink (cmd/inspectd's
// station) starts it before the daemon runs and closes it after.
type Sink interface {
	// Name identifies the sink in logs and metrics ("archive", "mqtt").
	Name() string
	// Deliver handles one result. Calls come from one goroutine, in
	// trigger order, one per result. The result must not be modified.
	Deliver(ctx context.Context, r *Result) error
}

// HealthReporter is implemented by sinks whose own state can stop the
// station doing its job although inspection runs: a latched GPIO fault
// (every part rejected physically), an outbox that cannot persist. Each
// problem is one sentence for a person. Problems is called for every
// result and every status request: it must be fast and must not block (no
// I/O, no lock held across I/O). The daemon reports the problems in
// Status (unhealthy, /healthz 503) and in each Result's Faults.
type HealthReporter interface {
	Problems() []string
}

// FaultClearer is implemented by sinks with a fault that stays latched
// until an operator clears it after fixing its cause (the GPIO FIFO
// overflow). The daemon's ClearFaults (MQTT clear_fault, POST
// /api/clear-fault, SIGHUP) calls it.
type FaultClearer interface {
	ClearFault()
}

// ReadyIndicator is implemented by sinks that show whether the station is
// inspecting (the ready lamp). SetReady(true) is called once inspection
// runs, after READY; SetReady(false) when it stops taking triggers, before
// the queues drain. It must not block.
type ReadyIndicator interface {
	SetReady(ready bool)
}

// ImageSink is implemented by sinks that need the pixels of some results
// (archive, status page). WantsImage is called on the inspection goroutine
// and must be fast; when any sink wants the image, the result carries a
// Snapshot.
type ImageSink interface {
	WantsImage(r *Result) bool
}

// EventSink is implemented by sinks that report events (MQTT, status page).
// Event must not block: queue or drop.
type EventSink interface {
	Event(e Event)
}

// Severity grades an Event.
type Severity string

// Severities.
const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Event kinds.
const (
	EventCameraOnline  = "camera_online"
	EventCameraOffline = "camera_offline"
	EventCameraStalled = "camera_stalled"
	EventImageSkipped  = "camera_image_skipped"
	EventReloadDone    = "reload_done"
	EventReloadFailed  = "reload_failed"
	EventQueueOverflow = "queue_overflow"
	EventSinkError     = "sink_error"
	EventLateReject    = "late_reject"
	EventOutboxDrop    = "outbox_drop"
	EventDiskBudget    = "disk_budget"
	EventArchiveError  = "archive_error"
	EventThreshold     = "threshold_changed"
	EventPaused        = "paused"
	EventResumed       = "resumed"
	EventStarted       = "started"
	EventStopping      = "stopping"
)

// Event is something an operator should know about, apart from results.
type Event struct {
	Time     time.Time         `json:"time"`
	Station  string            `json:"station"`
	Severity Severity          `json:"severity"`
	Kind     string            `json:"kind"`
	Message  string            `json:"message"`
	Fields   map[string]string `json:"fields,omitempty"`
}

// Package daemon is the inspection pipeline of one station: it takes frames
// from a camera, turns triggers into parts, runs the model engine on each
// part, decides the verdict and defect regions, and fans every Result out to
// the sinks (log, archive, status page, MQTT, GPIO, PLC) through bounded
// queues, with Prometheus metrics, health and systemd notifications.
//
// The package is pure Go: it sees the camera and the engine through the
// small interfaces of package inspection, whose cgo implementations
// (camera, infer) are built by cmd/inspectd, so it builds with
// CGO_ENABLED=0 and its tests run with fakes under the race detector.
//
// A part's way: Trigger accepts it into the intake (intake.go), the one
// ordered queue of parts owed a result — an accepted trigger beyond the
// queue's capacity keeps its place as an ERROR "overload" part — → capture
// (captureTriggered grabs the first frame after each trigger, in order;
// free-run keeps the newest frame) → a bounded job queue → the inspect loop
// (pipeline.go: one goroutine that owns the engine, the only producer of
// results) → one bounded queue and goroutine per sink (sinks.go). So every
// sink sees exactly one result per accepted trigger, in trigger order, and
// the shutdown's own ERRORs take the same way: it closes the intake (later
// triggers are refused), and parts still queued after half the shutdown
// timeout become ERROR "shutdown" results in their place.
//
// State has one owner per file: modelState (configuration, model,
// thresholds) and stats (counters behind Status) in state.go, reloads in
// reload.go, the Control methods in control.go. The daemon starts and
// closes only what it runs itself (the camera, the engines, the queue
// goroutines); the sinks belong to whoever built them.
package daemon

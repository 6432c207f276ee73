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
// A frame's way: capture (a goroutine per mode: free-run keeps the newest
// frame, triggered mode grabs the first frame after each trigger) → a
// bounded queue → inspect (one goroutine that owns the engine: align,
// localise, decide) → one bounded queue and goroutine per sink.
package daemon

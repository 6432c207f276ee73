// Package daemon wires the inspection pipeline of one station: capture,
// alignment, localisation, decision and the actuators (GPIO reject, MQTT
// results, image archive), each stage a goroutine joined by bounded channels.
//
// The pipeline itself arrives with the daemon issue; this package owns the
// wiring struct that cmd/inspectd builds from a validated configuration.
package daemon

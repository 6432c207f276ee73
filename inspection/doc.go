// Package inspection holds the plain Go types and small interfaces that the
// pipeline (package daemon) shares with its plug-ins: the Frame a camera
// delivers, the Result of one inspected part, and the Sink interface every
// output (log, archive, HTTP status, MQTT, GPIO, PLC) implements.
//
// It has no dependencies beyond the standard library and the pure-Go
// preprocess package, so every plug-in and the daemon build with
// CGO_ENABLED=0; the cgo implementations (camera, infer) satisfy these
// interfaces from the outside.
package inspection

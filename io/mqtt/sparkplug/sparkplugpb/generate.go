// Package sparkplugpb holds the Go types of the Sparkplug B payload,
// generated with protoc-gen-go from the Eclipse Tahu definition
// sparkplug_b.proto (EPL-2.0; the only change is its go_package option).
// Do not edit sparkplug_b.pb.go by hand: regenerate it with go generate,
// which needs protoc (Debian package protobuf-compiler) and
// protoc-gen-go v1.36.12 (go install
// google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12) on PATH.
package sparkplugpb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative sparkplug_b.proto

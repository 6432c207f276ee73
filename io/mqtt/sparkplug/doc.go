// Package sparkplug implements the Eclipse Sparkplug 3.0 (Sparkplug B) side
// of inspectd's MQTT client (mqtt.mode = "sparkplug"): topic names, the
// typed metrics of the edge node and of the camera device, payload
// encoding with the generated types of package sparkplugpb, parsing and
// validation of NCMD/DCMD commands, and the persisted birth/death sequence
// number (bdSeq).
//
// The package holds no connection: package mqtt owns the paho client, the
// durable outbox and the session rules (Will, NBIRTH first, seq), and calls
// the builders here. docs/sparkplug.md lists every metric, type and
// command.
package sparkplug

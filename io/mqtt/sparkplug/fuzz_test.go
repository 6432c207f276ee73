package sparkplug

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/inspectd/inspectd/io/mqtt/sparkplug/sparkplugpb"
)

// FuzzParseNodeCommand: any NCMD payload is either rejected with an error
// and an empty command, or accepted with only the known effects; nothing
// panics. Seeds: testdata/fuzz/FuzzParseNodeCommand.
// Run: go test ./io/mqtt/sparkplug -run '^$' -fuzz FuzzParseNodeCommand -fuzztime 30s
func FuzzParseNodeCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := ParseNodeCommand(b)
		if err != nil {
			if cmd != (NodeCommand{}) {
				t.Fatalf("rejected command %+v has effects", cmd)
			}
			return
		}
		var p pb.Payload
		if proto.Unmarshal(b, &p) != nil || len(p.GetMetrics()) == 0 {
			t.Fatalf("accepted a payload that is not a Payload with metrics: %x", b)
		}
	})
}

// FuzzParseDeviceCommand: any DCMD payload is either rejected with an
// error and no effects, or accepted with thresholds in (0, 1] and a valid
// part ID. Seeds: testdata/fuzz/FuzzParseDeviceCommand.
// Run: go test ./io/mqtt/sparkplug -run '^$' -fuzz FuzzParseDeviceCommand -fuzztime 30s
func FuzzParseDeviceCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := ParseDeviceCommand(b)
		if err != nil {
			if cmd.ImageThreshold != nil || cmd.PixelThreshold != nil || cmd.Trigger || cmd.PartID != "" {
				t.Fatalf("rejected command %+v has effects", cmd)
			}
			return
		}
		for _, th := range []*float64{cmd.ImageThreshold, cmd.PixelThreshold} {
			if th != nil && !(*th > 0 && *th <= 1) {
				t.Fatalf("accepted threshold %v", *th)
			}
		}
		if err := checkPartID(cmd.PartID); err != nil {
			t.Fatalf("accepted part ID %q: %v", cmd.PartID, err)
		}
		if cmd.ImageThreshold == nil && cmd.PixelThreshold == nil && !cmd.Trigger {
			t.Fatalf("accepted a command that does nothing: %x", b)
		}
	})
}

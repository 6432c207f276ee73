package sparkplug

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/inspectd/inspectd/io/mqtt/sparkplug/sparkplugpb"
)

// TestWriteFuzzSeeds rewrites the committed seed corpus when
// SPARKPLUG_WRITE_SEEDS=1; otherwise it checks that the corpus exists.
func TestWriteFuzzSeeds(t *testing.T) {
	f32 := metric(MetricThresholdPixel, pb.DataType_Float, time.Time{})
	f32.Value = &pb.Payload_Metric_FloatValue{FloatValue: 0.25}
	seeds := map[string][][]byte{
		"FuzzParseNodeCommand": {
			cmdPayload(t, boolMetric(MetricRebirth, true, time.Unix(1, 0))),
			cmdPayload(t, boolMetric(MetricReboot, true, time.Time{})),
			cmdPayload(t, strMetric(MetricRebirth, "true", time.Time{})),
			cmdPayload(t, &pb.Payload_Metric{Alias: proto.Uint64(1), Value: &pb.Payload_Metric_BooleanValue{BooleanValue: true}}),
			[]byte("{\"Node Control/Rebirth\":true}"),
			{},
		},
		"FuzzParseDeviceCommand": {
			cmdPayload(t, dblMetric(MetricThresholdImage, 0.6, time.Time{})),
			cmdPayload(t, f32),
			cmdPayload(t, strMetric(MetricControlTrigger, "P-1", time.Time{}), dblMetric(MetricThresholdImage, 1, time.Time{})),
			cmdPayload(t, boolMetric(MetricControlTrigger, true, time.Time{})),
			cmdPayload(t, dblMetric(MetricThresholdImage, 1.5, time.Time{})),
			{0x12, 0x05, 0x0a, 0x03, 'a', 'b'},
		},
	}
	for name, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", name)
		if os.Getenv("SPARKPLUG_WRITE_SEEDS") != "1" {
			if ents, err := os.ReadDir(dir); err != nil || len(ents) < len(list) {
				t.Errorf("seed corpus %s: %d files, %v; regenerate with SPARKPLUG_WRITE_SEEDS=1 go test -run TestWriteFuzzSeeds", dir, len(ents), err)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range list {
			text := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

package sparkplug

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inspectd/inspectd/inspection"
	pb "github.com/inspectd/inspectd/io/mqtt/sparkplug/sparkplugpb"
)

func TestCheckID(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"line1", ""},
		{"", "group_id is empty"},
		{"a/b", `group_id "a/b" contains '/', '+' or '#', which Sparkplug forbids in IDs`},
		{"a+b", `group_id "a+b" contains '/', '+' or '#'`},
		{"a#", `group_id "a#" contains`},
		{"\xff", `group_id "\xff" is not valid UTF-8`},
		{strings.Repeat("x", 129), "group_id is 129 bytes long; at most 128 are allowed"},
	} {
		err := CheckID("group_id", tc.id)
		if tc.want == "" {
			if err != nil {
				t.Errorf("CheckID(%q) = %v, want nil", tc.id, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckID(%q) = %v, want %q", tc.id, err, tc.want)
		}
	}
}

func TestTopics(t *testing.T) {
	tp, err := NewTopics("plant", "line1-cam1", "camera")
	if err != nil {
		t.Fatal(err)
	}
	if got := tp.NodeTopic(NBIRTH); got != "spBv1.0/plant/NBIRTH/line1-cam1" {
		t.Errorf("NodeTopic = %s", got)
	}
	if got := tp.DeviceTopic(DCMD); got != "spBv1.0/plant/DCMD/line1-cam1/camera" {
		t.Errorf("DeviceTopic = %s", got)
	}
	p, ok := ParseTopic("spBv1.0/plant/DDATA/line1-cam1/camera")
	if !ok || p != (Parsed{Group: "plant", Type: DDATA, Node: "line1-cam1", Device: "camera"}) {
		t.Errorf("ParseTopic = %+v %v", p, ok)
	}
	for _, bad := range []string{"spBv1.0/STATE/host", "inspectd/x/result", "spBv1.0/a/b/c/d/e"} {
		if _, ok := ParseTopic(bad); ok {
			t.Errorf("ParseTopic(%q) ok", bad)
		}
	}
	if _, err := NewTopics("g", "n", "d/e"); err == nil || err.Error() != `sparkplug: device_id "d/e" contains '/', '+' or '#', which Sparkplug forbids in IDs` {
		t.Errorf("NewTopics error = %v", err)
	}
}

func cmdPayload(t testing.TB, ms ...*pb.Payload_Metric) []byte {
	b, err := proto.Marshal(&pb.Payload{Timestamp: proto.Uint64(1), Metrics: ms})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseNodeCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want NodeCommand
		err  string
	}{
		{"rebirth", cmdPayload(t, boolMetric(MetricRebirth, true, time.Time{})), NodeCommand{Rebirth: true}, ""},
		{"reboot", cmdPayload(t, boolMetric(MetricReboot, true, time.Time{})), NodeCommand{Reboot: true}, ""},
		{"clear fault", cmdPayload(t, boolMetric(MetricClearFault, true, time.Time{})), NodeCommand{ClearFault: true}, ""},
		{"false is a no-op", cmdPayload(t, boolMetric(MetricRebirth, false, time.Time{})), NodeCommand{}, ""},
		{"garbage", []byte{0xff, 0xff, 0xff}, NodeCommand{}, "sparkplug: NCMD payload is not a Sparkplug B protobuf"},
		{"empty", nil, NodeCommand{}, "sparkplug: NCMD has no metrics; write one of Node Control/Rebirth, Node Control/Reboot, Node Control/Clear Fault"},
		{"unknown", cmdPayload(t, boolMetric("Node Control/Explode", true, time.Time{})), NodeCommand{}, `sparkplug: NCMD metric "Node Control/Explode" is unknown`},
		{"string", cmdPayload(t, strMetric(MetricRebirth, "true", time.Time{})), NodeCommand{}, `sparkplug: NCMD metric "Node Control/Rebirth": must be a Boolean, got datatype String with string_value`},
		{"null", cmdPayload(t, nullMetric(MetricRebirth, pb.DataType_Boolean, time.Time{})), NodeCommand{}, `sparkplug: NCMD metric "Node Control/Rebirth" has no value`},
		{"twice", cmdPayload(t, boolMetric(MetricRebirth, true, time.Time{}), boolMetric(MetricRebirth, true, time.Time{})), NodeCommand{}, `sparkplug: NCMD metric "Node Control/Rebirth" appears twice`},
		{"alias", cmdPayload(t, &pb.Payload_Metric{Alias: proto.Uint64(3), Value: &pb.Payload_Metric_BooleanValue{BooleanValue: true}}), NodeCommand{}, "sparkplug: NCMD metric without a name (alias 3)"},
		{"too big", make([]byte, MaxCommandPayload+1), NodeCommand{}, "sparkplug: NCMD payload of 4097 bytes is larger than 4096"},
		{"model install", cmdPayload(t, strMetric(MetricModelInstall, `{"url":"x"}`, time.Time{})), NodeCommand{ModelInstall: `{"url":"x"}`}, ""},
		{"model install and rebirth", cmdPayload(t, strMetric(MetricModelInstall, `{}`, time.Time{}), boolMetric(MetricRebirth, true, time.Time{})), NodeCommand{ModelInstall: `{}`, Rebirth: true}, ""},
		{"model install empty", cmdPayload(t, strMetric(MetricModelInstall, "", time.Time{})), NodeCommand{}, `sparkplug: NCMD metric "Node Control/Model Install": is empty; write the JSON of a model_install request without correlation_id`},
		{"model install bool", cmdPayload(t, boolMetric(MetricModelInstall, true, time.Time{})), NodeCommand{}, `sparkplug: NCMD metric "Node Control/Model Install": must be a String (the JSON of a model_install request without correlation_id), got datatype Boolean with boolean_value`},
		{"model install bad then rebirth", cmdPayload(t, boolMetric(MetricRebirth, true, time.Time{}), u64Metric(MetricModelInstall, 1, time.Time{})), NodeCommand{}, `sparkplug: NCMD metric "Node Control/Model Install": must be a String`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNodeCommand(tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Fatalf("error = %v, want prefix %q", err, tc.err)
			}
			if got != (NodeCommand{}) {
				t.Errorf("a rejected command returned %+v", got)
			}
		})
	}
}

func TestParseDeviceCommand(t *testing.T) {
	f32 := metric(MetricThresholdPixel, pb.DataType_Float, time.Time{})
	f32.Value = &pb.Payload_Metric_FloatValue{FloatValue: 0.25}
	for _, tc := range []struct {
		name string
		in   []byte
		want string // %+v of the command with pointers dereferenced
		err  string
	}{
		{"image", cmdPayload(t, dblMetric(MetricThresholdImage, 0.6, time.Time{})), "img=0.6 px=- trig=false ''", ""},
		{"float pixel", cmdPayload(t, f32), "img=- px=0.25 trig=false ''", ""},
		{"trigger id", cmdPayload(t, strMetric(MetricControlTrigger, "P-17", time.Time{})), "img=- px=- trig=true 'P-17'", ""},
		{"trigger bool", cmdPayload(t, boolMetric(MetricControlTrigger, true, time.Time{})), "img=- px=- trig=true ''", ""},
		{"both thresholds", cmdPayload(t, dblMetric(MetricThresholdImage, 1, time.Time{}), dblMetric(MetricThresholdPixel, 0.1, time.Time{})), "img=1 px=0.1 trig=false ''", ""},
		{"above 1", cmdPayload(t, dblMetric(MetricThresholdImage, 1.5, time.Time{})), "", `sparkplug: DCMD metric "Thresholds/Image": 1.5 is out of range (0, 1]`},
		{"zero", cmdPayload(t, dblMetric(MetricThresholdImage, 0, time.Time{})), "", `sparkplug: DCMD metric "Thresholds/Image": 0 is out of range (0, 1]`},
		{"NaN", cmdPayload(t, dblMetric(MetricThresholdPixel, math.NaN(), time.Time{})), "", `sparkplug: DCMD metric "Thresholds/Pixel": NaN is out of range (0, 1]`},
		{"wrong type", cmdPayload(t, u64Metric(MetricThresholdImage, 1, time.Time{})), "", `sparkplug: DCMD metric "Thresholds/Image": must be a Double or Float, got datatype UInt64 with long_value`},
		{"datatype mismatch", cmdPayload(t, func() *pb.Payload_Metric {
			m := dblMetric(MetricThresholdImage, 0.5, time.Time{})
			m.Datatype = proto.Uint32(999)
			return m
		}()), "", `sparkplug: DCMD metric "Thresholds/Image": must be a Double or Float, got datatype 999 with double_value`},
		{"trigger false", cmdPayload(t, boolMetric(MetricControlTrigger, false, time.Time{})), "", `sparkplug: DCMD metric "Control/Trigger": Boolean false does not trigger`},
		{"long part id", cmdPayload(t, strMetric(MetricControlTrigger, strings.Repeat("p", 129), time.Time{})), "", `sparkplug: DCMD metric "Control/Trigger": part ID is 129 bytes long; at most 128 are allowed`},
		{"control char", cmdPayload(t, strMetric(MetricControlTrigger, "a\nb", time.Time{})), "", `sparkplug: DCMD metric "Control/Trigger": part ID contains the non-printable character U+000A`},
		{"valid then invalid", cmdPayload(t, dblMetric(MetricThresholdImage, 0.5, time.Time{}), dblMetric(MetricThresholdPixel, 2, time.Time{})), "", `sparkplug: DCMD metric "Thresholds/Pixel": 2 is out of range`},
		{"node metric on device", cmdPayload(t, boolMetric(MetricRebirth, true, time.Time{})), "", `sparkplug: DCMD metric "Node Control/Rebirth" is unknown; write one of Thresholds/Image, Thresholds/Pixel, Control/Trigger, Device Control/Product`},
		{"product", cmdPayload(t, strMetric(MetricControlProduct, "gear", time.Time{})), "img=- px=- trig=false '' product=gear", ""},
		{"product and trigger", cmdPayload(t, strMetric(MetricControlTrigger, "P1", time.Time{}), strMetric(MetricControlProduct, "gear", time.Time{})), "img=- px=- trig=true 'P1' product=gear", ""},
		{"product empty", cmdPayload(t, strMetric(MetricControlProduct, "", time.Time{})), "", `sparkplug: DCMD metric "Device Control/Product": is empty; write the name of a [[product]]`},
		{"product number", cmdPayload(t, u64Metric(MetricControlProduct, 2, time.Time{})), "", `sparkplug: DCMD metric "Device Control/Product": must be a String (the name of a [[product]]), got datatype UInt64 with long_value`},
		{"product datatype mismatch", cmdPayload(t, func() *pb.Payload_Metric {
			m := strMetric(MetricControlProduct, "gear", time.Time{})
			m.Datatype = proto.Uint32(uint32(pb.DataType_Int32))
			return m
		}()), "", `sparkplug: DCMD metric "Device Control/Product": must be a String (the name of a [[product]]), got datatype Int32 with string_value`},
		{"model install on device", cmdPayload(t, strMetric(MetricModelInstall, "{}", time.Time{})), "", `sparkplug: DCMD metric "Node Control/Model Install" is unknown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDeviceCommand(tc.in)
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("error = %v, want prefix %q", err, tc.err)
				}
				if got.ImageThreshold != nil || got.PixelThreshold != nil || got.Trigger || got.Product != "" {
					t.Errorf("a rejected command returned %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := describeCmd(got); s != tc.want {
				t.Errorf("got %s, want %s", s, tc.want)
			}
		})
	}
}

func describeCmd(c DeviceCommand) string {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	s := fmt.Sprintf("img=%s px=%s trig=%t '%s'", f(c.ImageThreshold), f(c.PixelThreshold), c.Trigger, c.PartID)
	if c.Product != "" {
		s += " product=" + c.Product
	}
	return s
}

func TestBdSeqPersistsAndWraps(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBdSeq(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := b.Next(); err != nil || v != 0 {
		t.Fatalf("first Next = %d, %v; want 0", v, err)
	}
	if v, _ := b.Next(); v != 1 {
		t.Fatalf("second Next = %d, want 1", v)
	}
	b2, err := OpenBdSeq(dir) // a restart
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := b2.Next(); v != 2 {
		t.Fatalf("Next after reopen = %d, want 2", v)
	}
	if err := os.WriteFile(filepath.Join(dir, BdSeqFile), []byte("255\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b3, _ := OpenBdSeq(dir)
	if v, _ := b3.Next(); v != 0 {
		t.Fatalf("Next after 255 = %d, want 0", v)
	}
	if err := os.WriteFile(filepath.Join(dir, BdSeqFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBdSeq(dir); err == nil || !strings.Contains(err.Error(), `holds "garbage", not a bdSeq (0..255); delete the file to start again at 0`) {
		t.Errorf("corrupt file: %v", err)
	}
}

func TestNodeBirthDeclaresEveryMetric(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := NodeBirth(now, 0, NodeState{BdSeq: 7, Version: "1.0"})
	b, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.Payload
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.GetSeq() != 0 || got.GetTimestamp() != uint64(now.UnixMilli()) {
		t.Errorf("seq %d timestamp %d", got.GetSeq(), got.GetTimestamp())
	}
	byName := map[string]*pb.Payload_Metric{}
	for _, m := range got.GetMetrics() {
		if m.Datatype == nil || m.GetDatatype() == 0 {
			t.Errorf("metric %s has no datatype", m.GetName())
		}
		if m.GetValue() == nil && !m.GetIsNull() {
			t.Errorf("metric %s has neither a value nor is_null", m.GetName())
		}
		byName[m.GetName()] = m
	}
	if m := byName[MetricBdSeq]; m == nil || m.GetDatatype() != uint32(pb.DataType_UInt64) || m.GetLongValue() != 7 {
		t.Errorf("bdSeq metric = %v", m)
	}
	if m := byName[MetricRebirth]; m == nil || m.GetDatatype() != uint32(pb.DataType_Boolean) {
		t.Errorf("rebirth metric = %v", m)
	}
	if m := byName[MetricModelInstall]; m == nil || m.GetDatatype() != uint32(pb.DataType_String) || m.GetStringValue() != "" {
		t.Errorf("model install metric = %v, want an empty String", m)
	}
	for _, d := range resultMetricTypes {
		if m := byName[d.name]; m == nil || m.GetDatatype() != uint32(d.dt) || !m.GetIsNull() {
			t.Errorf("result metric %s = %v, want null %s", d.name, m, d.dt)
		}
	}
	r := &inspection.Result{ID: "r1", PartID: "P1", Verdict: inspection.NG, Score: 0.9, Regions: make([]inspection.Region, 3),
		VerdictTime: now.Add(-time.Hour), Model: inspection.Model{Product: "demo", BundleHash: "sha256:x"}}
	d := ResultData(now, 300, r, true, true)
	if d.GetSeq() != 300%256 {
		t.Errorf("seq = %d, want %d", d.GetSeq(), 300%256)
	}
	for _, m := range d.GetMetrics() {
		if m.GetTimestamp() != uint64(r.VerdictTime.UnixMilli()) {
			t.Errorf("%s timestamp %d, want the verdict time", m.GetName(), m.GetTimestamp())
		}
		if strings.HasPrefix(m.GetName(), "Inspection/") && !m.GetIsHistorical() {
			t.Errorf("%s not historical", m.GetName())
		}
		switch m.GetName() {
		case MetricRegionCount:
			if m.GetIntValue() != 3 {
				t.Errorf("region count %d", m.GetIntValue())
			}
		case MetricScore:
			ps := m.GetProperties()
			if ps == nil || len(ps.GetKeys()) != 2 || ps.GetValues()[0].GetStringValue() != "demo" || ps.GetValues()[1].GetStringValue() != "sha256:x" {
				t.Errorf("score properties %v", ps)
			}
		}
	}
}

// TestDeviceMetricsActiveProduct: DBIRTH declares Properties/Active Product
// and the writable Device Control/Product with the active product; DDATA
// carries Properties/Active Product; without daemon information it is
// null.
func TestDeviceMetricsActiveProduct(t *testing.T) {
	now := time.Now()
	find := func(p *pb.Payload, name string) *pb.Payload_Metric {
		for _, m := range p.GetMetrics() {
			if m.GetName() == name {
				return m
			}
		}
		return nil
	}
	d := DeviceState{ActiveProduct: "gear", HasInfo: true}
	birth := DeviceBirth(now, 1, d)
	for _, name := range []string{MetricActiveProduct, MetricControlProduct} {
		if m := find(birth, name); m == nil || m.GetStringValue() != "gear" || m.GetDatatype() != uint32(pb.DataType_String) {
			t.Errorf("DBIRTH %s = %v, want String gear", name, m)
		}
	}
	if m := find(DeviceData(now, 2, d), MetricActiveProduct); m == nil || m.GetStringValue() != "gear" {
		t.Errorf("DDATA %s = %v, want gear", MetricActiveProduct, m)
	}
	if m := find(DeviceData(now, 3, DeviceState{}), MetricActiveProduct); m == nil || !m.GetIsNull() {
		t.Errorf("DDATA without information: %s = %v, want null", MetricActiveProduct, m)
	}
}

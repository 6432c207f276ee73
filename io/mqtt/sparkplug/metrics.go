package sparkplug

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inspectd/inspectd/inspection"
	pb "github.com/inspectd/inspectd/io/mqtt/sparkplug/sparkplugpb"
)

// Node metric names (NBIRTH, NDATA, NCMD, NDEATH).
const (
	MetricBdSeq   = "bdSeq"
	MetricRebirth = "Node Control/Rebirth"
	MetricReboot  = "Node Control/Reboot"
	// MetricClearFault clears the station's latched output faults.
	MetricClearFault = "Node Control/Clear Fault"
	// MetricModelInstall (String, NCMD) installs a signed bundle: the
	// JSON of the model_install command without correlation_id.
	MetricModelInstall = "Node Control/Model Install"

	MetricSoftwareVersion = "Properties/Software Version"
	MetricModelProduct    = "Properties/Model Product"
	MetricModelBundleHash = "Properties/Model Bundle Hash"

	MetricResultID       = "Inspection/Result ID"
	MetricPartID         = "Inspection/Part ID"
	MetricResultSeq      = "Inspection/Seq"
	MetricTrigger        = "Inspection/Trigger"
	MetricVerdict        = "Inspection/Verdict"
	MetricReject         = "Inspection/Reject"
	MetricReason         = "Inspection/Reason"
	MetricDetail         = "Inspection/Detail"
	MetricScore          = "Inspection/Score"
	MetricImageThreshold = "Inspection/Image Threshold"
	MetricPixelThreshold = "Inspection/Pixel Threshold"
	MetricRegionCount    = "Inspection/Region Count"
	MetricTriggerTime    = "Inspection/Trigger Time"
	MetricCaptureWaitMs  = "Inspection/Latency/Capture Wait ms"
	MetricAlignMs        = "Inspection/Latency/Align ms"
	MetricLocalizeMs     = "Inspection/Latency/Localize ms"
	MetricDecideMs       = "Inspection/Latency/Decide ms"
	MetricTotalMs        = "Inspection/Latency/Total ms"

	MetricCountTotal = "Counters/Total"
	MetricCountOK    = "Counters/OK"
	MetricCountNG    = "Counters/NG"
	MetricCountError = "Counters/Error"

	MetricOutboxDepth   = "MQTT/Outbox Depth"
	MetricOutboxDropped = "MQTT/Dropped"
	MetricReconnects    = "MQTT/Reconnects"

	MetricEventKind     = "Event/Kind"
	MetricEventSeverity = "Event/Severity"
	MetricEventMessage  = "Event/Message"
)

// Device metric names (DBIRTH, DDATA, DCMD).
const (
	MetricCameraState      = "Camera/State"
	MetricCameraDetail     = "Camera/Detail"
	MetricCameraSince      = "Camera/Since"
	MetricCameraCaptured   = "Camera/Frames Captured"
	MetricCameraDropped    = "Camera/Frames Dropped"
	MetricCameraReconnects = "Camera/Reconnects"

	MetricThresholdImage  = "Thresholds/Image"
	MetricThresholdPixel  = "Thresholds/Pixel"
	MetricThresholdSource = "Thresholds/Source"

	MetricControlTrigger = "Control/Trigger"

	// MetricActiveProduct (String) is the station's active product
	// (changeover), in DBIRTH and DDATA.
	MetricActiveProduct = "Properties/Active Product"
	// MetricControlProduct (String, DCMD) selects the active product by
	// name; DBIRTH declares it with the active product.
	MetricControlProduct = "Device Control/Product"
)

// Property keys of the model identity, attached to Inspection/Score.
const (
	PropertyProduct    = "product"
	PropertyBundleHash = "bundle_hash"
)

// EventCommandRejected is the kind of the event raised for an NCMD or DCMD
// that is malformed or refused; nothing was changed.
const EventCommandRejected = "sparkplug_command_rejected"

// Millis is t as Sparkplug time: milliseconds since the epoch, UTC. The
// zero time is 0.
func Millis(t time.Time) uint64 {
	if t.IsZero() || t.UnixMilli() < 0 {
		return 0
	}
	return uint64(t.UnixMilli())
}

// Marshal encodes a payload.
func Marshal(p *pb.Payload) ([]byte, error) {
	b, err := proto.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("sparkplug: encode payload: %w", err)
	}
	return b, nil
}

// metric starts a metric with its name, datatype and timestamp.
func metric(name string, dt pb.DataType, ts time.Time) *pb.Payload_Metric {
	m := &pb.Payload_Metric{Name: proto.String(name), Datatype: proto.Uint32(uint32(dt))}
	if ms := Millis(ts); ms > 0 {
		m.Timestamp = proto.Uint64(ms)
	}
	return m
}

func strMetric(name, v string, ts time.Time) *pb.Payload_Metric {
	m := metric(name, pb.DataType_String, ts)
	m.Value = &pb.Payload_Metric_StringValue{StringValue: v}
	return m
}

func dblMetric(name string, v float64, ts time.Time) *pb.Payload_Metric {
	m := metric(name, pb.DataType_Double, ts)
	m.Value = &pb.Payload_Metric_DoubleValue{DoubleValue: v}
	return m
}

func u64Metric(name string, v uint64, ts time.Time) *pb.Payload_Metric {
	m := metric(name, pb.DataType_UInt64, ts)
	m.Value = &pb.Payload_Metric_LongValue{LongValue: v}
	return m
}

func u32Metric(name string, v uint32, ts time.Time) *pb.Payload_Metric {
	m := metric(name, pb.DataType_UInt32, ts)
	m.Value = &pb.Payload_Metric_IntValue{IntValue: v}
	return m
}

func boolMetric(name string, v bool, ts time.Time) *pb.Payload_Metric {
	m := metric(name, pb.DataType_Boolean, ts)
	m.Value = &pb.Payload_Metric_BooleanValue{BooleanValue: v}
	return m
}

// dateMetric is a DateTime (ms since the epoch, UTC); the zero time is a
// null value.
func dateMetric(name string, v, ts time.Time) *pb.Payload_Metric {
	m := metric(name, pb.DataType_DateTime, ts)
	if v.IsZero() {
		m.IsNull = proto.Bool(true)
		return m
	}
	m.Value = &pb.Payload_Metric_LongValue{LongValue: Millis(v)}
	return m
}

// nullMetric declares a metric that has no value yet.
func nullMetric(name string, dt pb.DataType, ts time.Time) *pb.Payload_Metric {
	m := metric(name, dt, ts)
	m.IsNull = proto.Bool(true)
	return m
}

func payload(now time.Time, seq *uint64, metrics []*pb.Payload_Metric) *pb.Payload {
	p := &pb.Payload{Timestamp: proto.Uint64(Millis(now)), Metrics: metrics}
	if seq != nil {
		p.Seq = proto.Uint64(*seq % 256)
	}
	return p
}

// Counters are the node's counters.
type Counters struct {
	Counts      inspection.Counts
	OutboxDepth uint64
	Dropped     uint64
	Reconnects  uint64
}

func counterMetrics(c Counters, ts time.Time) []*pb.Payload_Metric {
	return []*pb.Payload_Metric{
		u64Metric(MetricCountTotal, c.Counts.Total, ts),
		u64Metric(MetricCountOK, c.Counts.OK, ts),
		u64Metric(MetricCountNG, c.Counts.NG, ts),
		u64Metric(MetricCountError, c.Counts.Error, ts),
		u64Metric(MetricOutboxDepth, c.OutboxDepth, ts),
		u64Metric(MetricOutboxDropped, c.Dropped, ts),
		u64Metric(MetricReconnects, c.Reconnects, ts),
	}
}

// NodeState is what an NBIRTH announces.
type NodeState struct {
	BdSeq   uint64
	Version string
	// Model is the model identity last seen (from Last, or the daemon).
	Model inspection.Model
	// Last is the most recent result published, or nil: its metrics are
	// then declared with is_null.
	Last     *inspection.Result
	Counters Counters
	// LastEvent is the most recent event published, or nil.
	LastEvent *inspection.Event
}

// NodeBirth builds the NBIRTH payload: bdSeq, the node controls, the
// properties, every result metric with its current value (or null),
// counters and the last event. seq is 0 by the session rules.
func NodeBirth(now time.Time, seq uint64, s NodeState) *pb.Payload {
	ms := []*pb.Payload_Metric{
		u64Metric(MetricBdSeq, s.BdSeq, now),
		boolMetric(MetricRebirth, false, now),
		boolMetric(MetricReboot, false, now),
		boolMetric(MetricClearFault, false, now),
		strMetric(MetricModelInstall, "", now),
		strMetric(MetricSoftwareVersion, s.Version, now),
		strMetric(MetricModelProduct, s.Model.Product, now),
		strMetric(MetricModelBundleHash, s.Model.BundleHash, now),
	}
	if s.Last != nil {
		ms = append(ms, resultMetrics(s.Last, false)...)
	} else {
		for _, d := range resultMetricTypes {
			ms = append(ms, nullMetric(d.name, d.dt, now))
		}
	}
	ms = append(ms, counterMetrics(s.Counters, now)...)
	if s.LastEvent != nil {
		ms = append(ms, eventMetrics(*s.LastEvent, false)...)
	} else {
		for _, n := range []string{MetricEventKind, MetricEventSeverity, MetricEventMessage} {
			ms = append(ms, nullMetric(n, pb.DataType_String, now))
		}
	}
	return payload(now, &seq, ms)
}

// NodeDeath builds the NDEATH payload (the Will): bdSeq only, no seq.
func NodeDeath(now time.Time, bdSeq uint64) *pb.Payload {
	return payload(now, nil, []*pb.Payload_Metric{u64Metric(MetricBdSeq, bdSeq, now)})
}

// resultMetricTypes lists the per-part metrics in NBIRTH order.
var resultMetricTypes = []struct {
	name string
	dt   pb.DataType
}{
	{MetricResultID, pb.DataType_String}, {MetricPartID, pb.DataType_String},
	{MetricResultSeq, pb.DataType_UInt64}, {MetricTrigger, pb.DataType_String},
	{MetricVerdict, pb.DataType_String}, {MetricReject, pb.DataType_Boolean},
	{MetricReason, pb.DataType_String}, {MetricDetail, pb.DataType_String},
	{MetricScore, pb.DataType_Double}, {MetricImageThreshold, pb.DataType_Double},
	{MetricPixelThreshold, pb.DataType_Double}, {MetricRegionCount, pb.DataType_UInt32},
	{MetricTriggerTime, pb.DataType_DateTime},
	{MetricCaptureWaitMs, pb.DataType_Double}, {MetricAlignMs, pb.DataType_Double},
	{MetricLocalizeMs, pb.DataType_Double}, {MetricDecideMs, pb.DataType_Double},
	{MetricTotalMs, pb.DataType_Double},
}

// resultMetrics are the metrics of one part, timestamped with its verdict
// time, in the order of resultMetricTypes.
func resultMetrics(r *inspection.Result, historical bool) []*pb.Payload_Metric {
	ts := r.VerdictTime
	score := dblMetric(MetricScore, r.Score, ts)
	score.Properties = &pb.Payload_PropertySet{
		Keys: []string{PropertyProduct, PropertyBundleHash},
		Values: []*pb.Payload_PropertyValue{
			{Type: proto.Uint32(uint32(pb.DataType_String)), Value: &pb.Payload_PropertyValue_StringValue{StringValue: r.Model.Product}},
			{Type: proto.Uint32(uint32(pb.DataType_String)), Value: &pb.Payload_PropertyValue_StringValue{StringValue: r.Model.BundleHash}},
		},
	}
	regions := uint64(len(r.Regions))
	ms := []*pb.Payload_Metric{
		strMetric(MetricResultID, r.ID, ts),
		strMetric(MetricPartID, r.PartID, ts),
		u64Metric(MetricResultSeq, r.Seq, ts),
		strMetric(MetricTrigger, r.Trigger, ts),
		strMetric(MetricVerdict, string(r.Verdict), ts),
		boolMetric(MetricReject, r.Verdict.Rejects(), ts),
		strMetric(MetricReason, r.Reason, ts),
		strMetric(MetricDetail, r.Detail, ts),
		score,
		dblMetric(MetricImageThreshold, r.Threshold, ts),
		dblMetric(MetricPixelThreshold, r.PixelThreshold, ts),
		u32Metric(MetricRegionCount, uint32(min(regions, 1<<32-1)), ts),
		dateMetric(MetricTriggerTime, r.TriggerTime, ts),
		dblMetric(MetricCaptureWaitMs, r.Latency.CaptureWaitMs, ts),
		dblMetric(MetricAlignMs, r.Latency.AlignMs, ts),
		dblMetric(MetricLocalizeMs, r.Latency.LocalizeMs, ts),
		dblMetric(MetricDecideMs, r.Latency.DecideMs, ts),
		dblMetric(MetricTotalMs, r.Latency.TotalMs, ts),
	}
	if historical {
		for _, m := range ms {
			m.IsHistorical = proto.Bool(true)
		}
	}
	return ms
}

// ResultData builds the NDATA of one part. historical marks results
// produced before the current NBIRTH (store-and-forward); their metric
// timestamps are the original verdict time either way. modelChanged adds
// the model properties when they differ from those last announced.
func ResultData(now time.Time, seq uint64, r *inspection.Result, historical, modelChanged bool) *pb.Payload {
	ms := resultMetrics(r, historical)
	if modelChanged {
		ms = append(ms, strMetric(MetricModelProduct, r.Model.Product, r.VerdictTime),
			strMetric(MetricModelBundleHash, r.Model.BundleHash, r.VerdictTime))
	}
	return payload(now, &seq, ms)
}

func eventMetrics(e inspection.Event, historical bool) []*pb.Payload_Metric {
	ms := []*pb.Payload_Metric{
		strMetric(MetricEventKind, e.Kind, e.Time),
		strMetric(MetricEventSeverity, string(e.Severity), e.Time),
		strMetric(MetricEventMessage, e.Message, e.Time),
	}
	if historical {
		for _, m := range ms {
			m.IsHistorical = proto.Bool(true)
		}
	}
	return ms
}

// EventData builds the NDATA of one event.
func EventData(now time.Time, seq uint64, e inspection.Event, historical bool) *pb.Payload {
	return payload(now, &seq, eventMetrics(e, historical))
}

// CountersData builds the periodic NDATA of the counters.
func CountersData(now time.Time, seq uint64, c Counters) *pb.Payload {
	return payload(now, &seq, counterMetrics(c, now))
}

// DeviceState is what a DBIRTH or a DDATA of the camera device says.
type DeviceState struct {
	Camera inspection.CameraStatus
	Counts inspection.CameraStats
	Image  float64
	Pixel  float64
	Source string
	// ActiveProduct is the active product (Status().Products.Active, or
	// the model's product without changeover).
	ActiveProduct string
	HasInfo       bool // false: no daemon status available; the values are null
}

func deviceMetrics(d DeviceState, now time.Time) []*pb.Payload_Metric {
	if !d.HasInfo {
		return []*pb.Payload_Metric{
			nullMetric(MetricCameraState, pb.DataType_String, now),
			nullMetric(MetricCameraDetail, pb.DataType_String, now),
			nullMetric(MetricCameraSince, pb.DataType_DateTime, now),
			nullMetric(MetricCameraCaptured, pb.DataType_UInt64, now),
			nullMetric(MetricCameraDropped, pb.DataType_UInt64, now),
			nullMetric(MetricCameraReconnects, pb.DataType_UInt64, now),
			nullMetric(MetricThresholdImage, pb.DataType_Double, now),
			nullMetric(MetricThresholdPixel, pb.DataType_Double, now),
			nullMetric(MetricThresholdSource, pb.DataType_String, now),
			nullMetric(MetricActiveProduct, pb.DataType_String, now),
		}
	}
	return []*pb.Payload_Metric{
		strMetric(MetricCameraState, string(d.Camera.State), now),
		strMetric(MetricCameraDetail, d.Camera.Detail, now),
		dateMetric(MetricCameraSince, d.Camera.Since, now),
		u64Metric(MetricCameraCaptured, d.Counts.Captured, now),
		u64Metric(MetricCameraDropped, d.Counts.Dropped, now),
		u64Metric(MetricCameraReconnects, d.Counts.Reconnects, now),
		dblMetric(MetricThresholdImage, d.Image, now),
		dblMetric(MetricThresholdPixel, d.Pixel, now),
		strMetric(MetricThresholdSource, d.Source, now),
		strMetric(MetricActiveProduct, d.ActiveProduct, now),
	}
}

// DeviceBirth builds the DBIRTH of the camera device: camera state and
// counters, the thresholds in force (writable) and Control/Trigger
// (writable), and Device Control/Product (writable, the active product).
func DeviceBirth(now time.Time, seq uint64, d DeviceState) *pb.Payload {
	ms := append(deviceMetrics(d, now), strMetric(MetricControlTrigger, "", now), strMetric(MetricControlProduct, d.ActiveProduct, now))
	return payload(now, &seq, ms)
}

// DeviceData builds a DDATA with the device's current metrics (after a
// threshold write, and periodically).
func DeviceData(now time.Time, seq uint64, d DeviceState) *pb.Payload {
	return payload(now, &seq, deviceMetrics(d, now))
}

// DeviceDeath builds the DDEATH of the camera device.
func DeviceDeath(now time.Time, seq uint64) *pb.Payload {
	return payload(now, &seq, nil)
}

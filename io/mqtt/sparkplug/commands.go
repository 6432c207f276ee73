package sparkplug

import (
	"errors"
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "github.com/inspectd/inspectd/io/mqtt/sparkplug/sparkplugpb"
)

// Command bounds, the same as those of the JSON commands of package mqtt.
const (
	// MaxCommandPayload bounds an NCMD or DCMD payload in bytes.
	MaxCommandPayload = 4096
	// MaxPartID bounds the part ID of Control/Trigger in bytes.
	MaxPartID = 128
	// maxCommandMetrics bounds the metrics of one command.
	maxCommandMetrics = 16
)

// NodeCommand is a validated NCMD.
type NodeCommand struct {
	// Rebirth asks for a new NBIRTH (and DBIRTH).
	Rebirth bool
	// Reboot asks the daemon to restart.
	Reboot bool
	// ClearFault asks to clear the outputs' latched faults.
	ClearFault bool
	// ModelInstall is the String of Node Control/Model Install: a JSON
	// model_install request without correlation_id, which package mqtt
	// validates; "" when the metric is absent.
	ModelInstall string
}

// DeviceCommand is a validated DCMD to the camera device.
type DeviceCommand struct {
	// ImageThreshold and PixelThreshold, when set, are in (0, 1].
	ImageThreshold, PixelThreshold *float64
	// Trigger asks for one inspection; PartID may be empty.
	Trigger bool
	PartID  string
	// Product is the String of Device Control/Product: the product to
	// select, "" when the metric is absent (package mqtt checks the name).
	Product string
}

// ParseNodeCommand decodes and validates an NCMD payload completely: a
// malformed command changes nothing. Accepted metrics: Node Control/Rebirth
// Node Control/Reboot and Node Control/Clear Fault, Boolean (true acts,
// false is a no-op), and Node Control/Model Install, a non-empty String of
// at most MaxCommandPayload bytes.
func ParseNodeCommand(b []byte) (NodeCommand, error) {
	var cmd NodeCommand
	p, err := decodeCommand(NCMD, b)
	if err != nil {
		return cmd, err
	}
	for _, m := range p.GetMetrics() {
		if m.GetName() == MetricModelInstall {
			s, err := stringValue(m, "the JSON of a model_install request without correlation_id")
			if err != nil {
				return NodeCommand{}, fmt.Errorf("sparkplug: NCMD metric %q: %w", m.GetName(), err)
			}
			cmd.ModelInstall = s
			continue
		}
		v, err := boolValue(m)
		if err != nil {
			return NodeCommand{}, fmt.Errorf("sparkplug: NCMD metric %q: %w", m.GetName(), err)
		}
		switch m.GetName() {
		case MetricRebirth:
			cmd.Rebirth = v
		case MetricReboot:
			cmd.Reboot = v
		case MetricClearFault:
			cmd.ClearFault = v
		}
	}
	return cmd, nil
}

// ParseDeviceCommand decodes and validates a DCMD payload completely: a
// malformed command changes nothing. Accepted metrics: Thresholds/Image and
// Thresholds/Pixel (Double or Float in (0, 1]), Control/Trigger (String: the
// part ID, at most 128 bytes of printable UTF-8; or Boolean true: no part
// ID), and Device Control/Product (a non-empty String).
func ParseDeviceCommand(b []byte) (DeviceCommand, error) {
	var cmd DeviceCommand
	p, err := decodeCommand(DCMD, b)
	if err != nil {
		return cmd, err
	}
	for _, m := range p.GetMetrics() {
		name := m.GetName()
		wrap := func(err error) error { return fmt.Errorf("sparkplug: DCMD metric %q: %w", name, err) }
		switch name {
		case MetricThresholdImage, MetricThresholdPixel:
			f, err := thresholdValue(m)
			if err != nil {
				return DeviceCommand{}, wrap(err)
			}
			if name == MetricThresholdImage {
				cmd.ImageThreshold = &f
			} else {
				cmd.PixelThreshold = &f
			}
		case MetricControlTrigger:
			id, err := triggerValue(m)
			if err != nil {
				return DeviceCommand{}, wrap(err)
			}
			cmd.Trigger, cmd.PartID = true, id
		case MetricControlProduct:
			s, err := stringValue(m, "the name of a [[product]]")
			if err != nil {
				return DeviceCommand{}, wrap(err)
			}
			cmd.Product = s
		}
	}
	return cmd, nil
}

// decodeCommand checks size, protobuf encoding, and that every metric has
// a known, unique name and a value.
func decodeCommand(mt MessageType, b []byte) (*pb.Payload, error) {
	if len(b) > MaxCommandPayload {
		return nil, fmt.Errorf("sparkplug: %s payload of %d bytes is larger than %d", mt, len(b), MaxCommandPayload)
	}
	p := &pb.Payload{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("sparkplug: %s payload is not a Sparkplug B protobuf: %w", mt, err)
	}
	known := map[string]bool{MetricRebirth: true, MetricReboot: true, MetricClearFault: true, MetricModelInstall: true}
	allowed := "Node Control/Rebirth, Node Control/Reboot, Node Control/Clear Fault, Node Control/Model Install"
	if mt == DCMD {
		known = map[string]bool{MetricThresholdImage: true, MetricThresholdPixel: true, MetricControlTrigger: true, MetricControlProduct: true}
		allowed = "Thresholds/Image, Thresholds/Pixel, Control/Trigger, Device Control/Product"
	}
	switch n := len(p.GetMetrics()); {
	case n == 0:
		return nil, fmt.Errorf("sparkplug: %s has no metrics; write one of %s", mt, allowed)
	case n > maxCommandMetrics:
		return nil, fmt.Errorf("sparkplug: %s has %d metrics; at most %d are allowed", mt, n, maxCommandMetrics)
	}
	seen := map[string]bool{}
	for _, m := range p.GetMetrics() {
		name := m.GetName()
		switch {
		case m.Name == nil:
			return nil, fmt.Errorf("sparkplug: %s metric without a name (alias %d): aliases are not used by this node; write by name", mt, m.GetAlias())
		case !known[name]:
			return nil, fmt.Errorf("sparkplug: %s metric %q is unknown; write one of %s", mt, truncate(name, 64), allowed)
		case seen[name]:
			return nil, fmt.Errorf("sparkplug: %s metric %q appears twice", mt, name)
		case m.GetIsNull() || m.GetValue() == nil:
			return nil, fmt.Errorf("sparkplug: %s metric %q has no value", mt, name)
		}
		seen[name] = true
	}
	return p, nil
}

func boolValue(m *pb.Payload_Metric) (bool, error) {
	v, ok := m.GetValue().(*pb.Payload_Metric_BooleanValue)
	if !ok || (m.Datatype != nil && m.GetDatatype() != uint32(pb.DataType_Boolean)) {
		return false, fmt.Errorf("must be a Boolean, got %s", describe(m))
	}
	return v.BooleanValue, nil
}

// stringValue is the value of a String (or Text) metric that must not be
// empty; what says what it should hold.
func stringValue(m *pb.Payload_Metric, what string) (string, error) {
	v, ok := m.GetValue().(*pb.Payload_Metric_StringValue)
	if !ok || (m.Datatype != nil && m.GetDatatype() != uint32(pb.DataType_String) && m.GetDatatype() != uint32(pb.DataType_Text)) {
		return "", fmt.Errorf("must be a String (%s), got %s", what, describe(m))
	}
	if v.StringValue == "" {
		return "", fmt.Errorf("is empty; write %s", what)
	}
	return v.StringValue, nil
}

func thresholdValue(m *pb.Payload_Metric) (float64, error) {
	var f float64
	switch v := m.GetValue().(type) {
	case *pb.Payload_Metric_DoubleValue:
		if m.Datatype != nil && m.GetDatatype() != uint32(pb.DataType_Double) {
			return 0, fmt.Errorf("must be a Double or Float, got %s", describe(m))
		}
		f = v.DoubleValue
	case *pb.Payload_Metric_FloatValue:
		if m.Datatype != nil && m.GetDatatype() != uint32(pb.DataType_Float) {
			return 0, fmt.Errorf("must be a Double or Float, got %s", describe(m))
		}
		f = float64(v.FloatValue)
	default:
		return 0, fmt.Errorf("must be a Double or Float, got %s", describe(m))
	}
	if math.IsNaN(f) || !(f > 0 && f <= 1) {
		return 0, fmt.Errorf("%g is out of range (0, 1]", f)
	}
	return f, nil
}

func triggerValue(m *pb.Payload_Metric) (string, error) {
	switch v := m.GetValue().(type) {
	case *pb.Payload_Metric_BooleanValue:
		if m.Datatype != nil && m.GetDatatype() != uint32(pb.DataType_Boolean) {
			break
		}
		if !v.BooleanValue {
			return "", errors.New("Boolean false does not trigger; write true, or a String part ID")
		}
		return "", nil
	case *pb.Payload_Metric_StringValue:
		if m.Datatype != nil && m.GetDatatype() != uint32(pb.DataType_String) && m.GetDatatype() != uint32(pb.DataType_Text) {
			break
		}
		return v.StringValue, checkPartID(v.StringValue)
	}
	return "", fmt.Errorf("must be a String part ID or Boolean true, got %s", describe(m))
}

func checkPartID(s string) error {
	switch {
	case len(s) > MaxPartID:
		return fmt.Errorf("part ID is %d bytes long; at most %d are allowed", len(s), MaxPartID)
	case !utf8.ValidString(s):
		return errors.New("part ID is not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("part ID contains the non-printable character %U", r)
		}
	}
	return nil
}

// describe names a metric's datatype and value kind for error messages.
func describe(m *pb.Payload_Metric) string {
	dt := "no datatype"
	if m.Datatype != nil {
		dt = "datatype " + pb.DataType(m.GetDatatype()).String()
		if _, ok := pb.DataType_name[int32(m.GetDatatype())]; !ok || m.GetDatatype() > math.MaxInt32 {
			dt = fmt.Sprintf("datatype %d", m.GetDatatype())
		}
	}
	kind := "no value"
	switch m.GetValue().(type) {
	case *pb.Payload_Metric_IntValue:
		kind = "int_value"
	case *pb.Payload_Metric_LongValue:
		kind = "long_value"
	case *pb.Payload_Metric_FloatValue:
		kind = "float_value"
	case *pb.Payload_Metric_DoubleValue:
		kind = "double_value"
	case *pb.Payload_Metric_BooleanValue:
		kind = "boolean_value"
	case *pb.Payload_Metric_StringValue:
		kind = "string_value"
	case *pb.Payload_Metric_BytesValue:
		kind = "bytes_value"
	case *pb.Payload_Metric_DatasetValue:
		kind = "dataset_value"
	case *pb.Payload_Metric_TemplateValue:
		kind = "template_value"
	case *pb.Payload_Metric_ExtensionValue:
		kind = "extension_value"
	}
	return dt + " with " + kind
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

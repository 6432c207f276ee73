package sparkplug

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Namespace is the first topic level of every Sparkplug B message.
const Namespace = "spBv1.0"

// MessageType is the third topic level (the Sparkplug verb).
type MessageType string

// Message types of an edge node and its devices.
const (
	NBIRTH MessageType = "NBIRTH"
	NDEATH MessageType = "NDEATH"
	NDATA  MessageType = "NDATA"
	NCMD   MessageType = "NCMD"
	DBIRTH MessageType = "DBIRTH"
	DDEATH MessageType = "DDEATH"
	DDATA  MessageType = "DDATA"
	DCMD   MessageType = "DCMD"
)

// maxIDLen bounds group, edge node and device IDs (one topic level each).
const maxIDLen = 128

// CheckID reports why id cannot be a Sparkplug group, edge node or device
// ID: empty, longer than 128 bytes, not UTF-8, or containing '/', '+' or
// '#'. what names the ID in the message ("group_id", …).
func CheckID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s is empty", what)
	case len(id) > maxIDLen:
		return fmt.Errorf("%s is %d bytes long; at most %d are allowed", what, len(id), maxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%s %q is not valid UTF-8", what, id)
	case strings.ContainsAny(id, "/+#"):
		return fmt.Errorf("%s %q contains '/', '+' or '#', which Sparkplug forbids in IDs", what, id)
	}
	return nil
}

// Topics names the topics of one edge node and its device.
type Topics struct {
	Group, Node, Device string
}

// NewTopics checks the three IDs with CheckID.
func NewTopics(group, node, device string) (Topics, error) {
	for _, c := range []struct{ what, id string }{{"group_id", group}, {"edge_node_id", node}, {"device_id", device}} {
		if err := CheckID(c.what, c.id); err != nil {
			return Topics{}, fmt.Errorf("sparkplug: %w", err)
		}
	}
	return Topics{Group: group, Node: node, Device: device}, nil
}

// NodeTopic is spBv1.0/<group>/<t>/<node>.
func (t Topics) NodeTopic(mt MessageType) string {
	return Namespace + "/" + t.Group + "/" + string(mt) + "/" + t.Node
}

// DeviceTopic is spBv1.0/<group>/<t>/<node>/<device>.
func (t Topics) DeviceTopic(mt MessageType) string {
	return t.NodeTopic(mt) + "/" + t.Device
}

// Parsed is a Sparkplug topic taken apart.
type Parsed struct {
	Group  string
	Type   MessageType
	Node   string
	Device string // empty for node messages
}

// ParseTopic splits spBv1.0/<group>/<type>/<node>[/<device>]; ok is false
// for anything else (STATE, other namespaces, wrong level count).
func ParseTopic(topic string) (Parsed, bool) {
	parts := strings.Split(topic, "/")
	if len(parts) < 4 || len(parts) > 5 || parts[0] != Namespace {
		return Parsed{}, false
	}
	p := Parsed{Group: parts[1], Type: MessageType(parts[2]), Node: parts[3]}
	if len(parts) == 5 {
		p.Device = parts[4]
	}
	return p, true
}

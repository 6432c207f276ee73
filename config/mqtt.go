package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/inspectd/inspectd/tomlcheck"
)

// MQTT configures result publishing to the plant broker.
type MQTT struct {
	// Enabled turns MQTT on.
	Enabled bool `toml:"enabled"`
	// Broker is the broker URL: tcp://, ssl:// (or tls://), ws:// or wss://.
	Broker string `toml:"broker"`
	// ClientID is the MQTT client id; empty means "inspectd-<station.id>".
	ClientID string `toml:"client_id"`
	// TopicPrefix starts every topic: <prefix>/<station.id>/result, ….
	TopicPrefix string `toml:"topic_prefix"`
	// QoS of results and state messages: 1 or 2 (QoS 0 loses messages
	// while disconnected).
	QoS int `toml:"qos"`
	// Username and PasswordFile authenticate to the broker; the password
	// is read from the file so it does not sit in this file.
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`
	// CAFile, CertFile and KeyFile configure TLS; CertFile and KeyFile go
	// together (client certificate).
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// KeepAlive is the MQTT keep-alive interval.
	KeepAlive Duration `toml:"keepalive"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// OutboxDir holds results not yet acknowledged by the broker; empty
	// means <state_dir>/outbox.
	OutboxDir string `toml:"outbox_dir"`
	// OutboxMaxMessages bounds the outbox; when full, the oldest results
	// are dropped and counted.
	OutboxMaxMessages int `toml:"outbox_max_messages"`
	// StatsInterval is the period of the statistics message.
	StatsInterval Duration `toml:"stats_interval"`
	// Mode is the payload convention: "json" (topics under TopicPrefix,
	// docs/mqtt.md) or "sparkplug" (Eclipse Sparkplug B 3.0,
	// docs/sparkplug.md).
	Mode string `toml:"mode"`
	// Sparkplug configures mode "sparkplug".
	Sparkplug Sparkplug `toml:"sparkplug"`
}

// MQTT modes.
const (
	MQTTModeJSON      = "json"
	MQTTModeSparkplug = "sparkplug"
)

// Sparkplug is the [mqtt.sparkplug] table: the IDs in the topics
// spBv1.0/<group_id>/<type>/<edge_node_id>[/<device_id>].
type Sparkplug struct {
	// GroupID is the Sparkplug group of this edge node.
	GroupID string `toml:"group_id"`
	// EdgeNodeID identifies this station; empty means station.id.
	EdgeNodeID string `toml:"edge_node_id"`
	// DeviceID is the camera device.
	DeviceID string `toml:"device_id"`
	// AllowReboot lets the command Node Control/Reboot restart the
	// daemon; false refuses it.
	AllowReboot bool `toml:"allow_reboot"`
}

func (m *MQTT) defaults() {
	*m = MQTT{
		Enabled:           true,
		Broker:            "tcp://127.0.0.1:1883",
		TopicPrefix:       "inspectd",
		QoS:               1,
		KeepAlive:         Dur(30 * time.Second),
		ConnectTimeout:    Dur(10 * time.Second),
		OutboxMaxMessages: 100000,
		StatsInterval:     Dur(time.Minute),
		Mode:              MQTTModeJSON,
		Sparkplug:         Sparkplug{GroupID: "inspectd", DeviceID: "camera"},
	}
}

// ClientIDFor returns ClientID, or its documented default
// "inspectd-<stationID>" when it is empty (the default depends on
// station.id, so it cannot be set by defaults).
func (m *MQTT) ClientIDFor(stationID string) string {
	if m.ClientID == "" {
		return "inspectd-" + stationID
	}
	return m.ClientID
}

// EdgeNodeIDFor returns EdgeNodeID, or its documented default, stationID,
// when it is empty.
func (s *Sparkplug) EdgeNodeIDFor(stationID string) string {
	if s.EdgeNodeID == "" {
		return stationID
	}
	return s.EdgeNodeID
}

// Validate checks the section alone with the rules Load applies to it, for
// a section built in code (tools, tests) rather than loaded: the error
// names each offending key as mqtt.<key>. A section from Load already
// passed these checks.
func (m *MQTT) Validate() error {
	v := tomlcheck.NewChecker("", nil)
	m.validate(v.In("mqtt"))
	ps := v.Problems()
	if len(ps) == 0 {
		return nil
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Key + ": " + p.Msg
	}
	return fmt.Errorf("invalid [mqtt] section: %s", strings.Join(msgs, "; "))
}

func (m *MQTT) resolvePaths(r pathResolver) {
	m.PasswordFile = r.path(m.PasswordFile)
	m.CAFile = r.path(m.CAFile)
	m.CertFile = r.path(m.CertFile)
	m.KeyFile = r.path(m.KeyFile)
	m.OutboxDir = r.stateChild(m.OutboxDir, "outbox")
}

func (m *MQTT) validate(v *Checker) {
	u, err := url.Parse(m.Broker)
	switch {
	case err != nil || u.Host == "":
		v.Errorf("broker", "%q is not a broker URL such as \"tcp://192.0.2.10:1883\"", m.Broker)
	case u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss" && u.Scheme != "mqtt" && u.Scheme != "mqtts":
		v.Errorf("broker", "%q has scheme %q; use tcp, mqtt, ssl, tls, mqtts, ws or wss", m.Broker, u.Scheme)
	case u.Port() == "" && (u.Scheme == "tcp" || u.Scheme == "ssl" || u.Scheme == "tls"):
		v.Errorf("broker", "%q has no port; add one, e.g. \":1883\" (or \":8883\" for TLS)", m.Broker)
	}
	if strings.ContainsAny(m.TopicPrefix, "+#") || strings.HasPrefix(m.TopicPrefix, "/") || strings.HasSuffix(m.TopicPrefix, "/") || m.TopicPrefix == "" {
		v.Errorf("topic_prefix", "%q is not allowed; use a non-empty topic path without wildcards (+, #) or leading/trailing '/'", m.TopicPrefix)
	} else if msg := mqttStringProblem(m.TopicPrefix); msg != "" {
		v.Errorf("topic_prefix", "%s", msg)
	}
	v.IntRange("qos", m.QoS, 1, 2, "(QoS 0 would drop results while disconnected)")
	if len(m.ClientID) > 128 {
		v.Errorf("client_id", "is %d characters long; at most 128 are allowed", len(m.ClientID))
	}
	if msg := mqttStringProblem(m.ClientID); msg != "" {
		v.Errorf("client_id", "%s", msg)
	}
	if msg := mqttStringProblem(m.Username); msg != "" {
		v.Errorf("username", "%s", msg)
	}
	if m.PasswordFile != "" {
		v.ExistingFile("password_file", m.PasswordFile)
		if m.Username == "" {
			v.Errorf("username", "must be set when mqtt.password_file is set")
		}
	}
	for _, f := range []struct{ key, path string }{{"ca_file", m.CAFile}, {"cert_file", m.CertFile}, {"key_file", m.KeyFile}} {
		if f.path != "" {
			v.ExistingFile(f.key, f.path)
		}
	}
	if (m.CertFile == "") != (m.KeyFile == "") {
		v.Errorf("cert_file", "cert_file and key_file must be set together for a client certificate")
	}
	v.Duration("keepalive", m.KeepAlive, time.Second, time.Hour)
	v.Duration("connect_timeout", m.ConnectTimeout, 100*time.Millisecond, 5*time.Minute)
	if m.OutboxDir == "" {
		// Load sets <state_dir>/outbox; only a section built in code can
		// leave it empty.
		v.Errorf("outbox_dir", "must not be empty; the client keeps unacknowledged messages there")
	}
	v.IntRange("outbox_max_messages", m.OutboxMaxMessages, 1, 10_000_000, "messages")
	v.Duration("stats_interval", m.StatsInterval, time.Second, 24*time.Hour)
	v.OneOf("mode", m.Mode, MQTTModeJSON, MQTTModeSparkplug)
	sp := v.In("sparkplug")
	for _, id := range []struct{ key, val string }{
		{"group_id", m.Sparkplug.GroupID}, {"edge_node_id", m.Sparkplug.EdgeNodeID}, {"device_id", m.Sparkplug.DeviceID},
	} {
		if id.key == "edge_node_id" && id.val == "" {
			continue // station.id
		}
		if msg := sparkplugIDProblem(id.val); msg != "" {
			sp.Errorf(id.key, "%s", msg)
		}
	}
}

// mqttStringProblem says why s cannot be sent as an MQTT UTF-8 string
// (client id, username, topic), or "": MQTT 3.1.1 (1.5.3) requires
// well-formed UTF-8 without U+0000 and lets a broker close the connection
// on other control characters (mosquitto does), so the client could never
// connect or publish with such a value.
func mqttStringProblem(s string) string {
	if !utf8.ValidString(s) {
		return fmt.Sprintf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("%q contains the control character %U", s, r)
		}
	}
	return ""
}

// sparkplugIDProblem says why s cannot be a Sparkplug ID (one topic level),
// or "".
func sparkplugIDProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > 128:
		return fmt.Sprintf("is %d bytes long; at most 128 are allowed", len(s))
	case !utf8.ValidString(s):
		return fmt.Sprintf("%q is not valid UTF-8", s)
	case strings.ContainsAny(s, "/+#"):
		return fmt.Sprintf("%q contains '/', '+' or '#', which Sparkplug forbids in IDs", s)
	}
	return ""
}

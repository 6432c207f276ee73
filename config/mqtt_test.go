package config

import (
	"strings"
	"testing"
	"time"
)

// TestMQTTValidate: the rules Load applies to [mqtt], for a section built
// in code (what mqtt.New checks), with the complete error text.
func TestMQTTValidate(t *testing.T) {
	valid := func() MQTT {
		m := Default().MQTT
		m.OutboxDir = "/var/lib/inspectd/outbox"
		return m
	}
	for _, tc := range []struct {
		name   string
		mutate func(*MQTT)
		want   string // "" = valid
	}{
		{"defaults", func(*MQTT) {}, ""},
		{"no outbox dir", func(m *MQTT) { m.OutboxDir = "" },
			"invalid [mqtt] section: mqtt.outbox_dir: must not be empty; the client keeps unacknowledged messages there"},
		{"zero value", func(m *MQTT) { *m = MQTT{OutboxDir: "/o"} }, "invalid [mqtt] section: " + strings.Join([]string{
			`mqtt.broker: "" is not a broker URL such as "tcp://192.0.2.10:1883"`,
			`mqtt.connect_timeout: 0s is out of range; allowed 100ms to 5m0s`,
			`mqtt.keepalive: 0s is out of range; allowed 1s to 1h0m0s`,
			`mqtt.mode: "" is not allowed; use one of "json", "sparkplug"`,
			`mqtt.outbox_max_messages: 0 is out of range; allowed 1 to 10000000 messages`,
			`mqtt.qos: 0 is out of range; allowed 1 to 2 (QoS 0 would drop results while disconnected)`,
			`mqtt.sparkplug.device_id: must not be empty`,
			`mqtt.sparkplug.group_id: must not be empty`,
			`mqtt.stats_interval: 0s is out of range; allowed 1s to 24h0m0s`,
			`mqtt.topic_prefix: "" is not allowed; use a non-empty topic path without wildcards (+, #) or leading/trailing '/'`,
		}, "; ")},
		{"client id control character", func(m *MQTT) { m.ClientID = "cam\a1" },
			`invalid [mqtt] section: mqtt.client_id: "cam\a1" contains the control character U+0007`},
		{"client id invalid UTF-8", func(m *MQTT) { m.ClientID = "cam\xff" },
			`invalid [mqtt] section: mqtt.client_id: "cam\xff" is not valid UTF-8`},
		{"username NUL", func(m *MQTT) { m.Username = "op\x00" },
			`invalid [mqtt] section: mqtt.username: "op\x00" contains the control character U+0000`},
		{"topic prefix newline", func(m *MQTT) { m.TopicPrefix = "plant\nA" },
			`invalid [mqtt] section: mqtt.topic_prefix: "plant\nA" contains the control character U+000A`},
		{"stats interval", func(m *MQTT) { m.StatsInterval = Dur(500 * time.Millisecond) },
			"invalid [mqtt] section: mqtt.stats_interval: 500ms is out of range; allowed 1s to 24h0m0s"},
		{"unicode client id", func(m *MQTT) { m.ClientID = "caméra-1" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.mutate(&m)
			err := m.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("error %v, want %s", err, tc.want)
			}
		})
	}
}

// TestMQTTDerivedDefaults: the defaults that depend on station.id.
func TestMQTTDerivedDefaults(t *testing.T) {
	m := Default().MQTT
	if got := m.ClientIDFor("line1-cam1"); got != "inspectd-line1-cam1" {
		t.Errorf("ClientIDFor with client_id unset = %q", got)
	}
	if got := m.Sparkplug.EdgeNodeIDFor("line1-cam1"); got != "line1-cam1" {
		t.Errorf("EdgeNodeIDFor with edge_node_id unset = %q", got)
	}
	m.ClientID, m.Sparkplug.EdgeNodeID = "c1", "n1"
	if m.ClientIDFor("s") != "c1" || m.Sparkplug.EdgeNodeIDFor("s") != "n1" {
		t.Errorf("set values not kept: %q %q", m.ClientIDFor("s"), m.Sparkplug.EdgeNodeIDFor("s"))
	}
}

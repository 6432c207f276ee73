package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestComponentTextAndJSON(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	Component(l, "camera").Info("opened", "device", "/dev/video0")
	Component(l, "camera").Debug("hidden")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("want exactly one JSON record, got %q: %v", buf.String(), err)
	}
	if rec["component"] != "camera" || rec["msg"] != "opened" || rec["device"] != "/dev/video0" {
		t.Errorf("record = %v", rec)
	}

	buf.Reset()
	l, err = New(&buf, "debug", "text")
	if err != nil {
		t.Fatal(err)
	}
	Component(l, "mqtt").Debug("connected")
	if got := buf.String(); !strings.Contains(got, "component=mqtt") || !strings.Contains(got, "level=DEBUG") {
		t.Errorf("text record = %q", got)
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct{ level, format, want string }{
		{"loud", "text", `log level "loud"`},
		{"info", "xml", `log format "xml"`},
	} {
		_, err := New(&bytes.Buffer{}, tc.level, tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, %q) error = %v, want it to contain %q", tc.level, tc.format, err, tc.want)
		}
	}
}

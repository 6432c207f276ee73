package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging/logtest"
	"github.com/inspectd/inspectd/models/bundle"
)

// fallbackEngine is a fake engine that fell back to the CPU.
type fallbackEngine struct {
	*fakeEngine
	reason error
}

func (e fallbackEngine) Provider() string      { return "cpu (fallback)" }
func (e fallbackEngine) FallbackReason() error { return e.reason }

// TestProviderFallbackDisplay: an engine that fell back shows
// "cpu (fallback)" in the status and in inspectd_model_info, and Load logs
// it at WARN with the requested provider and the reason; an engine that
// did not fall back logs no such warning.
func TestProviderFallbackDisplay(t *testing.T) {
	for _, fellBack := range []bool{true, false} {
		var logs logtest.Buffer
		reason := errors.New(`execution provider "cuda" is not available in the onnxruntime library /x`)
		h := startHarness(t, "software", func(d *Deps) {
			d.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			d.Config.Model.Provider = "cuda"
			d.NewEngine = func(b *bundle.Bundle, m config.Model) (inspection.Engine, error) {
				var r error
				if fellBack {
					r = reason
				}
				return fallbackEngine{&fakeEngine{w: b.Manifest.Input.Width, h: b.Manifest.Input.Height}, r}, nil
			}
		})
		st := h.d.Status()
		if st.Model.Provider != "cpu (fallback)" {
			t.Errorf("status provider %q", st.Model.Provider)
		}
		if got := testutil.ToFloat64(h.d.metrics.modelInfo.WithLabelValues(st.Model.Product, st.Model.BundleHash, "cpu (fallback)")); got != 1 {
			t.Errorf("inspectd_model_info{provider=\"cpu (fallback)\"} = %v", got)
		}
		warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "MODEL RUNS ON THE CPU") &&
			strings.Contains(logs.String(), "requested=cuda") && strings.Contains(logs.String(), `is not available in the onnxruntime library /x`)
		if warned != fellBack {
			t.Errorf("fell back %v, warned %v:\n%s", fellBack, warned, logs.String())
		}
		h.stop()
	}
}

// TestExtendStartup: a load longer than the interval asks systemd for
// more start-up time, a short one sends nothing, and the requests stop at
// the cap.
func TestExtendStartup(t *testing.T) {
	for _, tc := range []struct {
		name          string
		load, every   time.Duration
		max           time.Duration
		min, maxCount int
	}{
		{"short load", 20 * time.Millisecond, time.Second, time.Minute, 0, 0},
		{"long load", 400 * time.Millisecond, 50 * time.Millisecond, time.Minute, 4, 8},
		{"capped", 400 * time.Millisecond, 50 * time.Millisecond, 120 * time.Millisecond, 1, 2},
	} {
		n := &recordingNotifier{}
		d := &Daemon{notify: n, log: slog.New(slog.DiscardHandler)}
		stop := d.extendStartup(tc.every, tc.max)
		time.Sleep(tc.load)
		stop()
		got := n.count("EXTEND_TIMEOUT_USEC=")
		if got < tc.min || got > tc.maxCount {
			t.Errorf("%s: %d EXTEND_TIMEOUT_USEC messages, want %d to %d: %q", tc.name, got, tc.min, tc.maxCount, n.lines)
		}
		if got > 0 && !strings.HasPrefix(n.lines[0], fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d\nSTATUS=loading the model", (2*tc.every).Microseconds())) {
			t.Errorf("%s: message %q", tc.name, n.lines[0])
		}
	}
}

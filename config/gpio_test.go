package config

import (
	"testing"
	"time"

	"github.com/inspectd/inspectd/tomlcheck"
)

// TestGPIODefaults pins the defaults io/gpio relies on: it re-defaults
// nothing, so these are the values a station runs with.
func TestGPIODefaults(t *testing.T) {
	g := Default().GPIO
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"reject_polarity", g.RejectPolarity, "energise_to_pass"},
		{"reject_mode", g.RejectMode, "time"},
		{"reject_pulse", g.RejectPulse.D, 100 * time.Millisecond},
		{"strobe_pulse", g.StrobePulse.D, 20 * time.Millisecond},
		{"late_policy", g.LatePolicy, "reject"},
		{"max_parts_in_flight", g.MaxPartsInFlight, 64},
		{"event_buffer", g.EventBuffer, 64},
		{"bias", g.Bias, "as_is"},
		{"drive", g.Drive, "push_pull"},
		{"part_present_edge", g.PartPresentEdge, "rising"},
		{"debounce", g.Debounce.D, 5 * time.Millisecond},
	} {
		if c.got != c.want {
			t.Errorf("gpio.%s defaults to %v; want %v", c.key, c.got, c.want)
		}
	}
	g.Enabled, g.RejectLine = true, "PQ.05"
	v := tomlcheck.NewChecker("f", nil)
	g.validate(v.In("gpio"))
	if err := v.Err(); err != nil {
		t.Errorf("enabled defaults with a reject line do not validate: %v", err)
	}
}

// TestGPIOValidateRefusesUnusable: every value the actuator cannot use is
// refused here, with its key and what is allowed.
func TestGPIOValidateRefusesUnusable(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*GPIO)
		want string
	}{
		{"zero reject pulse", func(g *GPIO) { g.RejectPulse = Dur(0) }, "f: gpio.reject_pulse: 0s is out of range; allowed 1ms to 10s"},
		{"zero strobe pulse", func(g *GPIO) { g.StrobePulse = Dur(0) }, "f: gpio.strobe_pulse: 0s is out of range; allowed 1ms to 10s"},
		{"no part in flight", func(g *GPIO) { g.MaxPartsInFlight = 0 }, "f: gpio.max_parts_in_flight: 0 is out of range; allowed 1 to 65536 parts"},
		{"small event buffer", func(g *GPIO) { g.EventBuffer = 0 }, "f: gpio.event_buffer: 0 is out of range; allowed 16 to 4096 events"},
		{"negative counts", func(g *GPIO) { g.RejectCounts = -1 }, "f: gpio.reject_counts: -1 is out of range; allowed 0 to 1073741824 encoder pulses"},
		{"unknown polarity", func(g *GPIO) { g.RejectPolarity = "" }, `f: gpio.reject_polarity: "" is not allowed; use one of "energise_to_pass", "energise_to_reject"`},
		{"unknown edge", func(g *GPIO) { g.PartPresentEdge = "both" }, `f: gpio.part_present_edge: "both" is not allowed; use one of "rising", "falling"`},
		{"no reject line", func(g *GPIO) { g.RejectLine = " " }, "f: gpio.reject_line: must not be empty; name the reject actuator line (name or offset)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := Default().GPIO
			g.Enabled, g.RejectLine = true, "PQ.05"
			c.edit(&g)
			v := tomlcheck.NewChecker("f", nil)
			g.validate(v.In("gpio"))
			if err := v.Err(); err == nil || err.Error() != c.want {
				t.Errorf("error %v\nwant %s", err, c.want)
			}
		})
	}
}

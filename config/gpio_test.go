package config

import (
	"strings"
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
	// Enabled in time mode, the defaults need the measured reject_delay
	// (issue 24 #5: the old default "0s" rejected every part physically
	// while the results said OK).
	g.Enabled, g.RejectLine = true, "PQ.05"
	v := tomlcheck.NewChecker("f", nil)
	g.validate(v.In("gpio"))
	if err := v.Err(); err == nil || !strings.HasPrefix(err.Error(), "f: gpio.reject_delay: 0s leaves no time for a verdict") {
		t.Errorf("enabled defaults without reject_delay: %v; want reject_delay refused", err)
	}
	g.RejectDelay = Dur(400 * time.Millisecond)
	v = tomlcheck.NewChecker("f", nil)
	g.validate(v.In("gpio"))
	if err := v.Err(); err != nil {
		t.Errorf("enabled defaults with a reject line and delay do not validate: %v", err)
	}
}

// TestGPIORejectDelay: time mode with GPIO enabled needs a reject_delay
// above 0, whatever the polarity and late_policy (issue 24 #5); encoder
// mode and a disabled section do not use it.
func TestGPIORejectDelay(t *testing.T) {
	const prefix = `f: gpio.reject_delay: 0s leaves no time for a verdict: reject_mode "time" actuates reject_delay after the trigger, so every part would reach the actuator before its verdict and late_policy `
	const tail = "; set the measured time from the trigger to the reject station"
	for _, c := range []struct {
		name string
		edit func(*GPIO)
		want string
	}{
		{"energise_to_pass, late reject", func(g *GPIO) {},
			prefix + `"reject" would decide it: every part rejected physically while the results say OK` + tail},
		{"energise_to_reject, late reject", func(g *GPIO) { g.RejectPolarity = "energise_to_reject" },
			prefix + `"reject" would decide it: every part rejected physically while the results say OK` + tail},
		{"late pass", func(g *GPIO) { g.LatePolicy = "pass" },
			prefix + `"pass" would decide it: every part let through, NG ones included` + tail},
		{"1ms", func(g *GPIO) { g.RejectDelay = Dur(time.Millisecond) }, ""},
		{"encoder mode", func(g *GPIO) { g.RejectMode, g.EncoderLine, g.RejectCounts = "encoder", "PQ.06", 100 }, ""},
		{"disabled", func(g *GPIO) { g.Enabled = false }, ""},
		{"negative (out of range, once)", func(g *GPIO) { g.RejectDelay = Dur(-time.Second) },
			"f: gpio.reject_delay: -1s is out of range; allowed 0s to 1m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := Default().GPIO
			g.Enabled, g.RejectLine = true, "PQ.05"
			c.edit(&g)
			v := tomlcheck.NewChecker("f", nil)
			g.validate(v.In("gpio"))
			err := v.Err()
			if c.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != c.want {
				t.Errorf("error %v\nwant %s", err, c.want)
			}
		})
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
			g.Enabled, g.RejectLine, g.RejectDelay = true, "PQ.05", Dur(400*time.Millisecond)
			c.edit(&g)
			v := tomlcheck.NewChecker("f", nil)
			g.validate(v.In("gpio"))
			if err := v.Err(); err == nil || err.Error() != c.want {
				t.Errorf("error %v\nwant %s", err, c.want)
			}
		})
	}
}

package config

import "time"

// GPIO configures the station's digital I/O through the Linux GPIO
// character device.
type GPIO struct {
	// Enabled turns GPIO on; when false the reject output is not driven.
	Enabled bool `toml:"enabled"`
	// Chip is the GPIO chip name or path, e.g. "gpiochip0".
	Chip string `toml:"chip"`
	// RejectLine is the reject actuator output, by line name or offset
	// (required when enabled).
	RejectLine string `toml:"reject_line"`
	// RejectPolarity is "energise_to_pass" (fail-safe: a dead daemon
	// rejects) or "energise_to_reject".
	RejectPolarity string `toml:"reject_polarity"`
	// RejectDelay is the time from trigger to the reject pulse.
	RejectDelay Duration `toml:"reject_delay"`
	// RejectPulse is how long the reject output is held.
	RejectPulse Duration `toml:"reject_pulse"`
	// ActiveLow inverts the electrical level of every configured line.
	ActiveLow bool `toml:"active_low"`
	// PartPresentLine is the part-present sensor input for trigger mode
	// "gpio"; empty when unused.
	PartPresentLine string `toml:"part_present_line"`
	// PartPresentEdge is "rising" or "falling".
	PartPresentEdge string `toml:"part_present_edge"`
	// Debounce filters part-present edges closer than this.
	Debounce Duration `toml:"debounce"`
	// ReadyLine and FaultLine drive status lamps; empty when unused.
	ReadyLine string `toml:"ready_line"`
	FaultLine string `toml:"fault_line"`
	// EventBuffer is the kernel edge-event buffer size (the kernel default
	// of 16 loses edges under load).
	EventBuffer int `toml:"event_buffer"`
}

func (g *GPIO) defaults() {
	*g = GPIO{
		Chip:            "gpiochip0",
		RejectPolarity:  "energise_to_pass",
		RejectDelay:     Dur(0),
		RejectPulse:     Dur(100 * time.Millisecond),
		PartPresentEdge: "rising",
		Debounce:        Dur(5 * time.Millisecond),
		EventBuffer:     64,
	}
}

func (g *GPIO) validate(v *Checker) {
	v.OneOf("reject_polarity", g.RejectPolarity, "energise_to_pass", "energise_to_reject")
	v.OneOf("part_present_edge", g.PartPresentEdge, "rising", "falling")
	v.Duration("reject_delay", g.RejectDelay, 0, time.Minute)
	v.Duration("reject_pulse", g.RejectPulse, time.Millisecond, 10*time.Second)
	v.Duration("debounce", g.Debounce, 0, time.Second)
	v.IntRange("event_buffer", g.EventBuffer, 16, 4096, "events")
	if g.Enabled {
		v.Required("chip", g.Chip, `name the GPIO chip, e.g. "gpiochip0"`)
		v.Required("reject_line", g.RejectLine, "name the reject actuator line (name or offset)")
	}
	seen := map[string]string{}
	for _, l := range []struct{ key, val string }{
		{"reject_line", g.RejectLine}, {"part_present_line", g.PartPresentLine},
		{"ready_line", g.ReadyLine}, {"fault_line", g.FaultLine},
	} {
		if l.val == "" {
			continue
		}
		if other, dup := seen[l.val]; dup {
			v.Errorf(l.key, "%q is already used by gpio.%s; each line has one role", l.val, other)
		}
		seen[l.val] = l.key
	}
}

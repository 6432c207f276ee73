package config

import (
	"strconv"
	"strings"
	"time"
)

// GPIO configures the station's digital I/O through the Linux GPIO
// character device (or the simulated chip "sim").
//
// Lines are named by line name (e.g. a Jetson header name "PQ.05", looked
// up on Chip first, then on every chip) or by offset on Chip ("12").
type GPIO struct {
	// Enabled turns GPIO on; when false the reject output is not driven.
	Enabled bool `toml:"enabled"`
	// Chip is the GPIO chip name or path, e.g. "gpiochip0", or "sim" for
	// the simulated chip of the demo and the acceptance checks.
	Chip string `toml:"chip"`
	// RejectLine is the reject actuator output, by line name or offset
	// (required when enabled).
	RejectLine string `toml:"reject_line"`
	// RejectPolarity is "energise_to_pass" (fail-safe: the actuator is
	// energised for reject_pulse only for parts with an OK verdict in
	// time, so a dead daemon or a power loss rejects) or
	// "energise_to_reject" (energised for reject_pulse for NG and ERROR
	// parts).
	RejectPolarity string `toml:"reject_polarity"`
	// RejectMode is "time" (actuate reject_delay after the trigger) or
	// "encoder" (actuate reject_counts encoder pulses after the trigger).
	RejectMode string `toml:"reject_mode"`
	// RejectDelay is the time from trigger to the actuation (time mode):
	// how long a part takes from the trigger point to the reject station,
	// which is all the time its verdict has. Required (above 0) when GPIO
	// is enabled in time mode: at 0 no verdict can ever be in time, so
	// late_policy would decide every part (with energise_to_pass every
	// part would be rejected while the results say OK).
	RejectDelay Duration `toml:"reject_delay"`
	// RejectCounts is the number of encoder pulses from trigger to the
	// actuation (encoder mode).
	RejectCounts int `toml:"reject_counts"`
	// RejectPulse is how long the actuator output is held (1 ms to 10 s).
	RejectPulse Duration `toml:"reject_pulse"`
	// MinPartSpacing is the shortest time between two parts at the reject
	// station at the line's top speed; reject_pulse must be shorter. 0
	// means not declared (not checked).
	MinPartSpacing Duration `toml:"min_part_spacing"`
	// LatePolicy decides the fate of a part whose verdict has not arrived
	// at its actuation time: "reject" (fail-safe) or "pass". The late
	// verdict is counted and reported either way.
	LatePolicy string `toml:"late_policy"`
	// MaxPartsInFlight bounds the parts between trigger and actuation
	// (at least 1); one more latches a fault (fault lamp, event, every
	// part rejected) until it is cleared.
	MaxPartsInFlight int `toml:"max_parts_in_flight"`
	// ActiveLow inverts the electrical level of every configured line.
	ActiveLow bool `toml:"active_low"`
	// Bias of the input lines: "as_is", "disabled", "pull_up" or
	// "pull_down".
	Bias string `toml:"bias"`
	// Drive of the output lines: "push_pull", "open_drain" or
	// "open_source".
	Drive string `toml:"drive"`
	// PartPresentLine is the part-present sensor input for trigger mode
	// "gpio"; empty when unused.
	PartPresentLine string `toml:"part_present_line"`
	// PartPresentEdge is "rising" or "falling".
	PartPresentEdge string `toml:"part_present_edge"`
	// Debounce filters part-present edges closer than this.
	Debounce Duration `toml:"debounce"`
	// EncoderLine counts conveyor pulses (rising edges) for encoder mode;
	// empty when unused.
	EncoderLine string `toml:"encoder_line"`
	// ReadyLine and FaultLine drive status lamps; empty when unused.
	ReadyLine string `toml:"ready_line"`
	FaultLine string `toml:"fault_line"`
	// OKLine, NGLine and StrobeLine hand each verdict to a PLC: the OK or
	// NG line is set, then StrobeLine pulses for StrobePulse; empty when
	// unused (OK and NG lines need the strobe). StrobePulse is 1 ms to
	// 10 s.
	OKLine      string   `toml:"ok_line"`
	NGLine      string   `toml:"ng_line"`
	StrobeLine  string   `toml:"strobe_line"`
	StrobePulse Duration `toml:"strobe_pulse"`
	// EventBuffer is the kernel edge-event buffer size (the kernel default
	// of 16 loses edges under load), 16 to 4096 events. It also sizes the
	// hand-off from the part-present edge handler to the trigger goroutine.
	EventBuffer int `toml:"event_buffer"`
}

// defaults are the only defaults of the gpio section: io/gpio takes the
// validated values as they are.
func (g *GPIO) defaults() {
	*g = GPIO{
		Chip:             "gpiochip0",
		RejectPolarity:   "energise_to_pass",
		RejectMode:       "time",
		RejectDelay:      Dur(0),
		RejectPulse:      Dur(100 * time.Millisecond),
		MinPartSpacing:   Dur(0),
		LatePolicy:       "reject",
		MaxPartsInFlight: 64,
		Bias:             "as_is",
		Drive:            "push_pull",
		PartPresentEdge:  "rising",
		Debounce:         Dur(5 * time.Millisecond),
		StrobePulse:      Dur(20 * time.Millisecond),
		EventBuffer:      64,
	}
}

func (g *GPIO) validate(v *Checker) {
	v.OneOf("reject_polarity", g.RejectPolarity, "energise_to_pass", "energise_to_reject")
	v.OneOf("reject_mode", g.RejectMode, "time", "encoder")
	v.OneOf("late_policy", g.LatePolicy, "reject", "pass")
	v.OneOf("bias", g.Bias, "as_is", "disabled", "pull_up", "pull_down")
	v.OneOf("drive", g.Drive, "push_pull", "open_drain", "open_source")
	v.OneOf("part_present_edge", g.PartPresentEdge, "rising", "falling")
	v.Duration("reject_delay", g.RejectDelay, 0, time.Minute)
	v.Duration("reject_pulse", g.RejectPulse, time.Millisecond, 10*time.Second)
	v.Duration("min_part_spacing", g.MinPartSpacing, 0, time.Minute)
	v.Duration("strobe_pulse", g.StrobePulse, time.Millisecond, 10*time.Second)
	v.Duration("debounce", g.Debounce, 0, time.Second)
	v.IntRange("event_buffer", g.EventBuffer, 16, 4096, "events")
	v.IntRange("max_parts_in_flight", g.MaxPartsInFlight, 1, 65536, "parts")
	v.IntRange("reject_counts", g.RejectCounts, 0, 1<<30, "encoder pulses")
	if g.MinPartSpacing.Valid() && g.RejectPulse.Valid() && g.MinPartSpacing.D > 0 && g.RejectPulse.D >= g.MinPartSpacing.D {
		v.Errorf("reject_pulse", "%s is not shorter than gpio.min_part_spacing (%s); one pulse would also act on the next part — shorten the pulse", g.RejectPulse.D, g.MinPartSpacing.D)
	}
	if g.RejectMode == "encoder" {
		if g.EncoderLine == "" {
			v.Errorf("reject_mode", `"encoder" needs gpio.encoder_line set (the conveyor encoder input)`)
		}
		if g.RejectCounts < 1 {
			v.Errorf("reject_counts", `%d is out of range; reject_mode "encoder" needs 1 or more encoder pulses from trigger to reject station`, g.RejectCounts)
		}
	}
	if g.Enabled && g.RejectMode == "time" && g.RejectDelay.Valid() && g.RejectDelay.D == 0 {
		v.Errorf("reject_delay", `%s leaves no time for a verdict: reject_mode "time" actuates reject_delay after the trigger, so every part would reach the actuator before its verdict and late_policy %q would decide it: %s; set the measured time from the trigger to the reject station`,
			g.RejectDelay.D, g.LatePolicy, zeroDelayFate(g))
	}
	if g.Enabled {
		v.Required("chip", g.Chip, `name the GPIO chip, e.g. "gpiochip0", or "sim"`)
		v.Required("reject_line", g.RejectLine, "name the reject actuator line (name or offset)")
	}
	if (g.OKLine != "" || g.NGLine != "") && g.StrobeLine == "" {
		key := "ok_line"
		if g.OKLine == "" {
			key = "ng_line"
		}
		v.Errorf(key, "needs gpio.strobe_line set; the PLC reads the OK/NG lines on the strobe")
	}
	seen := map[string]string{}
	for _, l := range []struct{ key, val string }{
		{"reject_line", g.RejectLine}, {"part_present_line", g.PartPresentLine},
		{"encoder_line", g.EncoderLine}, {"ready_line", g.ReadyLine}, {"fault_line", g.FaultLine},
		{"ok_line", g.OKLine}, {"ng_line", g.NGLine}, {"strobe_line", g.StrobeLine},
	} {
		if l.val == "" {
			continue
		}
		id, desc := lineIdentity(l.val)
		if other, dup := seen[id]; dup {
			if desc != strconv.Quote(l.val) {
				v.Errorf(l.key, "%q is %s, already used by gpio.%s; each line has one role", l.val, desc, other)
			} else {
				v.Errorf(l.key, "%q is already used by gpio.%s; each line has one role", l.val, other)
			}
			continue
		}
		seen[id] = l.key
	}
}

// zeroDelayFate says what a zero reject_delay would do to every part.
func zeroDelayFate(g *GPIO) string {
	if g.LatePolicy == "pass" {
		return "every part let through, NG ones included"
	}
	return "every part rejected physically while the results say OK"
}

// lineIdentity normalises a line spec for the one-role check: offsets are
// compared as numbers ("12" and "012" are the same line), names as written
// without surrounding spaces.
func lineIdentity(spec string) (id, desc string) {
	s := strings.TrimSpace(spec)
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return "#" + strconv.Itoa(n), "offset " + strconv.Itoa(n)
	}
	return "name:" + s, strconv.Quote(spec)
}

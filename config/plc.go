package config

import "time"

// PLC configures the Modbus TCP output that hands every verdict to the
// line PLC.
//
// Per part the daemon writes three consecutive holding registers from
// RegisterBase — part sequence (1..65535, wrapping past 0), verdict code
// (1 OK, 2 NG, 3 ERROR) and score × 1000 (0..65535) — and the verdict
// coil (true = reject), then signals the PLC: with handshake "strobe" it
// sets the strobe coil and clears it once the PLC has copied the sequence
// into the ack register; with "sequence" the sequence register is written
// last and its change is the signal, acknowledged the same way.
//
// A verdict is only useful to the PLC while its part has not yet passed
// the reject point. A result that waited in the output's queue longer than
// MaxVerdictAge is therefore not handed over as a normal verdict: it takes
// LateAction instead, and is never presented as the verdict of another
// part.
type PLC struct {
	// Enabled turns the Modbus TCP output on.
	Enabled bool `toml:"enabled"`
	// Address is the PLC's Modbus TCP host:port.
	Address string `toml:"address"`
	// UnitID is the Modbus unit (slave) id.
	UnitID int `toml:"unit_id"`
	// RegisterBase is the first of the three holding registers
	// (sequence, verdict code, score × 1000).
	RegisterBase int `toml:"register_base"`
	// VerdictCoil is the coil set true for a rejected part.
	VerdictCoil int `toml:"verdict_coil"`
	// Handshake is "strobe" or "sequence".
	Handshake string `toml:"handshake"`
	// StrobeCoil is the coil pulsed for each part (handshake "strobe").
	StrobeCoil int `toml:"strobe_coil"`
	// AckRegister is the holding register where the PLC echoes the
	// sequence it has taken.
	AckRegister int `toml:"ack_register"`
	// AckTimeout bounds the wait for the PLC's acknowledgement.
	AckTimeout Duration `toml:"ack_timeout"`
	// Timeout bounds one Modbus request.
	Timeout Duration `toml:"timeout"`
	// ReconnectMin and ReconnectMax bound the reconnect backoff, which
	// doubles after every failed attempt.
	ReconnectMin Duration `toml:"reconnect_min"`
	ReconnectMax Duration `toml:"reconnect_max"`
	// MaxVerdictAge is the oldest verdict (now minus the result's verdict
	// time, when the output takes it from its queue) still handed to the
	// PLC as a verdict. Set it to the time a part needs from the camera to
	// the reject point minus the inspection time and the PLC's own
	// reaction time: an older verdict arrives after its part has passed,
	// where it is worse than none. The default, 1s, suits a part that
	// reaches the reject point a little over a second after its trigger
	// and leaves room for a normal handshake (ack_timeout 500ms); 1ms..1h.
	MaxVerdictAge Duration `toml:"max_verdict_age"`
	// LateAction is what the PLC sees for a part whose verdict is older
	// than MaxVerdictAge: "drop" (the default) writes nothing for it, so
	// the PLC's own handshake timeout rejects the part and the next part's
	// sequence shows the gap; "error" writes it as verdict code 3 (ERROR,
	// verdict coil set) under the part's own sequence, for a PLC that
	// matches verdicts to parts by sequence and wants to be told. Either
	// way the late verdict is counted and raised as a plc_late_verdict
	// event, and it never becomes the verdict of the next part.
	LateAction string `toml:"late_action"`
}

func (p *PLC) defaults() {
	*p = PLC{
		Address:      "127.0.0.1:502",
		UnitID:       1,
		RegisterBase: 0,
		VerdictCoil:  0,
		Handshake:    "strobe",
		StrobeCoil:   1,
		AckRegister:  10,
		AckTimeout:   Dur(500 * time.Millisecond),
		Timeout:      Dur(time.Second),
		ReconnectMin: Dur(100 * time.Millisecond),
		ReconnectMax: Dur(10 * time.Second),

		MaxVerdictAge: Dur(time.Second),
		LateAction:    "drop",
	}
}

func (p *PLC) validate(v *Checker) {
	if p.Enabled {
		v.HostPort("address", p.Address)
	}
	v.IntRange("unit_id", p.UnitID, 0, 255, "")
	v.IntRange("register_base", p.RegisterBase, 0, 65533, "(three registers follow)")
	v.IntRange("verdict_coil", p.VerdictCoil, 0, 65535, "")
	v.IntRange("strobe_coil", p.StrobeCoil, 0, 65535, "")
	v.IntRange("ack_register", p.AckRegister, 0, 65535, "")
	v.OneOf("handshake", p.Handshake, "strobe", "sequence")
	v.Duration("ack_timeout", p.AckTimeout, time.Millisecond, time.Minute)
	v.Duration("timeout", p.Timeout, time.Millisecond, time.Minute)
	v.Duration("reconnect_min", p.ReconnectMin, time.Millisecond, time.Hour)
	v.Duration("reconnect_max", p.ReconnectMax, time.Millisecond, time.Hour)
	v.Duration("max_verdict_age", p.MaxVerdictAge, time.Millisecond, time.Hour)
	v.OneOf("late_action", p.LateAction, "drop", "error")
	if p.ReconnectMin.Valid() && p.ReconnectMax.Valid() && p.ReconnectMax.D < p.ReconnectMin.D {
		v.Errorf("reconnect_max", "%s is shorter than plc.reconnect_min (%s)", p.ReconnectMax.D, p.ReconnectMin.D)
	}
	if p.AckRegister >= p.RegisterBase && p.AckRegister <= p.RegisterBase+2 {
		v.Errorf("ack_register", "%d overlaps the registers %d..%d written by the daemon; the PLC writes the ack register", p.AckRegister, p.RegisterBase, p.RegisterBase+2)
	}
	if p.Handshake == "strobe" && p.StrobeCoil == p.VerdictCoil {
		v.Errorf("strobe_coil", "%d is also plc.verdict_coil; use two coils", p.StrobeCoil)
	}
}

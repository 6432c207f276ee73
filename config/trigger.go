package config

import "time"

// Trigger modes.
const (
	// TriggerFreeRun inspects the newest frame continuously, skipping
	// frames while busy.
	TriggerFreeRun = "free_run"
	// TriggerSoftware inspects one part per trigger from the HTTP API
	// (POST /api/trigger) or an MQTT trigger command.
	TriggerSoftware = "software"
	// TriggerGPIO inspects one part per part-present edge.
	TriggerGPIO = "gpio"
)

// Trigger decides when a frame becomes an inspected part.
type Trigger struct {
	// Mode is "free_run", "software" or "gpio"; see the Trigger* constants.
	Mode string `toml:"mode"`
	// Timeout bounds the wait for a triggered part's frame; a trigger
	// without a frame in time yields an ERROR verdict (rejected), never a
	// pass.
	Timeout Duration `toml:"timeout"`
}

func (t *Trigger) defaults() {
	*t = Trigger{Mode: TriggerFreeRun, Timeout: Dur(2 * time.Second)}
}

func (t *Trigger) validate(v *Checker) {
	v.OneOf("mode", t.Mode, TriggerFreeRun, TriggerSoftware, TriggerGPIO)
	v.Duration("timeout", t.Timeout, 10*time.Millisecond, time.Minute)
	// Whether "gpio" has its lines is checked in validateAcrossSections.
}

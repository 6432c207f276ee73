package config

import "time"

// Trigger decides when a frame becomes an inspected part.
type Trigger struct {
	// Mode is "free_run" (inspect the latest frame continuously, dropping
	// frames when busy), "gpio" (one verdict per part-present edge) or
	// "mqtt" (one verdict per software trigger message).
	Mode string `toml:"mode"`
	// Timeout bounds one triggered inspection; a trigger without a verdict
	// in time is reported NG with reason "error", never as a pass.
	Timeout Duration `toml:"timeout"`
}

func (t *Trigger) defaults() {
	*t = Trigger{Mode: "free_run", Timeout: Dur(2 * time.Second)}
}

func (t *Trigger) validate(v *Checker) {
	v.OneOf("mode", t.Mode, "free_run", "gpio", "mqtt")
	v.Duration("timeout", t.Timeout, 10*time.Millisecond, time.Minute)
	if t.Mode == "gpio" && (!v.root.GPIO.Enabled || v.root.GPIO.PartPresentLine == "") {
		v.Errorf("mode", `"gpio" needs gpio.enabled = true and gpio.part_present_line set`)
	}
	if t.Mode == "mqtt" && !v.root.MQTT.Enabled {
		v.Errorf("mode", `"mqtt" needs mqtt.enabled = true`)
	}
}

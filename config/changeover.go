package config

import (
	"strconv"
	"time"
)

// Changeover is the [changeover] table: who chooses the active product
// among the [[product]]s, and what a station does when a selection cannot
// be honoured.
type Changeover struct {
	// Source is the one authoritative product selector: "none" (one fixed
	// product, the default), "mqtt" (cmd/product), "sparkplug" (DCMD
	// Device Control/Product), "http" (POST /api/product), "plc" (a
	// holding register) or "gpio" (binary-coded input lines).
	Source string `toml:"source"`
	// Initial is the product active at start-up; "" = the first
	// [[product]].
	Initial string `toml:"initial"`
	// OnFailure is what a refused or failed selection does: "keep" stays
	// on the current product; "reject" switches anyway and rejects every
	// part (ERROR "product_unavailable") until a good selection.
	OnFailure string `toml:"on_failure"`
	// MemoryBudgetMB bounds the memory of the bundles kept loaded and
	// warm (in [[product]] order, the active one first); the others load
	// on demand when selected.
	MemoryBudgetMB int `toml:"memory_budget_mb"`
	// GPIOLines are the code input lines of source "gpio", least
	// significant bit first (line name or offset on gpio.chip).
	GPIOLines []string `toml:"gpio_lines"`
	// PLCRegister is the holding register the PLC writes the product
	// code into (source "plc").
	PLCRegister int `toml:"plc_register"`
	// PLCPoll is how often that register is read.
	PLCPoll Duration `toml:"plc_poll"`
}

// Product selection sources (changeover.source).
const (
	ChangeoverNone      = "none"
	ChangeoverMQTT      = "mqtt"
	ChangeoverSparkplug = "sparkplug"
	ChangeoverHTTP      = "http"
	ChangeoverPLC       = "plc"
	ChangeoverGPIO      = "gpio"
)

// What a refused or failed selection does (changeover.on_failure).
const (
	OnFailureKeep   = "keep"
	OnFailureReject = "reject"
)

// MaxGPIOCodeLines is the most code lines changeover.gpio_lines may name
// (codes up to 65535, like [[product]] code).
const MaxGPIOCodeLines = 16

func (c *Changeover) defaults() {
	*c = Changeover{Source: ChangeoverNone, OnFailure: OnFailureKeep, MemoryBudgetMB: 1024,
		GPIOLines: []string{}, PLCPoll: Dur(100 * time.Millisecond)}
}

func (c *Changeover) validate(v *Checker) {
	v.OneOf("source", c.Source, ChangeoverNone, ChangeoverMQTT, ChangeoverSparkplug, ChangeoverHTTP, ChangeoverPLC, ChangeoverGPIO)
	v.OneOf("on_failure", c.OnFailure, OnFailureKeep, OnFailureReject)
	v.IntRange("memory_budget_mb", c.MemoryBudgetMB, 0, 1<<20, "MiB (0 = load every product on demand)")
	v.IntRange("plc_register", c.PLCRegister, 0, 65535, "")
	v.Duration("plc_poll", c.PLCPoll, 10*time.Millisecond, 10*time.Second)
	if c.Source == ChangeoverGPIO {
		switch n := len(c.GPIOLines); {
		case n == 0:
			v.Errorf("gpio_lines", `must name 1 to %d input lines (least significant bit first) for source "gpio"`, MaxGPIOCodeLines)
		case n > MaxGPIOCodeLines:
			v.Errorf("gpio_lines", "names %d lines; allowed 1 to %d (product codes up to 65535)", n, MaxGPIOCodeLines)
		}
	} else if len(c.GPIOLines) > 0 {
		v.Errorf("gpio_lines", `is set but source is %q; the code lines apply to source "gpio" only`, c.Source)
	}
	seen := map[string]int{}
	for i, l := range c.GPIOLines {
		if l == "" {
			v.Errorf("gpio_lines", "line %d is empty; name each code line by line name or offset", i+1)
			continue
		}
		id, _ := lineIdentity(l)
		if j, dup := seen[id]; dup {
			v.Errorf("gpio_lines", "line %d %q is line %d again; each code bit needs its own input", i+1, l, j+1)
			continue
		}
		seen[id] = i
	}
}

// validateChangeover checks [changeover] against the [[product]]s and the
// sections it relies on.
func (c *Config) validateChangeover(v *Checker) {
	ch := c.Changeover
	cv := v.In("changeover")
	if len(c.Products) == 0 {
		if ch.Source != ChangeoverNone {
			cv.Errorf("source", "is %q but no [[product]] is configured; a station with one product (model.bundle) has nothing to select — add [[product]] tables or set source = \"none\"", ch.Source)
		}
		if ch.Initial != "" {
			cv.Errorf("initial", "%q names a product but no [[product]] is configured", ch.Initial)
		}
	} else if ch.Initial != "" && c.productIndex(ch.Initial) < 0 {
		cv.Errorf("initial", "%q is not the name of a [[product]]; use one of %s", ch.Initial, quoteNames(c.Products))
	}
	switch ch.Source {
	case ChangeoverPLC:
		if !c.PLC.Enabled {
			cv.Errorf("source", `"plc" needs plc.enabled = true (the register is read over the PLC connection)`)
		}
	case ChangeoverGPIO:
		if !c.GPIO.Enabled {
			cv.Errorf("source", `"gpio" needs gpio.enabled = true (the code lines are read at each part-present edge)`)
		}
		if c.Trigger.Mode != TriggerGPIO {
			cv.Errorf("source", `"gpio" reads the code lines at each part-present edge and needs trigger.mode = "gpio", not %q`, c.Trigger.Mode)
		}
		c.checkCodeLinesFree(cv)
	case ChangeoverMQTT, ChangeoverSparkplug:
		if !c.MQTT.Enabled {
			cv.Errorf("source", "%q needs mqtt.enabled = true", ch.Source)
		} else if want := map[string]string{ChangeoverMQTT: MQTTModeJSON, ChangeoverSparkplug: MQTTModeSparkplug}[ch.Source]; c.MQTT.Mode != want {
			cv.Errorf("source", "%q needs mqtt.mode = %q, but mqtt.mode is %q", ch.Source, want, c.MQTT.Mode)
		}
	case ChangeoverHTTP:
		if !c.HTTP.Enabled {
			cv.Errorf("source", `"http" needs http.enabled = true (POST /api/product)`)
		}
	}
	if ch.Source == ChangeoverPLC || ch.Source == ChangeoverGPIO {
		max := 65535
		if ch.Source == ChangeoverGPIO && len(ch.GPIOLines) > 0 && len(ch.GPIOLines) <= MaxGPIOCodeLines {
			max = 1<<len(ch.GPIOLines) - 1
		}
		for i, p := range c.Products {
			pv := v.In("product[" + strconv.Itoa(i+1) + "]")
			switch {
			case p.Code == 0:
				pv.Errorf("code", "is required when changeover.source is %q: the %s selects a product by its code (1 to %d)", ch.Source, ch.Source, max)
			case p.Code > max:
				pv.Errorf("code", "%d does not fit the %d changeover.gpio_lines; allowed 1 to %d", p.Code, len(ch.GPIOLines), max)
			}
		}
	}
}

// checkCodeLinesFree reports a code line that has another role in [gpio].
func (c *Config) checkCodeLinesFree(cv *Checker) {
	g := c.GPIO
	roles := map[string]string{}
	for _, l := range []struct{ key, val string }{
		{"reject_line", g.RejectLine}, {"part_present_line", g.PartPresentLine},
		{"encoder_line", g.EncoderLine}, {"ready_line", g.ReadyLine}, {"fault_line", g.FaultLine},
		{"ok_line", g.OKLine}, {"ng_line", g.NGLine}, {"strobe_line", g.StrobeLine},
	} {
		if l.val != "" {
			id, _ := lineIdentity(l.val)
			roles[id] = l.key
		}
	}
	for i, l := range c.Changeover.GPIOLines {
		id, _ := lineIdentity(l)
		if role, used := roles[id]; used && l != "" {
			cv.Errorf("gpio_lines", "line %d %q is already used by gpio.%s; each line has one role", i+1, l, role)
		}
	}
}

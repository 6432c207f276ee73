package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inspectd/inspectd/io/archive"
	"github.com/inspectd/inspectd/io/gpio"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/plc"
)

// series is one metric read from an output's Stats when scraped.
type series struct {
	name, help string
	counter    bool
	value      func() float64
}

func register(reg prometheus.Registerer, list []series) {
	for _, s := range list {
		if s.counter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: s.name, Help: s.help}, s.value))
		} else {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: s.name, Help: s.help}, s.value))
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// archiveMetrics exposes the archive's counters.
func archiveMetrics(reg prometheus.Registerer, a *archive.Archive) {
	register(reg, []series{
		{"inspectd_archive_written_total", "Parts archived (frame, overlay, JSON).", true, func() float64 { return float64(a.Stats().Written) }},
		{"inspectd_archive_deleted_total", "Archived parts deleted, oldest first, to stay within archive.max_size_mb.", true, func() float64 { return float64(a.Stats().Deleted) }},
		{"inspectd_archive_skipped_total", "Parts not archived because one alone exceeds the budget.", true, func() float64 { return float64(a.Stats().Skipped) }},
		{"inspectd_archive_errors_total", "Archive failures: unusable directory, full disk, write or delete errors.", true, func() float64 { return float64(a.Stats().Errors) }},
		{"inspectd_archive_bytes", "Current size of the archive in bytes.", false, func() float64 { return float64(a.Stats().Bytes) }},
	})
}

// mqttMetrics exposes the MQTT client's counters.
func mqttMetrics(reg prometheus.Registerer, m *mqtt.Client) {
	register(reg, []series{
		{"inspectd_mqtt_connected", "1 while connected to the broker.", false, func() float64 { return boolValue(m.Stats().Connected) }},
		{"inspectd_mqtt_published_total", "Messages acknowledged by the broker.", true, func() float64 { return float64(m.Stats().Published) }},
		{"inspectd_mqtt_publish_retries_total", "Publishes repeated after a timeout or an error (possible duplicates).", true, func() float64 { return float64(m.Stats().PublishRetries) }},
		{"inspectd_mqtt_outbox_messages", "Messages waiting in the durable outbox.", false, func() float64 { return float64(m.Stats().OutboxDepth) }},
		{"inspectd_mqtt_outbox_dropped_total", "Messages dropped because the outbox was full (oldest first).", true, func() float64 { return float64(m.Stats().Dropped) }},
		{"inspectd_mqtt_outbox_quarantined_total", "Corrupt outbox records moved aside.", true, func() float64 { return float64(m.Stats().Quarantined) }},
		{"inspectd_mqtt_reconnects_total", "Reconnections to the broker.", true, func() float64 { return float64(m.Stats().Reconnects) }},
		{"inspectd_mqtt_command_errors_total", "Commands answered with an error.", true, func() float64 { return float64(m.Stats().CommandErrors) }},
	})
}

// gpioMetrics exposes the reject scheduler's counters.
func gpioMetrics(reg prometheus.Registerer, a *gpio.Actuator) {
	register(reg, []series{
		{"inspectd_gpio_parts_in_flight", "Parts registered and not yet at the reject station.", false, func() float64 { return float64(a.Stats().InFlight) }},
		{"inspectd_gpio_rejected_total", "Parts rejected at their due time.", true, func() float64 { return float64(a.Stats().Rejected) }},
		{"inspectd_gpio_passed_total", "Parts let through.", true, func() float64 { return float64(a.Stats().Passed) }},
		{"inspectd_gpio_late_verdicts_total", "Verdicts that arrived after their part's actuation time.", true, func() float64 { return float64(a.Stats().LateVerdicts) }},
		{"inspectd_gpio_no_verdict_total", "Parts without a verdict at their actuation time.", true, func() float64 { return float64(a.Stats().NoVerdict) }},
		{"inspectd_gpio_fifo_overflows_total", "Parts refused because the in-flight FIFO was full.", true, func() float64 { return float64(a.Stats().Overflows) }},
		{"inspectd_gpio_lost_edges_total", "Input edges lost (kernel event buffer overrun).", true, func() float64 { return float64(a.Stats().LostEdges) }},
		{"inspectd_gpio_faulted", "1 while a fault is latched (outputs in the safe state).", false, func() float64 { return boolValue(a.Stats().Faulted) }},
	})
}

// plcMetrics exposes the PLC output's counters.
func plcMetrics(reg prometheus.Registerer, p *plc.Output) {
	register(reg, []series{
		{"inspectd_plc_connected", "1 while connected to the PLC.", false, func() float64 { return boolValue(p.Stats().Connected) }},
		{"inspectd_plc_sent_total", "Parts written to the PLC and acknowledged.", true, func() float64 { return float64(p.Stats().Sent) }},
		{"inspectd_plc_ack_timeouts_total", "Parts written but not acknowledged in time.", true, func() float64 { return float64(p.Stats().AckTimeouts) }},
		{"inspectd_plc_failed_total", "Parts not written (disconnected or error).", true, func() float64 { return float64(p.Stats().Failed) }},
		{"inspectd_plc_reconnects_total", "Reconnections to the PLC.", true, func() float64 { return float64(p.Stats().Reconnects) }},
	})
}

package plc

import "github.com/prometheus/client_golang/prometheus"

// The Output's series: the names, help texts and types the station
// registered before the Output was a Collector, plus the late counter.
var (
	descConnected   = prometheus.NewDesc("inspectd_plc_connected", "1 while connected to the PLC.", nil, nil)
	descSent        = prometheus.NewDesc("inspectd_plc_sent_total", "Parts written to the PLC and acknowledged.", nil, nil)
	descAckTimeouts = prometheus.NewDesc("inspectd_plc_ack_timeouts_total", "Parts written but not acknowledged in time.", nil, nil)
	descFailed      = prometheus.NewDesc("inspectd_plc_failed_total", "Parts not written (disconnected or error).", nil, nil)
	descReconnects  = prometheus.NewDesc("inspectd_plc_reconnects_total", "Reconnections to the PLC.", nil, nil)
	descLate        = prometheus.NewDesc("inspectd_plc_late_total", "Verdicts older than plc.max_verdict_age when the PLC output took them: not written (late_action drop) or written as ERROR (late_action error).", nil, nil)
)

// Describe sends the descriptors of the Output's series.
func (p *Output) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descSent, descAckTimeouts, descFailed, descReconnects, descLate} {
		ch <- d
	}
}

// Collect sends the current counters. It takes only the counters' lock,
// which is never held across network I/O, so it never waits for the PLC.
func (p *Output) Collect(ch chan<- prometheus.Metric) {
	s := p.Stats()
	connected := 0.0
	if s.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(s.Sent))
	ch <- prometheus.MustNewConstMetric(descAckTimeouts, prometheus.CounterValue, float64(s.AckTimeouts))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(s.Reconnects))
	ch <- prometheus.MustNewConstMetric(descLate, prometheus.CounterValue, float64(s.Late))
}

package gpio

import "github.com/prometheus/client_golang/prometheus"

// metric is one series read from Stats when scraped.
type metric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(Stats) float64
}

func newMetric(name, help string, typ prometheus.ValueType, value func(Stats) float64) metric {
	return metric{prometheus.NewDesc(name, help, nil, nil), typ, value}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metrics are the reject scheduler's series, with the names, help texts
// and types inspectd has always exposed.
var metrics = []metric{
	newMetric("inspectd_gpio_parts_in_flight", "Parts registered and not yet at the reject station.", prometheus.GaugeValue,
		func(s Stats) float64 { return float64(s.InFlight) }),
	newMetric("inspectd_gpio_rejected_total", "Parts rejected at their due time.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Rejected) }),
	newMetric("inspectd_gpio_passed_total", "Parts let through.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Passed) }),
	newMetric("inspectd_gpio_late_verdicts_total", "Verdicts that arrived after their part's actuation time.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.LateVerdicts) }),
	newMetric("inspectd_gpio_no_verdict_total", "Parts without a verdict at their actuation time.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.NoVerdict) }),
	newMetric("inspectd_gpio_fifo_overflows_total", "Parts refused because the in-flight FIFO was full.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Overflows) }),
	newMetric("inspectd_gpio_lost_edges_total", "Input edges lost (kernel event buffer overrun).", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.LostEdges) }),
	newMetric("inspectd_gpio_faulted", "1 while a fault is latched (outputs in the safe state).", prometheus.GaugeValue,
		func(s Stats) float64 { return boolValue(s.Faulted) }),
}

// Describe sends the descriptors of the Actuator's series
// (prometheus.Collector).
func (a *Actuator) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range metrics {
		ch <- m.desc
	}
}

// Collect sends the current values of the Actuator's series
// (prometheus.Collector). It reads one lock-free Stats snapshot and never
// waits on an output write.
func (a *Actuator) Collect(ch chan<- prometheus.Metric) {
	s := a.Stats()
	for _, m := range metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(s))
	}
}

var _ prometheus.Collector = (*Actuator)(nil)

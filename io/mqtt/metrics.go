package mqtt

import "github.com/prometheus/client_golang/prometheus"

// metric is one series the client exports, read from Stats at scrape time.
type metric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(Stats) float64
}

func newMetric(name, help string, typ prometheus.ValueType, value func(Stats) float64) metric {
	return metric{desc: prometheus.NewDesc(name, help, nil, nil), typ: typ, value: value}
}

// metrics are the client's series; names, help texts and types are those
// the station registered before the client exported them itself, so
// dashboards keep working.
var metrics = []metric{
	newMetric("inspectd_mqtt_connected", "1 while connected to the broker.", prometheus.GaugeValue,
		func(s Stats) float64 { return boolValue(s.Connected) }),
	newMetric("inspectd_mqtt_published_total", "Messages acknowledged by the broker.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Published) }),
	newMetric("inspectd_mqtt_publish_retries_total", "Publishes repeated after a timeout or an error (possible duplicates).", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.PublishRetries) }),
	newMetric("inspectd_mqtt_outbox_messages", "Messages waiting in the durable outbox.", prometheus.GaugeValue,
		func(s Stats) float64 { return float64(s.OutboxDepth) }),
	newMetric("inspectd_mqtt_outbox_dropped_total", "Messages dropped because the outbox was full (oldest first).", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Dropped) }),
	newMetric("inspectd_mqtt_outbox_quarantined_total", "Corrupt outbox records moved aside.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Quarantined) }),
	newMetric("inspectd_mqtt_reconnects_total", "Reconnections to the broker.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Reconnects) }),
	newMetric("inspectd_mqtt_command_errors_total", "Commands answered with an error.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.CommandErrors) }),
	// The durable point: results fsync'd to the outbox survive a crash;
	// accepted ones may still be in memory.
	newMetric("inspectd_mqtt_results_accepted_total", "Results handed to the MQTT output (not yet on disk).", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Accepted) }),
	newMetric("inspectd_mqtt_results_persisted_total", "Results written (fsync) to the MQTT outbox: from here on they survive a crash.", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.Persisted) }),
	// While the outbox cannot be written (read-only or full disk).
	newMetric("inspectd_mqtt_outbox_writable", "0 while writes to the MQTT outbox fail (results are then published directly, at most once).", prometheus.GaugeValue,
		func(s Stats) float64 { return boolValue(s.OutboxWritable) }),
	newMetric("inspectd_mqtt_published_unpersisted_total", "Messages published directly, without the outbox, because it could not be written (at most once).", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.PublishedUnpersisted) }),
	newMetric("inspectd_mqtt_results_lost_total", "Results neither written to the outbox nor published (outbox not writable and the broker not reachable).", prometheus.CounterValue,
		func(s Stats) float64 { return float64(s.ResultsLost) }),
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Describe implements prometheus.Collector.
func (c *Client) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range metrics {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector. It reads counters only (Stats):
// it never waits for the outbox, the broker or the host.
func (c *Client) Collect(ch chan<- prometheus.Metric) {
	s := c.Stats()
	for _, m := range metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(s))
	}
}

package archive

import "github.com/prometheus/client_golang/prometheus"

// The archive's series, with the names, help texts and types the station
// registered before the archive was a Collector.
var (
	descWritten = prometheus.NewDesc("inspectd_archive_written_total", "Parts archived (frame, overlay, JSON).", nil, nil)
	descDeleted = prometheus.NewDesc("inspectd_archive_deleted_total", "Archived parts deleted, oldest first, to stay within archive.max_size_mb.", nil, nil)
	descSkipped = prometheus.NewDesc("inspectd_archive_skipped_total", "Parts not archived because one alone exceeds the budget.", nil, nil)
	descErrors  = prometheus.NewDesc("inspectd_archive_errors_total", "Archive failures: unusable directory, full disk, write or delete errors.", nil, nil)
	descBytes   = prometheus.NewDesc("inspectd_archive_bytes", "Current size of the archive in bytes.", nil, nil)
)

// Describe sends the descriptors of the archive's series.
func (a *Archive) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWritten, descDeleted, descSkipped, descErrors, descBytes} {
		ch <- d
	}
}

// Collect sends the current counters. It takes only the counters' lock,
// never the one Deliver holds while writing, so a scrape does not wait for
// the disk.
func (a *Archive) Collect(ch chan<- prometheus.Metric) {
	s := a.Stats()
	ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(s.Written))
	ch <- prometheus.MustNewConstMetric(descDeleted, prometheus.CounterValue, float64(s.Deleted))
	ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(s.Skipped))
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.Errors))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.Bytes))
}

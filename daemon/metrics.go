package daemon

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/inspectd/inspectd/inspection"
)

// metrics are the daemon's Prometheus series. Names follow the Prometheus
// conventions: inspectd_ prefix, base units (seconds), _total counters.
type metrics struct {
	parts       *prometheus.CounterVec   // by verdict and reason
	stage       *prometheus.HistogramVec // seconds per stage
	score       prometheus.Histogram
	triggers    *prometheus.CounterVec // accepted / refused, by source
	sinkDropped *prometheus.CounterVec
	reloads     *prometheus.CounterVec
	modelInfo   *prometheus.GaugeVec
	cameraState *prometheus.GaugeVec
	paused      prometheus.Gauge
	// Product changeover.
	productActive *prometheus.GaugeVec   // 1 for the active product
	switches      *prometheus.CounterVec // by source and outcome
	switchWait    prometheus.Histogram   // on-demand load time after a selection
	partWait      prometheus.Histogram   // time a part waited for its product's bundle
}

// stageBuckets cover 0.5 ms .. 10 s.
var stageBuckets = []float64{.0005, .001, .002, .005, .01, .02, .03, .05, .075, .1, .15, .2, .3, .5, 1, 2, 5, 10}

func newMetrics(reg *prometheus.Registry, d *Daemon, version, commit string) *metrics {
	m := &metrics{
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inspectd_parts_total",
			Help: "Inspected parts by verdict (OK, NG, ERROR), reason and product."}, []string{"verdict", "reason", "product"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inspectd_stage_duration_seconds",
			Help: "Time per pipeline stage: capture_wait, align, localize, decide, and total (trigger to verdict).", Buckets: stageBuckets}, []string{"stage"}),
		score: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "inspectd_image_score",
			Help: "Image anomaly scores of inspected parts.", Buckets: prometheus.LinearBuckets(0, 0.05, 21)}),
		triggers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inspectd_triggers_total",
			Help: "Triggers by source and outcome (accepted, refused, overflow)."}, []string{"source", "outcome"}),
		sinkDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inspectd_sink_dropped_results_total",
			Help: "Results dropped because a sink's queue was full."}, []string{"sink"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inspectd_reloads_total",
			Help: "Configuration and model reloads by result (ok, failed)."}, []string{"result"}),
		modelInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inspectd_model_info",
			Help: "The loaded model bundle (value 1); provider is \"cpu (fallback)\" when model.allow_fallback runs it on the CPU instead of the configured GPU provider."}, []string{"product", "bundle_hash", "provider"}),
		cameraState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inspectd_camera_state",
			Help: "1 for the camera's current state, 0 for the others."}, []string{"state"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "inspectd_paused", Help: "1 while inspection is paused."}),
		productActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inspectd_product_active",
			Help: "1 for the active product, 0 for the other configured products."}, []string{"product"}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inspectd_product_switches_total",
			Help: "Product selections by source and outcome (switched: bundle loaded; loading: loaded on demand; refused; failed: the on-demand load failed)."}, []string{"source", "outcome"}),
		switchWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "inspectd_product_switch_wait_seconds",
			Help: "Time from a selection of a product whose bundle was not loaded until it was loaded and warm (the line waits meanwhile).", Buckets: stageBuckets}),
		partWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "inspectd_product_part_wait_seconds",
			Help: "Time a part waited in the inspect loop for its product's bundle to load on demand.", Buckets: stageBuckets}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inspectd_build_info",
		Help: "Build of the running daemon (value 1)."}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(version, commit, runtime.Version()).Set(1)

	cam := func(name, help string, get func(inspection.CameraStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			return float64(get(d.camera.Stats()))
		})
	}
	sinkGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "inspectd_sink_queue_max_length",
		Help: "Longest sink queue right now."}, func() float64 {
		n := 0
		for _, s := range d.sinks.statuses() {
			n = max(n, s.Queued)
		}
		return float64(n)
	})
	reg.MustRegister(m.parts, m.stage, m.score, m.triggers, m.sinkDropped, m.reloads,
		m.modelInfo, m.cameraState, m.paused, build, sinkGauge,
		m.productActive, m.switches, m.switchWait, m.partWait,
		cam("inspectd_camera_frames_total", "Frames read from the camera.", func(s inspection.CameraStats) uint64 { return s.Captured }),
		cam("inspectd_camera_frames_dropped_total", "Camera frames replaced by a newer one before anyone used them.", func(s inspection.CameraStats) uint64 { return s.Dropped }),
		cam("inspectd_camera_reconnects_total", "Camera reopenings after a stall or an error.", func(s inspection.CameraStats) uint64 { return s.Reconnects }),
		cam("inspectd_camera_images_skipped_total", "Replayed images skipped: vanished, empty, not a regular file, no readable PNG/JPEG/BMP header, larger than camera.max_pixels, or undecodable.", func(s inspection.CameraStats) uint64 { return s.Skipped }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// setActiveProduct sets inspectd_product_active: 1 for active ("" when
// none is), 0 for the other products.
// productSeries creates the parts series of every product at 0, so that
// rates are defined before the first part.
func (m *metrics) productSeries(products []*product) {
	for _, p := range products {
		for _, v := range []inspection.Verdict{inspection.OK, inspection.NG, inspection.Error} {
			m.parts.WithLabelValues(string(v), "", p.name).Add(0)
		}
	}
}

func (m *metrics) setActiveProduct(products []*product, active string) {
	for _, p := range products {
		v := 0.0
		if p.name == active {
			v = 1
		}
		m.productActive.WithLabelValues(p.name).Set(v)
	}
}

func (m *metrics) setCameraState(s inspection.CameraState) {
	for _, st := range []inspection.CameraState{inspection.CameraStarting, inspection.CameraOnline, inspection.CameraStalled, inspection.CameraReconnecting, inspection.CameraOffline} {
		v := 0.0
		if st == s {
			v = 1
		}
		m.cameraState.WithLabelValues(string(st)).Set(v)
	}
}

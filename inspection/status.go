package inspection

import "time"

// Status is a snapshot of the daemon for the status page, /api/status and
// the MQTT stats and status commands.
type Status struct {
	Station   Station      `json:"station"`
	Version   string       `json:"version"`
	Started   time.Time    `json:"started"`
	UptimeS   float64      `json:"uptime_s"`
	Trigger   string       `json:"trigger_mode"`
	Paused    bool         `json:"paused"`
	Model     ModelStatus  `json:"model"`
	Camera    CameraStatus `json:"camera"`
	CameraN   CameraStats  `json:"camera_counts"`
	Counts    Counts       `json:"counts"`
	RatePerS  float64      `json:"rate_per_s"` // parts per second over the last minute
	Healthy   bool         `json:"healthy"`
	Problems  []string     `json:"problems"` // why not healthy
	Sinks     []SinkStatus `json:"sinks"`
	Latency   LatencyStats `json:"latency_ms"`
	LastEvent *Event       `json:"last_event,omitempty"`
	// Products is the product changeover state (issue 26).
	Products ProductsStatus `json:"products"`
}

// Station identifies the inspection station.
type Station struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Line string `json:"line"`
}

// ModelStatus describes the loaded bundle and the thresholds in force.
type ModelStatus struct {
	Product        string    `json:"product"`
	BundleHash     string    `json:"bundle_hash"`
	BundleDir      string    `json:"bundle_dir"`
	Created        string    `json:"created"`
	Provider       string    `json:"provider"`
	InputWidth     int       `json:"input_width"`
	InputHeight    int       `json:"input_height"`
	AlignMethod    string    `json:"align_method"`
	Threshold      float64   `json:"threshold"`
	PixelThreshold float64   `json:"pixel_threshold"`
	ThresholdFrom  string    `json:"threshold_source"` // bundle, config or runtime
	LoadedAt       time.Time `json:"loaded_at"`
}

// Counts are parts by verdict since start.
type Counts struct {
	Total uint64 `json:"total"`
	OK    uint64 `json:"ok"`
	NG    uint64 `json:"ng"`
	Error uint64 `json:"error"`
}

// SinkStatus is the health of one sink's queue.
type SinkStatus struct {
	Name      string `json:"name"`
	Queued    int    `json:"queued"`
	Capacity  int    `json:"capacity"`
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	Errors    uint64 `json:"errors"`
	LastError string `json:"last_error,omitempty"`
}

// LatencyStats summarises trigger → verdict latency over recent parts.
type LatencyStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

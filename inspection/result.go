package inspection

import (
	"image"
	"time"

	"github.com/inspectd/inspectd/models/preprocess"
)

// Verdict is the decision for one part.
type Verdict string

// The verdicts. ERROR is never OK: a part that could not be inspected is
// rejected like an NG part.
const (
	OK    Verdict = "OK"
	NG    Verdict = "NG"
	Error Verdict = "ERROR"
)

// Rejects reports whether the part must be rejected (NG or ERROR).
func (v Verdict) Rejects() bool { return v != OK }

// Reasons carried by Result.Reason.
const (
	ReasonScore         = "score"          // NG: the image score exceeds the threshold
	ReasonRegion        = "region"         // NG: a defect region is at least min_defect_area
	ReasonPass          = "pass"           // OK
	ReasonCameraTimeout = "camera_timeout" // ERROR: no frame within trigger.timeout
	ReasonStaleFrame    = "stale_frame"    // ERROR: the frame was older than camera.max_frame_age
	ReasonEngine        = "engine_error"   // ERROR: alignment or localisation failed
	ReasonNaN           = "nan_score"      // ERROR: the model produced NaN
	ReasonShutdown      = "shutdown"       // ERROR: the daemon stopped before the part was inspected
	ReasonCamera        = "camera_error"   // ERROR: the camera failed or ended
	ReasonOverload      = "overload"       // ERROR: too many parts waiting; the trigger queue was full
	ReasonOutOfFrame    = "out_of_frame"   // ERROR: the aligned part lay too far outside the ROI to inspect
	// ReasonProductUnavailable: ERROR: the part's product cannot be
	// inspected (changeover.on_failure = "reject" holds an unknown or
	// failed product, or the product's bundle failed to load).
	ReasonProductUnavailable = "product_unavailable"
)

// Region is one connected defect region, in pixels of the original frame
// (the bounding box of the region's footprint mapped back through the
// inverse alignment).
type Region struct {
	X      int     `json:"x"`
	Y      int     `json:"y"`
	Width  int     `json:"width"`
	Height int     `json:"height"`
	Area   int     `json:"area_px"` // pixels of the original frame
	Peak   float64 `json:"peak"`    // highest heatmap value inside the region
}

// Alignment is the transform that brought the part into the template pose.
type Alignment struct {
	Tx       float64 `json:"tx"`        // normalised, [-1, 1] is the image width
	Ty       float64 `json:"ty"`        // normalised, [-1, 1] is the image height
	ThetaDeg float64 `json:"theta_deg"` // degrees
}

// Latency is the time spent per stage, in milliseconds.
type Latency struct {
	CaptureWaitMs float64 `json:"capture_wait_ms"` // trigger → frame available
	AlignMs       float64 `json:"align_ms"`
	LocalizeMs    float64 `json:"localize_ms"`
	DecideMs      float64 `json:"decide_ms"`
	TotalMs       float64 `json:"total_ms"` // trigger → verdict
	// ModelWaitMs is how long the part waited for its product's bundle
	// to load on demand (product changeover); 0 when it was loaded.
	ModelWaitMs float64 `json:"model_wait_ms,omitempty"`
}

// Model identifies the bundle that produced a result.
type Model struct {
	Product    string `json:"product"`
	BundleHash string `json:"bundle_hash"`
}

// Result is the outcome of one part. Every trigger yields exactly one.
type Result struct {
	ID       string  `json:"result_id"` // unique: station, start time and sequence
	PartID   string  `json:"part_id"`
	Station  string  `json:"station"`
	Seq      uint64  `json:"seq"`       // results of this daemon run, from 1
	FrameSeq uint64  `json:"frame_seq"` // 0 when no frame was inspected
	Trigger  string  `json:"trigger"`   // free_run, software, mqtt, gpio
	Verdict  Verdict `json:"verdict"`
	Reason   string  `json:"reason"`
	Detail   string  `json:"detail,omitempty"` // error text for ERROR verdicts

	TriggerTime time.Time `json:"trigger_time"`
	CaptureTime time.Time `json:"capture_time,omitzero"`
	VerdictTime time.Time `json:"verdict_time"`
	Latency     Latency   `json:"latency"`

	Score          float64   `json:"score"` // image score (heatmap max); 0 for ERROR
	Threshold      float64   `json:"threshold"`
	PixelThreshold float64   `json:"pixel_threshold"`
	Regions        []Region  `json:"regions"`
	Alignment      Alignment `json:"alignment"`
	Model          Model     `json:"model"`
	// Faults are the outputs' problems at the verdict (see
	// HealthReporter), e.g. a latched GPIO fault that rejects every part
	// physically whatever the verdict says; absent when there are none.
	Faults []string `json:"faults,omitempty"`

	// Snapshot holds the pixels behind the result when a sink asked for
	// them (see ImageSink); nil otherwise. Never serialised.
	Snapshot *Snapshot `json:"-"`
}

// Snapshot is a private copy of what the engine saw for one part; sinks
// may keep it as long as they like.
type Snapshot struct {
	Frame     image.Image          // the whole captured frame
	ROI       image.Rectangle      // the inspected region of Frame
	Transform preprocess.Transform // alignment of the ROI
	Heatmap   *preprocess.Heatmap  // at the model input size, in the aligned frame
}

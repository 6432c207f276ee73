package mqtt

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// Availability states published on <prefix>/<station>/status.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// Reasons for the offline state.
const (
	ReasonShutdown       = "shutdown"        // the daemon stopped and said goodbye
	ReasonConnectionLost = "connection_lost" // the broker published the Last Will
)

// StatusMessage is the retained payload of <prefix>/<station>/status
// (docs/schema/status.schema.json).
type StatusMessage struct {
	State    string `json:"state"` // online or offline
	Station  string `json:"station"`
	ClientID string `json:"client_id"`
	Version  string `json:"version,omitempty"`
	// Reason says why the station is offline (shutdown, connection_lost).
	Reason string `json:"reason,omitempty"`
	// Time is when the message was sent; absent in the Last Will, which
	// the broker stores at connect time and sends later.
	Time time.Time `json:"time,omitzero"`
}

// StatsMessage is the payload of <prefix>/<station>/stats
// (docs/schema/stats.schema.json). The inspection fields are absent when the
// client has no Control (tests, tools).
type StatsMessage struct {
	Time      time.Time `json:"time"`
	Station   string    `json:"station"`
	IntervalS float64   `json:"interval_s"`

	UptimeS  *float64                 `json:"uptime_s,omitempty"`
	Paused   *bool                    `json:"paused,omitempty"`
	Healthy  *bool                    `json:"healthy,omitempty"`
	Counts   *inspection.Counts       `json:"counts,omitempty"`
	RatePerS *float64                 `json:"rate_per_s,omitempty"`
	Latency  *inspection.LatencyStats `json:"latency_ms,omitempty"`
	Camera   *inspection.CameraStatus `json:"camera,omitempty"`
	Model    *ThresholdInfo           `json:"thresholds,omitempty"`
	Sinks    []inspection.SinkStatus  `json:"sinks,omitempty"`

	Outbox OutboxStats `json:"outbox"`
	Drops  Drops       `json:"drops"`
	MQTT   LinkStats   `json:"mqtt"`
}

// ThresholdInfo is the thresholds in force and where they come from.
type ThresholdInfo struct {
	Image  float64 `json:"image"`
	Pixel  float64 `json:"pixel"`
	Source string  `json:"source"` // bundle, config or runtime
}

// OutboxStats describes the outbox in a stats message.
type OutboxStats struct {
	Depth       int    `json:"depth"` // messages waiting for the broker
	Max         int    `json:"max"`
	Dropped     uint64 `json:"dropped"`     // oldest messages dropped because the outbox was full
	Quarantined uint64 `json:"quarantined"` // corrupt records moved aside
}

// Drops counts messages lost on the way, since start.
type Drops struct {
	Outbox uint64 `json:"outbox"` // outbox full: oldest dropped
	Events uint64 `json:"events"` // event queue full
	Sinks  uint64 `json:"sinks"`  // results dropped by full sink queues (all sinks)
}

// LinkStats describes the broker connection in a stats message.
type LinkStats struct {
	Connected      bool   `json:"connected"`
	Published      uint64 `json:"published"`       // results and events acknowledged by the broker
	Reconnects     uint64 `json:"reconnects"`      // connections after the first
	PublishRetries uint64 `json:"publish_retries"` // publishes repeated (each may duplicate)
}

// Reply is the payload of <prefix>/<station>/reply/<command>
// (docs/schema/reply.schema.json).
type Reply struct {
	CorrelationID string    `json:"correlation_id"`
	Command       string    `json:"command"`
	OK            bool      `json:"ok"`
	Error         string    `json:"error,omitempty"` // "field X: problem" for bad requests
	Field         string    `json:"field,omitempty"` // the offending field, when one is to blame
	Time          time.Time `json:"time"`
	Result        any       `json:"result,omitempty"`
}

// marshalResult encodes a result for the result topic. A nil Regions slice
// is sent as [] so that consumers always see an array.
func marshalResult(r *inspection.Result) ([]byte, error) {
	cp := *r
	if cp.Regions == nil {
		cp.Regions = []inspection.Region{}
	}
	b, err := json.Marshal(&cp)
	if err == nil {
		return b, nil
	}
	// JSON has no NaN or infinity: send 0 and say so in detail rather than
	// losing the verdict.
	finite := func(f *float64) {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
	finite(&cp.Score)
	finite(&cp.Threshold)
	finite(&cp.PixelThreshold)
	for _, f := range []*float64{&cp.Latency.CaptureWaitMs, &cp.Latency.AlignMs, &cp.Latency.LocalizeMs, &cp.Latency.DecideMs, &cp.Latency.TotalMs, &cp.Alignment.Tx, &cp.Alignment.Ty, &cp.Alignment.ThetaDeg} {
		finite(f)
	}
	cp.Regions = slices.Clone(cp.Regions)
	for i := range cp.Regions {
		finite(&cp.Regions[i].Peak)
	}
	cp.Detail = strings.TrimSpace(cp.Detail + " (non-finite numbers sent as 0)")
	if b, err2 := json.Marshal(&cp); err2 == nil {
		return b, nil
	}
	return nil, fmt.Errorf("mqtt: encode result %s: %w", r.ID, err)
}

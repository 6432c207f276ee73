// Package latency summarises stage timings the same way for `inspectd
// bench` and `inspectd eval`. It is pure Go: the evaluation code uses it
// without linking ONNX Runtime.
package latency

import (
	"math"
	"sort"
)

// StageTiming summarises the latency of one stage in milliseconds.
type StageTiming struct {
	MinMs    float64 `json:"min_ms"`
	MedianMs float64 `json:"median_ms"`
	P99Ms    float64 `json:"p99_ms"`
}

// Summarise returns min, median and 99th percentile (nearest rank) of
// durations in milliseconds: the median of an even count is the mean of the
// two middle values; P99 is the ⌈0.99·n⌉-th smallest. It sorts d; none
// gives the zero StageTiming.
func Summarise(d []float64) StageTiming {
	if len(d) == 0 {
		return StageTiming{}
	}
	sort.Float64s(d)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	med := d[len(d)/2]
	if len(d)%2 == 0 {
		med = (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	return StageTiming{MinMs: d[0], MedianMs: med, P99Ms: rank(0.99)}
}

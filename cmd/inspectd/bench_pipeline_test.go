package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/inspectd/inspectd/infer/infertest"
)

// BenchmarkPipeline runs `inspectd bench --pipeline`'s measurement: the
// whole daemon with the real engine (random weights, 256×256, 2 threads) on
// 640×480 and 1920×1080 frames; b.N parts per size.
func BenchmarkPipeline(b *testing.B) {
	rt := infertest.Runtime(b)
	bb, cleanup, err := benchBundle(benchFlags{height: 256, width: 256})
	defer cleanup()
	if err != nil {
		b.Fatal(err)
	}
	dir := bb.Dir
	var out bytes.Buffer
	o := pipelineBenchOptions{bundleDir: dir, threads: 2, frames: []string{"640x480", "1920x1080"}, parts: max(b.N, 20), json: true}
	b.ResetTimer()
	if err := benchPipeline(context.Background(), streams{stdout: &out, stderr: &out}, rt, o); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	var got struct {
		Pipeline []pipelineBenchResult `json:"pipeline"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		b.Fatal(err)
	}
	for _, r := range got.Pipeline {
		b.Logf("%s: %.1f parts/s, trigger→verdict p50 %.2f p99 %.2f ms, align+localise p99 %.2f ms, overhead p50 %.2f p99 %.2f ms (decide p99 %.2f), RSS %.1f → %.1f MB, actuation error p50 %.2f p99 %.2f max %.2f ms over %d",
			r.Frame, r.PartsPerSecond, r.TotalP50Ms, r.TotalP99Ms, r.EngineP99Ms, r.OverheadP50Ms, r.OverheadP99Ms, r.DecideP99Ms, r.RSSStartMB, r.RSSEndMB, r.ActuationErrP50Ms, r.ActuationErrP99Ms, r.ActuationErrMaxMs, r.Actuations)
	}
}

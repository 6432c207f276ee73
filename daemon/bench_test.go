package daemon

import (
	"context"
	"image"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// nopEngine costs nothing, so a benchmark measures the daemon alone.
type nopEngine struct{ w, h int }

func (e nopEngine) Align(image.Image, image.Rectangle) (preprocess.Transform, error) {
	return preprocess.Transform{}, nil
}
func (e nopEngine) Localize(_ image.Image, _ image.Rectangle, _ preprocess.Transform, dst *preprocess.Heatmap) (float32, error) {
	dst.Values[len(dst.Values)/2] = 0.1
	return 0.1, nil
}
func (e nopEngine) NewHeatmap() *preprocess.Heatmap { return preprocess.NewHeatmap(e.w, e.h) }
func (e nopEngine) Provider() string                { return "nop" }
func (e nopEngine) Close() error                    { return nil }

// latencySink records trigger→verdict latency minus the engine's stages:
// the daemon's own overhead per part.
type latencySink struct{ overhead []float64 }

func (s *latencySink) Name() string { return "latency" }
func (s *latencySink) Deliver(_ context.Context, r *inspection.Result) error {
	s.overhead = append(s.overhead, r.Latency.TotalMs-r.Latency.AlignMs-r.Latency.LocalizeMs)
	return nil
}
func (s *latencySink) Close(context.Context) error { return nil }

// BenchmarkPipelineOverhead runs free-run parts through the whole daemon
// (capture hand-off, inspect loop, decision with a 256×256 heatmap, result,
// metrics, sink fan-out) with an engine that costs nothing: ns/op is the
// daemon's own cost per part, and overhead-p99-ms its trigger→verdict time
// beyond align and localise.
func BenchmarkPipelineOverhead(b *testing.B) {
	for _, size := range []struct {
		name string
		w, h int
	}{{"640x480", 640, 480}, {"1920x1080", 1920, 1080}} {
		b.Run(size.name, func(b *testing.B) {
			cfg := testConfig(b, writeBundle(b, filepath.Join(b.TempDir(), "bundle"), 1), config.TriggerFreeRun)
			sink := &latencySink{}
			d, err := New(Deps{Config: cfg, Camera: NewSyntheticCamera(size.w, size.h), MaxParts: b.N + 1,
				NewEngine: func(bb *bundleT, m config.Model) (inspection.Engine, error) { return nopEngine{w: 256, h: 256}, nil },
				Sinks:     []inspection.Sink{sink}, SinkQueue: b.N + 16})
			if err != nil {
				b.Fatal(err)
			}
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.HeapInuse
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if err := d.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			elapsed := time.Since(start)
			runtime.GC()
			runtime.ReadMemStats(&ms)
			sort.Float64s(sink.overhead)
			if n := len(sink.overhead); n > 0 {
				b.ReportMetric(sink.overhead[n/2], "overhead-p50-ms")
				b.ReportMetric(sink.overhead[min(n-1, n*99/100)], "overhead-p99-ms")
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "parts/s")
			b.ReportMetric(float64(int64(ms.HeapInuse)-int64(before))/1e6, "heap-growth-MB")
		})
	}
}

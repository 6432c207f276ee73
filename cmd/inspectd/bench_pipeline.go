package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/daemon"
	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/gpio"
	"github.com/inspectd/inspectd/logging"
	"github.com/inspectd/inspectd/models/bundle"
)

// pipelineBenchOptions configures `inspectd bench --pipeline`.
type pipelineBenchOptions struct {
	bundleDir string // a verified bundle
	threads   int
	frames    []string // frame sizes, "WxH"
	parts     int      // parts per frame size
	json      bool
	// sampleEvery > 0 prints the process RSS every that many parts (the
	// soak run).
	sampleEvery int
}

// pipelineBenchResult is one frame size's figures.
type pipelineBenchResult struct {
	Frame          string  `json:"frame"`
	Parts          int     `json:"parts"`
	PartsPerSecond float64 `json:"parts_per_s"`
	TotalP50Ms     float64 `json:"trigger_to_verdict_p50_ms"`
	TotalP99Ms     float64 `json:"trigger_to_verdict_p99_ms"`
	EngineP50Ms    float64 `json:"align_plus_localize_p50_ms"`
	EngineP99Ms    float64 `json:"align_plus_localize_p99_ms"`
	OverheadP50Ms  float64 `json:"overhead_p50_ms"`
	OverheadP99Ms  float64 `json:"overhead_p99_ms"`
	DecideP99Ms    float64 `json:"decide_p99_ms"`
	// Actuation error of the simulated reject output (reject_delay 300 ms
	// after each part's trigger): actual − scheduled time.
	Actuations        int     `json:"actuations"`
	ActuationErrP50Ms float64 `json:"actuation_error_p50_ms"`
	ActuationErrP99Ms float64 `json:"actuation_error_p99_ms"`
	ActuationErrMaxMs float64 `json:"actuation_error_max_ms"`
	RSSStartMB        float64 `json:"rss_start_mb"` // after the first 10 % of parts
	RSSEndMB          float64 `json:"rss_end_mb"`
	HeapStartMB       float64 `json:"heap_start_mb"`
	HeapEndMB         float64 `json:"heap_end_mb"`
}

// benchPipeline runs the whole daemon (free-run trigger, the real engine on
// ONNX Runtime, decision, result fan-out) on synthetic frames of each size
// as fast as it goes, and reports throughput, trigger→verdict latency, the
// daemon's overhead beyond align + localise, and memory growth.
func benchPipeline(ctx context.Context, s streams, rt *infer.Runtime, o pipelineBenchOptions) error {
	b, err := bundle.Load(o.bundleDir)
	if err != nil {
		return err
	}
	var results []pipelineBenchResult
	for _, f := range o.frames {
		w, h, err := parseFrameSize(f)
		if err != nil {
			return err
		}
		r, err := benchPipelineSize(ctx, s, rt, b, o, w, h)
		if err != nil {
			return err
		}
		results = append(results, r)
		if !o.json {
			fmt.Fprintf(s.stdout, "%-10s %6d parts  %6.1f parts/s  trigger→verdict p50 %6.2f p99 %6.2f ms  align+localise p50 %6.2f p99 %6.2f ms  overhead p50 %5.2f p99 %5.2f ms (decide p99 %.2f)  RSS %.1f → %.1f MB  heap %.1f → %.1f MB  actuation error p50 %.2f p99 %.2f max %.2f ms (%d)\n",
				r.Frame, r.Parts, r.PartsPerSecond, r.TotalP50Ms, r.TotalP99Ms, r.EngineP50Ms, r.EngineP99Ms, r.OverheadP50Ms, r.OverheadP99Ms, r.DecideP99Ms, r.RSSStartMB, r.RSSEndMB, r.HeapStartMB, r.HeapEndMB, r.ActuationErrP50Ms, r.ActuationErrP99Ms, r.ActuationErrMaxMs, r.Actuations)
		}
	}
	if o.json {
		enc := json.NewEncoder(s.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"threads": o.threads, "model_input": fmt.Sprintf("%dx%d", b.Manifest.Input.Width, b.Manifest.Input.Height), "pipeline": results})
	}
	return nil
}

func benchPipelineSize(ctx context.Context, s streams, rt *infer.Runtime, b *bundle.Bundle, o pipelineBenchOptions, w, h int) (pipelineBenchResult, error) {
	res := pipelineBenchResult{Frame: fmt.Sprintf("%dx%d", w, h), Parts: o.parts}
	cfg := config.Default()
	cfg.ConfigVersion = 1
	cfg.Station.ID = "bench"
	cfg.Model.Bundle = b.Dir
	cfg.Model.Threads = o.threads
	cfg.StateDir = os.TempDir()
	sink := &benchSink{every: o.sampleEvery, out: s, warm: max(1, o.parts/10)}
	// The reject actuator on the simulated chip, scheduled while the
	// engine keeps both cores busy: its timing error is measured too.
	cfg.GPIO.Enabled, cfg.GPIO.Chip, cfg.GPIO.RejectLine = true, "sim", "reject"
	cfg.GPIO.RejectDelay, cfg.GPIO.RejectPulse = config.Dur(300*time.Millisecond), config.Dur(5*time.Millisecond)
	cfg.GPIO.MaxPartsInFlight = 1024
	// Every part rejected, energised: one scheduled pulse per part.
	cfg.GPIO.RejectPolarity = "energise_to_reject"
	cfg.Decision.Threshold = 1e-6
	chip := gpio.NewSim()
	act, err := gpio.New(cfg.GPIO, chip, gpio.Options{Logger: logging.Discard(), Station: "bench", Realtime: true})
	if err != nil {
		return res, err
	}
	d, err := daemon.New(daemon.Deps{
		Config: &cfg,
		Camera: daemon.NewSyntheticCamera(w, h),
		NewEngine: func(bb *bundle.Bundle, m config.Model) (inspection.Engine, error) {
			return infer.NewEngine(rt, bb, infer.EngineOptions{IntraOpThreads: m.Threads})
		},
		Sinks:     []inspection.Sink{sink, act},
		Logger:    logging.Discard(),
		MaxParts:  o.parts,
		SinkQueue: 4096,
	})
	if err != nil {
		act.Close(context.Background())
		return res, err
	}
	if err := act.Start(ctx, d); err != nil {
		act.Close(context.Background())
		return res, err
	}
	start := time.Now()
	err = d.Run(ctx)
	// The parts still scheduled actuate before the figures are read.
	closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	act.Close(closeCtx)
	cancel()
	if err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	elapsed := time.Since(start)
	res.PartsPerSecond = float64(sink.n) / elapsed.Seconds()
	pct := func(v []float64, p float64) float64 {
		sort.Float64s(v)
		if len(v) == 0 {
			return 0
		}
		return v[min(len(v)-1, int(p*float64(len(v))))]
	}
	res.TotalP50Ms, res.TotalP99Ms = pct(sink.total, 0.5), pct(sink.total, 0.99)
	res.EngineP50Ms, res.EngineP99Ms = pct(sink.engine, 0.5), pct(sink.engine, 0.99)
	res.OverheadP50Ms, res.OverheadP99Ms = pct(sink.overhead, 0.5), pct(sink.overhead, 0.99)
	res.DecideP99Ms = pct(sink.decide, 0.99)
	res.RSSStartMB, res.HeapStartMB = sink.rssStart, sink.heapStart
	res.RSSEndMB, res.HeapEndMB = memoryMB()
	var errs []float64
	for _, a := range chip.Actuations() {
		if a.Value && !a.Intended.IsZero() && a.Reason != "safe" {
			errs = append(errs, a.ErrorUs/1000)
		}
	}
	res.Actuations = len(errs)
	res.ActuationErrP50Ms, res.ActuationErrP99Ms = pct(errs, 0.5), pct(errs, 0.99)
	if len(errs) > 0 {
		res.ActuationErrMaxMs = errs[len(errs)-1]
	}
	return res, nil
}

// benchSink collects the latencies of every result.
type benchSink struct {
	mu                      sync.Mutex
	n                       int
	total, engine, overhead []float64
	decide                  []float64
	every, warm             int
	out                     streams
	rssStart, heapStart     float64
}

func (b *benchSink) Name() string { return "bench" }

func (b *benchSink) Deliver(_ context.Context, r *inspection.Result) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	eng := r.Latency.AlignMs + r.Latency.LocalizeMs
	b.total = append(b.total, r.Latency.TotalMs)
	b.engine = append(b.engine, eng)
	b.overhead = append(b.overhead, r.Latency.TotalMs-eng)
	b.decide = append(b.decide, r.Latency.DecideMs)
	if b.n == b.warm {
		b.rssStart, b.heapStart = memoryMB()
	}
	if b.every > 0 && b.n%b.every == 0 {
		rss, heap := memoryMB()
		fmt.Fprintf(b.out.stderr, "soak: %6d parts  RSS %.1f MB  heap %.1f MB\n", b.n, rss, heap)
	}
	return nil
}

func (b *benchSink) Close(context.Context) error { return nil }

// memoryMB returns the process's resident set and the Go heap in use, in MB.
func memoryMB() (rss, heap float64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapInuse) / 1e6
	if data, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				rss = float64(pages*int64(os.Getpagesize())) / 1e6
			}
		}
	}
	return rss, heap
}

// parseFrameSize parses "WxH".
func parseFrameSize(s string) (int, int, error) {
	ws, hs, ok := strings.Cut(s, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w < 16 || h < 16 || w > 16384 || h > 16384 {
		return 0, 0, fmt.Errorf("frame size %q: want WIDTHxHEIGHT, e.g. 1920x1080, each 16..16384", s)
	}
	return w, h, nil
}

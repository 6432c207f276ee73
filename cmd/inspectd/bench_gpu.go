package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/bench"
)

// checkGPUBenchFlags checks the flags of `inspectd bench` for GPU
// providers and heatmap comparison.
func checkGPUBenchFlags(fs *flag.FlagSet, f benchFlags) error {
	if f.pipeline {
		for _, name := range []string{"tensorrt-fp16", "engine-cache-dir", "dump-heatmap", "compare-heatmap", "tolerance"} {
			if flagSet(fs, name) {
				return usageErr("bench: --%s does not apply to --pipeline", name)
			}
		}
	}
	if (f.fp16 || f.engineCache != "") && !strings.EqualFold(f.provider, infer.ProviderTensorRT) {
		return usageErr("bench: --tensorrt-fp16 and --engine-cache-dir apply to --provider tensorrt")
	}
	if flagSet(fs, "tolerance") && f.compareWith == "" {
		return usageErr("bench: --tolerance applies to --compare-heatmap")
	}
	if !(f.tolerance > 0) {
		return usageErr("bench: --tolerance %g must be positive", f.tolerance)
	}
	return nil
}

// benchHeatmap writes the localise stage's heatmap (--dump-heatmap) and
// compares it with a reference (--compare-heatmap): one line
// "heatmap vs FILE: max|Δ| … ok|DIFFERS", and exit status 1 when it
// differs by more than --tolerance.
func benchHeatmap(s streams, f benchFlags, res *bench.Result) error {
	if f.dumpHeatmap != "" {
		if err := bench.WriteHeatmap(f.dumpHeatmap, res.Width, res.Height, res.Heatmap); err != nil {
			return failure(fmt.Errorf("bench: --dump-heatmap: %w", err))
		}
	}
	if f.compareWith == "" {
		return nil
	}
	w, h, ref, err := bench.ReadHeatmap(f.compareWith)
	if err != nil {
		return failure(fmt.Errorf("bench: --compare-heatmap: %w", err))
	}
	if w != res.Width || h != res.Height {
		return failure(fmt.Errorf("bench: --compare-heatmap: %s is %dx%d, this heatmap %dx%d (same bundle?)", f.compareWith, w, h, res.Width, res.Height))
	}
	d, err := bench.CompareHeatmaps(ref, res.Heatmap)
	if err != nil {
		return failure(fmt.Errorf("bench: --compare-heatmap: %w", err))
	}
	verdict := "ok"
	if !(d.Rel <= f.tolerance) {
		verdict = "DIFFERS"
	}
	fmt.Fprintf(s.stderr, "heatmap vs %s: max|Δ| %.3g, scale %.3g, rel %.3g, tolerance %.3g: %s\n", f.compareWith, d.MaxAbs, d.Scale, d.Rel, f.tolerance, verdict)
	if verdict != "ok" {
		return failure(fmt.Errorf("bench: heatmap (provider %s) differs from %s by %.3g (relative), more than --tolerance %.3g", res.Provider, f.compareWith, d.Rel, f.tolerance))
	}
	return nil
}

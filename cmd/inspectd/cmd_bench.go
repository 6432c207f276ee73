package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/bench"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// benchFlags are the parsed and checked flags of `inspectd bench`.
type benchFlags struct {
	bundleDir, saveBundle, provider, lib string
	threads, iterations, height, width   int
	asJSON                               bool
	// The random bundle's architecture: localize is "memory" (the
	// training default, with sharedEntries) or "centres" (the paper's
	// ALM); align "imm" or "none".
	localize, align string
	sharedEntries   int
	// pipeline runs the whole daemon instead of the stages.
	pipeline bool
	frames   string
	parts    int
	// GPU providers and comparing them (scripts/gpu-check.sh).
	fp16                     bool
	engineCache              string
	dumpHeatmap, compareWith string
	tolerance                float64
	// The TFLite runtime (bench_tflite.go).
	runtime, tfliteLib, tfliteDelegate string
}

func runBench(ctx context.Context, s streams, args []string) error {
	f, done, err := parseBenchFlags(s, args)
	if done {
		return err
	}
	rt, err := openRuntime(f.lib)
	if err != nil {
		return failure(err)
	}
	defer rt.Close()
	newEngine, closeEngines, err := benchEngineFactory(f)
	if err != nil {
		return failure(err)
	}
	defer closeEngines()
	b, cleanup, err := benchBundle(f)
	if err != nil {
		return failure(err)
	}
	defer cleanup()
	if f.pipeline {
		spareProcessor() // as inspectd run
		err := benchPipeline(ctx, s, rt, pipelineBenchOptions{bundleDir: b.Dir, threads: f.threads,
			frames: strings.Split(f.frames, ","), parts: f.parts, json: f.asJSON})
		if err != nil {
			return failure(fmt.Errorf("bench --pipeline: %w", err))
		}
		return nil
	}
	bb, err := benchBackbone(s)
	if err != nil {
		return failure(err)
	}
	res, err := bench.Stages(ctx, rt, b, bench.Options{
		Session: infer.SessionOptions{IntraOpThreads: f.threads, Provider: f.provider,
			TensorRTFP16: f.fp16, EngineCacheDir: f.engineCache},
		Iterations: f.iterations,
		Backbone:   bb,
		NewEngine:  newEngine,
	})
	if err != nil {
		return failure(err)
	}
	if f.asJSON {
		if err := printBenchJSON(s, res); err != nil {
			return err
		}
	} else {
		printBenchTable(s, res)
	}
	return benchHeatmap(s, f, res)
}

// parseBenchFlags parses and checks the flags; done reports that the
// command is over (help, or a usage error in err).
func parseBenchFlags(s streams, args []string) (_ benchFlags, done bool, _ error) {
	fs := newFlagSet(s, "bench", "bench [--bundle DIR] [--threads N] [--size 256|HxW] [--iterations K] [--json]\n       bench --pipeline [--frames 640x480,1920x1080] [--parts N] [--bundle DIR] [--threads N] [--json]\n\nTimes the backbone alone, the align stage and the full localise stage on this\nmachine after warm-up, and prints min / median / p99 milliseconds per stage.\nWithout --bundle it builds a random-weight bundle of the training default's\narchitecture (IMM + a memory of --shared-entries int8 entries), so any box can\nbe sized before a model is trained; --align none and --shared-entries N size\nother recipes, --localize centres the paper's ALM.\n\nWith --pipeline it runs the whole daemon (free-run trigger, engine, decision,\nresult fan-out, the simulated reject actuator) on synthetic frames of each size\nand prints parts/s, trigger→verdict p50/p99, the daemon's overhead beyond\nalign + localise, the actuator's timing error and the memory used.")
	var f benchFlags
	fs.StringVar(&f.bundleDir, "bundle", "", "model bundle `dir` (default: random weights)")
	fs.IntVar(&f.threads, "threads", 2, "intra-op `threads` per session")
	size := fs.String("size", "256", "model input `size` for the random bundle: N (square) or HxW, multiples of 16")
	fs.IntVar(&f.iterations, "iterations", 50, "timed `runs` per stage")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
	fs.StringVar(&f.saveBundle, "save-bundle", "", "keep the random bundle in `dir` (e.g. for bench/torch_reference.py)")
	fs.StringVar(&f.localize, "localize", bundle.LocalizeMemory, "the random bundle's localisation `method`: memory (the training default) or centres (the paper's ALM)")
	fs.IntVar(&f.sharedEntries, "shared-entries", netdef.DefaultSharedEntries, "the random memory's shared `entries` (recipe memory.global_entries)")
	fs.StringVar(&f.align, "align", bundle.AlignIMM, "the random bundle's alignment `method`: imm or none")
	fs.StringVar(&f.provider, "provider", "cpu", "execution `provider`: cpu, cuda or tensorrt")
	fs.StringVar(&f.lib, "onnxruntime-library", "", libraryFlagUsage)
	fs.BoolVar(&f.pipeline, "pipeline", false, "time the whole daemon pipeline instead of the stages")
	fs.StringVar(&f.frames, "frames", "640x480,1920x1080", "comma-separated camera frame `sizes` for --pipeline")
	fs.IntVar(&f.parts, "parts", 300, "`parts` per frame size for --pipeline")
	fs.BoolVar(&f.fp16, "tensorrt-fp16", false, "let TensorRT build FP16 engines (--provider tensorrt)")
	fs.StringVar(&f.engineCache, "engine-cache-dir", "", "TensorRT engine and timing cache `dir` (--provider tensorrt; default: none, every run builds)")
	fs.StringVar(&f.dumpHeatmap, "dump-heatmap", "", "write the localise stage's heatmap to `file` (.npy, float32 H×W)")
	fs.StringVar(&f.compareWith, "compare-heatmap", "", "compare the localise stage's heatmap with `file` (from --dump-heatmap) and exit 1 if it differs by more than --tolerance")
	fs.Float64Var(&f.tolerance, "tolerance", 1e-3, "largest allowed max|Δ| / max(1, max|reference|) for --compare-heatmap")
	tfliteBenchFlags(fs, &f)
	if done, err := parseFlags(fs, s, args); done {
		return f, true, err
	}
	if err := noArgs(fs); err != nil {
		return f, true, err
	}
	if f.threads < 1 || f.threads > 64 {
		return f, true, usageErr("bench: --threads %d is out of range; allowed 1 to 64 (as model.threads)", f.threads)
	}
	if f.iterations < 1 {
		return f, true, usageErr("bench: --iterations %d must be at least 1", f.iterations)
	}
	if f.parts < 1 {
		return f, true, usageErr("bench: --parts %d must be at least 1", f.parts)
	}
	if !f.pipeline && (flagSet(fs, "frames") || flagSet(fs, "parts")) {
		return f, true, usageErr("bench: --frames and --parts apply to --pipeline")
	}
	if err := checkGPUBenchFlags(fs, f); err != nil {
		return f, true, err
	}
	if err := checkTFLiteBenchFlags(fs, f); err != nil {
		return f, true, err
	}
	if f.pipeline {
		for _, fr := range strings.Split(f.frames, ",") {
			if _, _, err := parseFrameSize(fr); err != nil {
				return f, true, usageErr("bench: --frames: %v", err)
			}
		}
	}
	var err error
	if f.height, f.width, err = parseSize(*size); err != nil {
		return f, true, usageErr("bench: --size: %v", err)
	}
	if f.bundleDir != "" && f.saveBundle != "" {
		return f, true, usageErr("bench: --save-bundle applies to the random bundle; it cannot be combined with --bundle")
	}
	if f.bundleDir != "" && flagSet(fs, "size") {
		return f, true, usageErr("bench: --size applies to the random bundle; with --bundle the bundle's own input size is used")
	}
	if f.bundleDir != "" {
		for _, name := range []string{"localize", "shared-entries", "align"} {
			if flagSet(fs, name) {
				return f, true, usageErr("bench: --%s applies to the random bundle; with --bundle the bundle's own architecture is used", name)
			}
		}
	}
	switch f.localize {
	case bundle.LocalizeMemory:
		if f.sharedEntries < 1 || f.sharedEntries > bundle.MaxGlobalEntries {
			return f, true, usageErr("bench: --shared-entries %d is out of range; allowed 1 to %d (as memory.global_entries)", f.sharedEntries, bundle.MaxGlobalEntries)
		}
	case bundle.LocalizeCentres:
		if flagSet(fs, "shared-entries") {
			return f, true, usageErr("bench: --shared-entries applies to --localize memory")
		}
	default:
		return f, true, usageErr("bench: --localize %q; allowed %q or %q", f.localize, bundle.LocalizeMemory, bundle.LocalizeCentres)
	}
	if f.align != bundle.AlignIMM && f.align != bundle.AlignNone {
		return f, true, usageErr("bench: --align %q; allowed %q or %q", f.align, bundle.AlignIMM, bundle.AlignNone)
	}
	if f.saveBundle != "" {
		if err := bundle.CheckReplaceable(f.saveBundle); err != nil {
			return f, true, usageErr("bench: --save-bundle: %v", err)
		}
	}
	return f, false, nil
}

// benchBundle loads --bundle, or writes and loads a random-weight bundle of
// the requested size (kept at --save-bundle, else in a temporary directory
// that cleanup removes).
func benchBundle(f benchFlags) (_ *bundle.Bundle, cleanup func(), _ error) {
	cleanup = func() {}
	dir := f.bundleDir
	if dir == "" {
		dir = f.saveBundle
		if dir == "" {
			tmp, err := os.MkdirTemp("", "inspectd-bench-")
			if err != nil {
				return nil, cleanup, err
			}
			cleanup = func() { os.RemoveAll(tmp) }
			dir = filepath.Join(tmp, "bundle")
		}
		if _, err := netdef.WriteRandomBundle(dir, randomBundleOptions(f)); err != nil {
			return nil, cleanup, err
		}
	}
	b, err := bundle.Load(dir)
	return b, cleanup, err
}

// benchBackbone returns the real backbone weights when they can be found,
// for a faithful backbone-only stage, else nil (random weights: the cost is
// the same). Weights that are found but do not load are an error.
func benchBackbone(s streams) (*backbone.Weights, error) {
	p, err := backbone.Locate()
	if err != nil {
		fmt.Fprintf(s.stderr, "bench: no backbone weights found (%v); timing the backbone with random weights (same cost)\n", err)
		return nil, nil
	}
	bb, err := backbone.LoadNPYDir(p)
	if err != nil {
		return nil, fmt.Errorf("bench: backbone weights: %w", err)
	}
	return bb, nil
}

func printBenchJSON(s streams, res *bench.Result) error {
	out := struct {
		Threads int                          `json:"threads"`
		Size    any                          `json:"size"`
		Height  int                          `json:"height"`
		Width   int                          `json:"width"`
		Stages  map[string]bench.StageTiming `json:"stages"`
	}{res.Threads, sizeValue(res.Height, res.Width), res.Height, res.Width, res.Stages}
	return json.NewEncoder(s.stdout).Encode(out)
}

func printBenchTable(s streams, res *bench.Result) {
	fmt.Fprintf(s.stdout, "inspectd bench: %dx%d input, %d threads, provider %s, %d runs per stage after warm-up\n",
		res.Width, res.Height, res.Threads, res.Provider, res.Iterations)
	fmt.Fprintf(s.stdout, "%-10s %9s %9s %9s\n", "stage", "min ms", "median ms", "p99 ms")
	for _, name := range []string{"backbone", "align", "localize"} {
		t, ok := res.Stages[name]
		if !ok {
			fmt.Fprintf(s.stdout, "%-10s %9s\n", name, "(none)")
			continue
		}
		fmt.Fprintf(s.stdout, "%-10s %9.2f %9.2f %9.2f\n", name, t.MinMs, t.MedianMs, t.P99Ms)
	}
	if bt, lt := res.Stages["backbone"], res.Stages["localize"]; bt.MedianMs > 0 {
		fmt.Fprintf(s.stdout, "localize / backbone (median): %.2f\n", lt.MedianMs/bt.MedianMs)
	}
}

func sizeValue(h, w int) any {
	if h == w {
		return h
	}
	return fmt.Sprintf("%dx%d", h, w)
}

// parseSize reads "N" or "HxW" with multiples of 16.
func parseSize(s string) (h, w int, err error) {
	hs, ws, found := strings.Cut(s, "x")
	if !found {
		ws = hs
	}
	if h, err = strconv.Atoi(hs); err == nil {
		w, err = strconv.Atoi(ws)
	}
	if err != nil || h < 16 || w < 16 || h%16 != 0 || w%16 != 0 || h > 4096 || w > 4096 {
		return 0, 0, fmt.Errorf("%q: want N or HxW, multiples of 16 from 16 to 4096", s)
	}
	return h, w, nil
}

// randomBundleOptions shapes the random bundle as the flags ask.
func randomBundleOptions(f benchFlags) netdef.RandomBundleOptions {
	o := netdef.RandomBundleOptions{Height: f.height, Width: f.width, Seed: 1, NoAlign: f.align == bundle.AlignNone}
	if f.localize == bundle.LocalizeMemory {
		o.SharedEntries = f.sharedEntries
	}
	return o
}

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
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

func runBench(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "bench", "bench [--bundle DIR] [--threads N] [--size 256|HxW] [--iterations K] [--json]\n\nTimes the backbone alone, the align stage and the full localise stage on this\nmachine after warm-up, and prints min / median / p99 milliseconds per stage.\nWithout --bundle it builds a random-weight bundle of the standard architecture,\nso any box can be sized before a model is trained.")
	bundleDir := fs.String("bundle", "", "model bundle `dir` (default: random weights)")
	threads := fs.Int("threads", 2, "intra-op `threads` per session")
	size := fs.String("size", "256", "model input `size` for the random bundle: N (square) or HxW, multiples of 16")
	iterations := fs.Int("iterations", 50, "timed `runs` per stage")
	asJSON := fs.Bool("json", false, "print JSON")
	saveBundle := fs.String("save-bundle", "", "keep the random bundle in `dir` (e.g. for bench/torch_reference.py)")
	provider := fs.String("provider", "cpu", "execution `provider`: cpu, cuda or tensorrt")
	lib := fs.String("onnxruntime-library", "", libraryFlagUsage)
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *threads < 1 || *threads > 64 {
		return usageErr("bench: --threads %d is out of range; allowed 1 to 64 (as model.threads)", *threads)
	}
	if *iterations < 1 {
		return usageErr("bench: --iterations %d must be at least 1", *iterations)
	}
	h, w, err := parseSize(*size)
	if err != nil {
		return usageErr("bench: --size: %v", err)
	}
	dir := *bundleDir
	if dir != "" && *saveBundle != "" {
		return usageErr("bench: --save-bundle applies to the random bundle; it cannot be combined with --bundle")
	}
	if dir != "" && flagSet(fs, "size") {
		return usageErr("bench: --size applies to the random bundle; with --bundle the bundle's own input size is used")
	}
	if *saveBundle != "" {
		if err := bundle.CheckReplaceable(*saveBundle); err != nil {
			return usageErr("bench: --save-bundle: %v", err)
		}
	}

	rt, err := openRuntime(*lib)
	if err != nil {
		return failure(err)
	}
	defer rt.Close()

	if dir == "" {
		dir = *saveBundle
		if dir == "" {
			tmp, err := os.MkdirTemp("", "inspectd-bench-")
			if err != nil {
				return failure(err)
			}
			defer os.RemoveAll(tmp)
			dir = filepath.Join(tmp, "bundle")
		}
		if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: h, Width: w, Seed: 1}); err != nil {
			return failure(err)
		}
	}
	b, err := bundle.Load(dir)
	if err != nil {
		return failure(err)
	}
	// Real weights when available, for a faithful backbone-only stage; the
	// cost is the same with random ones.
	var bb *backbone.Weights
	if p, err := backbone.Locate(); err == nil {
		if bb, err = backbone.LoadNPYDir(p); err != nil {
			return failure(fmt.Errorf("bench: backbone weights: %w", err))
		}
	} else {
		fmt.Fprintf(s.stderr, "bench: no backbone weights found (%v); timing the backbone with random weights (same cost)\n", err)
	}
	res, err := infer.BenchStages(ctx, rt, b, infer.BenchOptions{
		Session:    infer.SessionOptions{IntraOpThreads: *threads, Provider: *provider},
		Iterations: *iterations,
		Backbone:   bb,
	})
	if err != nil {
		return failure(err)
	}
	if *asJSON {
		out := struct {
			Threads int                          `json:"threads"`
			Size    any                          `json:"size"`
			Height  int                          `json:"height"`
			Width   int                          `json:"width"`
			Stages  map[string]infer.StageTiming `json:"stages"`
		}{res.Threads, sizeValue(res.Height, res.Width), res.Height, res.Width, res.Stages}
		enc := json.NewEncoder(s.stdout)
		return enc.Encode(out)
	}
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
	return nil
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

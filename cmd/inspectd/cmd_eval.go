//go:build workstation

package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/evaluate"
	"github.com/inspectd/inspectd/models/staging"
)

func evalCommand(ctx context.Context, s streams, args []string) error {
	compare, args, err := compareArgs(args)
	if err != nil {
		return err
	}
	fs := newFlagSet(s, "eval", "eval --bundle DIR --data ROOT [--categories a,b] [--json FILE] [--report DIR] [--save-maps DIR] [flags]\n       eval --compare OLD NEW --data ROOT [--categories a,b] [--json FILE] [--report DIR] [flags]\n\nRuns every test image of each category (MVTec layout: <ROOT>/<category>/test/...)\nthrough the bundle's align and localise stages and reports image AUROC, pixel AUROC,\npixel AP, AUPRO (FPR ≤ 0.3), F1, false rejects and escapes of the daemon's own\nverdicts (the decision of `inspectd run`: NG by score above the image threshold, or\nby a defect region above the pixel threshold of at least min_defect_area pixels),\nthe F1-optimal threshold and per-stage latency. --config decides with a station's\n[decision] section (and --product with that product's overrides). Pixel metrics\nneed ground-truth masks; without them only image-level metrics are reported, and the output says so.\n\nWith --compare, scores two bundles (e.g. the one in service and one retrained on\nreviewed parts) on the same data, each at its own calibrated threshold, and prints one\ntable per category and defect type: image AUROC, false-reject rate (good images\nrejected) and escapes (defect images passed); --report writes index.html with both\nand each bundle's full report in old/ and new/.")
	bundleDir := fs.String("bundle", "", "model bundle `dir`")
	data := fs.String("data", "", "dataset `root` holding one folder per category")
	categories := fs.String("categories", "", "comma-separated `names` to evaluate (default: all)")
	jsonPath := fs.String("json", "", "write the metrics as JSON to `file` (- for standard output)")
	reportDir := fs.String("report", "", "write an HTML report with plots and overlays into `dir`")
	mapsDir := fs.String("save-maps", "", "write every test image's heatmap, score and label into `dir` as <category>_maps.npz (the layout of peers.py --save-maps; scripts/peer_metrics.py scores it with the peers' metric code)")
	threshold := fs.Float64("threshold", 0, "image-score `threshold` (default: the bundle's calibrated one, or --config's)")
	pixelThreshold := fs.Float64("pixel-threshold", 0, "heatmap `threshold` of the defect regions (default: the bundle's calibrated one, or --config's)")
	minDefectArea := fs.Int("min-defect-area", 0, "smallest defect region, in `pixels` of the test image, that rejects a part (default: --config's decision.min_defect_area, else 0 as the daemon's default)")
	configPath := fs.String("config", "", "decide as the station with this config `file` does: its [decision] section (thresholds when set, min_defect_area, max_regions, max_outside_fraction)")
	product := fs.String("product", "", "with --config: decide with this [[product]]'s decision overrides")
	overlays := fs.Int("overlays", evaluate.DefaultOverlays, "worst false positives and negatives drawn per category")
	threads := fs.Int("threads", 2, "intra-op `threads` per inference session")
	lib := fs.String("onnxruntime-library", "", libraryFlagUsage)
	quiet := fs.Bool("quiet", false, "no progress bar")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if compare != nil {
		switch {
		case *bundleDir != "":
			return usageErr("eval: --bundle and --compare exclude each other; --compare OLD NEW names both bundles")
		case *data == "":
			return usageErr("eval: --compare needs --data")
		case flagSet(fs, "threshold"):
			return usageErr("eval: --threshold does not apply to --compare: each bundle is scored at its own calibrated threshold")
		case flagSet(fs, "pixel-threshold"):
			return usageErr("eval: --pixel-threshold does not apply to --compare: each bundle is scored at its own calibrated thresholds")
		case *mapsDir != "":
			return usageErr("eval: --save-maps does not apply to --compare")
		}
	} else if *bundleDir == "" || *data == "" {
		return usageErr("eval: --bundle and --data are required")
	}
	if math.IsNaN(*threshold) || *threshold < 0 || *threshold > 1 {
		return usageErr("eval: --threshold %g: want a value in (0, 1], or 0 for the calibrated one", *threshold)
	}
	if math.IsNaN(*pixelThreshold) || *pixelThreshold < 0 || *pixelThreshold > 1 {
		return usageErr("eval: --pixel-threshold %g: want a value in (0, 1], or 0 for the calibrated one", *pixelThreshold)
	}
	if *minDefectArea < 0 {
		return usageErr("eval: --min-defect-area %d: want 0 or more pixels", *minDefectArea)
	}
	if *product != "" && *configPath == "" {
		return usageErr("eval: --product needs --config, the station config that defines it")
	}
	dec, err := evalDecision(*configPath, *product)
	if err != nil {
		return err
	}
	if *pixelThreshold > 0 {
		dec.PixelThreshold = *pixelThreshold
	}
	if flagSet(fs, "min-defect-area") {
		dec.MinDefectArea = *minDefectArea
	}
	if compare != nil && (dec.Threshold > 0 || dec.PixelThreshold > 0) {
		return usageErr("eval: --compare scores each bundle at its own calibrated thresholds; --config %s sets decision.threshold or pixel_threshold", *configPath)
	}
	if *threads < 1 || *threads > 64 {
		return usageErr("eval: --threads %d is out of range; allowed 1 to 64", *threads)
	}
	if *overlays < 0 {
		return usageErr("eval: --overlays %d must be 0 or more", *overlays)
	}
	if compare != nil {
		for _, b := range compare {
			if err := checkEvalOutputs(*jsonPath, *reportDir, *mapsDir, b, *data); err != nil {
				return usageErr("eval: %v", strings.Replace(err.Error(), "--bundle", "--compare", 1))
			}
		}
	} else if err := checkEvalOutputs(*jsonPath, *reportDir, *mapsDir, *bundleDir, *data); err != nil {
		return usageErr("eval: %v", err)
	}

	cats, err := dataset.Open(*data)
	if err != nil {
		return failure(fmt.Errorf("eval: --data: %w", err))
	}
	if *categories != "" {
		if cats, err = selectCategories(cats, strings.Split(*categories, ",")); err != nil {
			return usageErr("eval: %v", err)
		}
	}
	opts := evaluate.Options{Threshold: *threshold, Overlays: *overlays, Decision: dec}
	if *reportDir == "" {
		opts.Overlays = -1
	}
	if !*quiet {
		opts.Progress = s.stderr
	}
	if compare != nil {
		return evalCompare(ctx, s, compare, cats, opts, *lib, *threads, *jsonPath, *reportDir)
	}
	b, err := bundle.Load(*bundleDir)
	if err != nil {
		return failure(err)
	}
	rt, err := openRuntime(*lib)
	if err != nil {
		return failure(err)
	}
	defer rt.Close()
	eng, err := infer.NewEngine(rt, b, infer.EngineOptions{IntraOpThreads: *threads})
	if err != nil {
		return failure(err)
	}
	defer eng.Close()

	var maps *staging.Dir
	if *mapsDir != "" {
		if maps, err = staging.New(*mapsDir); err != nil {
			return failure(fmt.Errorf("eval: --save-maps: %w", err))
		}
		defer maps.Abort()
		opts.MapsDir = maps.Path()
	}
	rep, err := evaluate.Run(ctx, eng, cats, opts)
	if err != nil {
		return failure(err)
	}
	if maps != nil {
		if err := maps.Commit(); err != nil {
			return failure(fmt.Errorf("eval: --save-maps: %w", err))
		}
	}
	if *jsonPath != "" {
		var buf bytes.Buffer
		if err := rep.WriteJSON(&buf); err != nil {
			return failure(err)
		}
		if *jsonPath == "-" {
			s.stdout.Write(buf.Bytes())
		} else if err := writeFileAtomic(*jsonPath, buf.Bytes()); err != nil {
			return failure(fmt.Errorf("eval: --json: %w", err))
		}
	}
	if *reportDir != "" {
		out, err := staging.New(*reportDir)
		if err != nil {
			return failure(fmt.Errorf("eval: --report: %w", err))
		}
		defer out.Abort()
		if err := rep.WriteHTML(out.Path()); err != nil {
			return failure(err)
		}
		if err := out.Commit(); err != nil {
			return failure(fmt.Errorf("eval: --report: %w", err))
		}
	}
	printEvalSummary(s, rep)
	return nil
}

// compareArgs takes "--compare OLD NEW" (or "-compare OLD NEW") out of
// args, which the flag package cannot parse (a flag has one value); nil
// when absent. It stops at "--", as the flag package does.
func compareArgs(args []string) ([]string, []string, error) {
	for i, a := range args {
		if a == "--" {
			break
		}
		if a != "--compare" && a != "-compare" {
			if strings.HasPrefix(a, "--compare=") || strings.HasPrefix(a, "-compare=") {
				return nil, nil, usageErr("eval: --compare takes two bundles: --compare OLD NEW")
			}
			continue
		}
		if len(args) < i+3 || strings.HasPrefix(args[i+1], "-") || strings.HasPrefix(args[i+2], "-") {
			return nil, nil, usageErr("eval: --compare takes two bundles: --compare OLD NEW")
		}
		rest := append(append([]string(nil), args[:i]...), args[i+3:]...)
		for _, b := range rest {
			if b == "--compare" || b == "-compare" {
				return nil, nil, usageErr("eval: --compare given twice")
			}
		}
		return []string{args[i+1], args[i+2]}, rest, nil
	}
	return nil, args, nil
}

// evalCompare scores both bundles on cats the way eval scores one, each
// at its own calibrated threshold, and prints (and writes) the comparison.
func evalCompare(ctx context.Context, s streams, dirs []string, cats []*dataset.Category, opts evaluate.Options, lib string, threads int, jsonPath, reportDir string) error {
	if same, err := staging.Overlaps(dirs[0], dirs[1]); err != nil {
		return usageErr("eval: --compare: %v", err)
	} else if same {
		return usageErr("eval: --compare %s %s: the same bundle twice (or one inside the other), expected two bundles", dirs[0], dirs[1])
	}
	rt, err := openRuntime(lib)
	if err != nil {
		return failure(err)
	}
	defer rt.Close()
	var reps [2]*evaluate.Report
	for i, dir := range dirs {
		b, err := bundle.Load(dir)
		if err != nil {
			return failure(fmt.Errorf("eval: --compare: %w", err))
		}
		eng, err := infer.NewEngine(rt, b, infer.EngineOptions{IntraOpThreads: threads})
		if err != nil {
			return failure(fmt.Errorf("eval: --compare %s: %w", dir, err))
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%s bundle %s\n", [2]string{"old", "new"}[i], dir)
		}
		reps[i], err = evaluate.Run(ctx, eng, cats, opts)
		eng.Close()
		if err != nil {
			return failure(err)
		}
	}
	cmp, err := evaluate.Compare(dirs[0], reps[0], dirs[1], reps[1])
	if err != nil {
		return failure(err)
	}
	if jsonPath != "" {
		var buf bytes.Buffer
		if err := cmp.WriteJSON(&buf); err != nil {
			return failure(err)
		}
		if jsonPath == "-" {
			s.stdout.Write(buf.Bytes())
		} else if err := writeFileAtomic(jsonPath, buf.Bytes()); err != nil {
			return failure(fmt.Errorf("eval: --json: %w", err))
		}
	}
	if reportDir != "" {
		out, err := staging.New(reportDir)
		if err != nil {
			return failure(fmt.Errorf("eval: --report: %w", err))
		}
		defer out.Abort()
		if err := cmp.WriteHTML(out.Path()); err != nil {
			return failure(err)
		}
		if err := out.Commit(); err != nil {
			return failure(fmt.Errorf("eval: --report: %w", err))
		}
	}
	if jsonPath != "-" {
		if err := cmp.WriteText(s.stdout); err != nil {
			return failure(err)
		}
	}
	return nil
}

// evalDecision is the decision eval takes its verdicts with: the daemon's
// defaults, or the [decision] section of the station config at path (with
// the overrides of its [[product]] named product, when given).
func evalDecision(path, product string) (config.Decision, error) {
	def := config.Default().Decision
	if path == "" {
		return def, nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return def, usageErr("eval: --config: %v", err)
	}
	if product == "" {
		return cfg.Decision, nil
	}
	var names []string
	for _, p := range cfg.Products {
		if p.Name == product {
			return p.EffectiveDecision(cfg.Decision), nil
		}
		names = append(names, p.Name)
	}
	return def, usageErr("eval: --product %q: %s defines no such product (have %s)", product, path, strings.Join(names, ", "))
}

// selectCategories keeps the named categories, in the order given.
func selectCategories(all []*dataset.Category, names []string) ([]*dataset.Category, error) {
	byName := map[string]*dataset.Category{}
	var have []string
	for _, c := range all {
		byName[c.Name] = c
		have = append(have, c.Name)
	}
	var out []*dataset.Category
	for _, n := range names {
		n = strings.TrimSpace(n)
		c, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("no category %q in the dataset (have %s)", n, strings.Join(have, ", "))
		}
		out = append(out, c)
	}
	return out, nil
}

// printEvalSummary prints one table row per category.
func printEvalSummary(s streams, rep *evaluate.Report) {
	f := func(p *float64) string {
		if p == nil {
			return "     -"
		}
		return fmt.Sprintf("%6.3f", *p)
	}
	fmt.Fprintf(s.stdout, "%-16s %6s %6s %6s %6s %6s %9s %9s\n", "category", "imgAUC", "pxAUC", "pxAP", "AUPRO", "F1@thr", "align ms", "local ms")
	for _, c := range rep.Categories {
		var f1 *float64
		if c.AtThreshold != nil {
			f1 = &c.AtThreshold.F1
		}
		fmt.Fprintf(s.stdout, "%-16s %s %s %s %s %s %9.2f %9.2f\n", c.Name, f(c.ImageAUROC), f(c.PixelAUROC), f(c.PixelAP), f(c.AUPRO), f(f1),
			c.Latency.Align.MedianMs, c.Latency.Localize.MedianMs)
		good := c.Count - c.Anomalous
		fmt.Fprintf(s.stdout, "  verdicts (image threshold %.4g, pixel threshold %.4g, min_defect_area %d): %d of %d good rejected (%d by region), %d of %d defective passed\n",
			c.Threshold, c.PixelThreshold, rep.Bundle.MinDefectArea, c.FalseRejects, good, c.GoodRejectedByRegion, c.Escapes, c.Anomalous)
		for _, n := range c.Notes {
			fmt.Fprintf(s.stdout, "  note: %s\n", n)
		}
	}
}

// checkEvalOutputs refuses, before any work, outputs that would overwrite
// inputs or files eval did not write: --json, --report and --save-maps
// must lie outside the bundle, the dataset and each other; an existing --json file must
// be an earlier eval report; --report and --save-maps must be new or empty
// directories.
func checkEvalOutputs(jsonPath, reportDir, mapsDir, bundleDir, data string) error {
	inputs := []struct{ flag, path string }{{"--bundle", bundleDir}, {"--data", data}}
	outputs := []struct{ flag, path string }{{"--json", jsonPath}, {"--report", reportDir}, {"--save-maps", mapsDir}}
	for i, out := range outputs {
		if out.path == "" || out.path == "-" {
			continue
		}
		for _, other := range outputs[:i] {
			if other.path == "" || other.path == "-" {
				continue
			}
			overlap, err := staging.Overlaps(out.path, other.path)
			if err != nil {
				return fmt.Errorf("%s: %w", out.flag, err)
			}
			if overlap {
				return fmt.Errorf("%s %s and %s %s overlap: outputs must be separate directories or files", other.flag, other.path, out.flag, out.path)
			}
		}
		for _, in := range inputs {
			overlap, err := staging.Overlaps(out.path, in.path)
			if err != nil {
				return fmt.Errorf("%s: %w", out.flag, err)
			}
			if overlap {
				return fmt.Errorf("%s %s lies inside %s %s (or contains it); write results elsewhere", out.flag, out.path, in.flag, in.path)
			}
		}
	}
	if jsonPath != "" && jsonPath != "-" {
		if st, err := os.Lstat(jsonPath); err == nil {
			if !st.Mode().IsRegular() {
				return fmt.Errorf("--json %s exists and is not a regular file", jsonPath)
			}
			head := make([]byte, 64)
			f, err := os.Open(jsonPath)
			if err != nil {
				return fmt.Errorf("--json: %w", err)
			}
			n, _ := f.Read(head)
			f.Close()
			if !bytes.HasPrefix(bytes.TrimSpace(head[:n]), []byte(`{`)) || !bytes.Contains(head[:n], []byte(`"categories"`)) {
				return fmt.Errorf("--json %s exists and is not an eval report; refusing to overwrite it", jsonPath)
			}
		}
	}
	for _, dir := range []struct{ flag, path string }{{"--report", reportDir}, {"--save-maps", mapsDir}} {
		if dir.path == "" {
			continue
		}
		if err := staging.Check(dir.path); err != nil {
			return fmt.Errorf("%s: %w", dir.flag, err)
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

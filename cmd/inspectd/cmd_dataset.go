//go:build workstation

package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/models/relearn"
	"github.com/inspectd/inspectd/models/rto"
	"github.com/inspectd/inspectd/models/synth"
)

// datasetCommand dispatches `inspectd dataset rto|synth`.
func datasetCommand(ctx context.Context, s streams, args []string) error {
	const usage = "dataset <rto|synth|from-archive> [flags]\n\n  rto           write a randomly rotated and shifted copy of an MVTec-layout dataset (the paper's MAD-RTO)\n  synth         generate synthetic parts with known poses and painted defects with exact masks\n  from-archive  turn a station's archive and its reviewers' label log into an MVTec-layout category"
	if len(args) == 0 {
		return usageErr("dataset: missing subcommand; usage: inspectd %s", usage)
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprintf(s.stdout, "Usage: inspectd %s\n", usage)
		return nil
	case "rto":
		return datasetRTO(ctx, s, args[1:])
	case "synth":
		return datasetSynth(ctx, s, args[1:])
	case "from-archive":
		return datasetFromArchive(ctx, s, args[1:])
	}
	return usageErr("dataset: unknown subcommand %q; usage: inspectd %s", args[0], usage)
}

func datasetRTO(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "dataset rto", "dataset rto --src ROOT --dst ROOT [flags]\n\nApplies one random rotation and shift to each image and, identically, its mask, in\ntrain and test, reproducibly by seed; writes <name>.rto.json with the transform next\nto each image. Borders are filled by replicating the edge (or a constant 0).")
	src := fs.String("src", "", "source dataset `root` (MVTec layout)")
	dst := fs.String("dst", "", "destination `root` (must not exist inside src)")
	var o rto.Options
	fs.Float64Var(&o.MaxRotationDeg, "max-rotation", 30, "largest rotation in `degrees` (uniform in ±)")
	fs.Float64Var(&o.MaxShiftFrac, "max-shift", 0.1, "largest shift as a `fraction` of the image size (uniform in ±)")
	fs.Int64Var(&o.Seed, "seed", 1, "random `seed`")
	fs.StringVar(&o.Border, "border", rto.BorderReplicate, "border fill: replicate or constant")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *src == "" || *dst == "" {
		return usageErr("dataset rto: --src and --dst are required")
	}
	if err := firstErr(
		floatFlag("dataset rto", "max-rotation", o.MaxRotationDeg, 0, 180, "degrees"),
		floatFlag("dataset rto", "max-shift", o.MaxShiftFrac, 0, 0.5, "of the image size"),
		oneOfFlag("dataset rto", "border", o.Border, rto.BorderReplicate, rto.BorderConstant),
	); err != nil {
		return err
	}
	if err := rto.Generate(ctx, *src, *dst, o); err != nil {
		return failure(err)
	}
	fmt.Fprintf(s.stdout, "wrote RTO copy of %s to %s (±%g°, ±%g shift, seed %d)\n", *src, *dst, o.MaxRotationDeg, o.MaxShiftFrac, o.Seed)
	return nil
}

func datasetSynth(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "dataset synth", "dataset synth --dst ROOT [flags]\n\nDraws synthetic parts (one category per object) with random poses recorded in\n<name>.pose.json and painted defects (scratch, dent, missing, contamination, colour)\nwith exact masks, in MVTec layout.")
	dst := fs.String("dst", "", "destination `root`")
	var o synth.Options
	objects := fs.String("objects", strings.Join(synth.Objects(), ","), "comma-separated `objects` to draw")
	fs.Int64Var(&o.Seed, "seed", 1, "random `seed`")
	size := fs.Int("size", 256, "image width and height in `pixels`")
	fs.IntVar(&o.TrainGood, "train", 60, "good training images per object")
	fs.IntVar(&o.TestGood, "test-good", 20, "good test images per object")
	fs.IntVar(&o.TestPerDefect, "test-per-defect", 10, "test images per defect kind and object")
	fs.Float64Var(&o.MaxRotationDeg, "max-rotation", 30, "largest pose rotation in `degrees`")
	fs.Float64Var(&o.MaxShiftFrac, "max-shift", 0.1, "largest pose shift as a `fraction` of the image size")
	fs.BoolVar(&o.Grey, "grey", false, "write grey images instead of RGB")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *dst == "" {
		return usageErr("dataset synth: --dst is required")
	}
	o.Width, o.Height = *size, *size
	o.Objects = strings.Split(*objects, ",")
	// The library names its Options fields; the command names its flags.
	checks := []error{
		intFlag("dataset synth", "size", *size, 16, 8192, "pixels"),
		intFlag("dataset synth", "train", o.TrainGood, 1, 1<<20, "images"),
		intFlag("dataset synth", "test-good", o.TestGood, 0, 1<<20, "images"),
		intFlag("dataset synth", "test-per-defect", o.TestPerDefect, 0, 1<<20, "images"),
		floatFlag("dataset synth", "max-rotation", o.MaxRotationDeg, 0, 180, "degrees"),
		floatFlag("dataset synth", "max-shift", o.MaxShiftFrac, 0, 0.5, "of the image size"),
	}
	for _, ob := range o.Objects {
		checks = append(checks, oneOfFlag("dataset synth", "objects", ob, synth.Objects()...))
	}
	if err := firstErr(checks...); err != nil {
		return err
	}
	if err := synth.Generate(ctx, *dst, o); err != nil {
		return failure(err)
	}
	fmt.Fprintf(s.stdout, "wrote synthetic dataset to %s (objects %s, seed %d)\n", *dst, *objects, o.Seed)
	return nil
}

func datasetFromArchive(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "dataset from-archive", "dataset from-archive --archive DIR --out DIR [--labels LOG] [--product NAME] [--ok-sample N] [--seed S]\n\nWrites an MVTec-layout category from a station's archive ([archive] dir, copied off the\nstation) and the review view's label log: results labelled good (false rejects) go to\ntrain/good, with --ok-sample N that many unlabelled OK parts too; results labelled\ndefect go to test/<defect_type> with approximate masks in ground_truth/ drawn from the\ndaemon's regions. provenance.json records the station, bundle hashes, result IDs and\nlabel times. Unsure labels, labels of results the archive no longer holds and a torn\nlast label line are reported, not written. An existing non-empty --out is refused.")
	var o relearn.Options
	fs.StringVar(&o.Archive, "archive", "", "the station's archive `dir` (YYYY-MM-DD folders)")
	fs.StringVar(&o.Labels, "labels", "", "label `log` (default: <archive>/labels.jsonl)")
	fs.StringVar(&o.Out, "out", "", "category `dir` to create (e.g. relearn/metal_plate)")
	fs.StringVar(&o.Product, "product", "", "keep only results of this `product` (required when the archive's labelled results span several)")
	fs.IntVar(&o.OKSample, "ok-sample", 0, "also put `N` unlabelled OK parts, drawn at random, into train/good")
	seed := fs.Int64("seed", 1, "random `seed` of the OK sample")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if o.Archive == "" || o.Out == "" {
		return usageErr("dataset from-archive: --archive and --out are required")
	}
	if err := intFlag("dataset from-archive", "ok-sample", o.OKSample, 0, 1<<20, "parts"); err != nil {
		return err
	}
	o.Seed = uint64(*seed)
	sum, err := relearn.FromArchive(ctx, o)
	if sum != nil {
		for _, w := range sum.Warnings {
			fmt.Fprintf(s.stderr, "warning: %s\n", w)
		}
		if n := len(sum.Missing); n > 0 {
			fmt.Fprintf(s.stderr, "warning: %d labelled results are not in the archive (deleted by its size budget?): %s\n", n, firstFew(sum.Missing))
		}
		if n := len(sum.NoFrame); n > 0 {
			fmt.Fprintf(s.stderr, "warning: %d labelled results have no frame image in the archive (e.g. camera timeouts): %s\n", n, firstFew(sum.NoFrame))
		}
	}
	if err != nil {
		return failure(err)
	}
	var defects []string
	for _, d := range slices.Sorted(maps.Keys(sum.Defects)) {
		defects = append(defects, fmt.Sprintf("%s %d", d, sum.Defects[d]))
	}
	if len(defects) == 0 {
		defects = []string{"none"}
	}
	fmt.Fprintf(s.stdout, "wrote %s from %d archived results and %d label entries (%d results labelled)\n", sum.Out, sum.Archived, sum.Labels, sum.Labelled)
	fmt.Fprintf(s.stdout, "  train/good: %d labelled good, %d unlabelled OK parts sampled\n", sum.Good, sum.OKSampled)
	fmt.Fprintf(s.stdout, "  test: %s (masks approximate, from the daemon's regions; %d empty)\n", strings.Join(defects, ", "), sum.EmptyMasks)
	fmt.Fprintf(s.stdout, "  not written: %d unsure, %d missing from the archive, %d without a frame, %d of another product\n", sum.Unsure, len(sum.Missing), len(sum.NoFrame), sum.OtherProduct)
	if sum.Good+sum.OKSampled == 0 {
		fmt.Fprintf(s.stdout, "  note: train/good is empty; train on it together with other good images\n")
	}
	return nil
}

// firstFew lists up to five names, then how many more.
func firstFew(v []string) string {
	if len(v) <= 5 {
		return strings.Join(v, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(v[:5], ", "), len(v)-5)
}

// intFlag checks lo ≤ v ≤ hi for --name, as a usage error naming the flag.
func intFlag(cmd, name string, v, lo, hi int, unit string) error {
	if v < lo || v > hi {
		return usageErr("%s: --%s %d is out of range; allowed %d to %d %s", cmd, name, v, lo, hi, unit)
	}
	return nil
}

// floatFlag checks lo ≤ v ≤ hi (NaN fails) for --name.
func floatFlag(cmd, name string, v, lo, hi float64, unit string) error {
	if !(v >= lo && v <= hi) {
		return usageErr("%s: --%s %g is out of range; allowed %g to %g %s", cmd, name, v, lo, hi, unit)
	}
	return nil
}

// oneOfFlag checks that --name is one of allowed.
func oneOfFlag(cmd, name, v string, allowed ...string) error {
	if !slices.Contains(allowed, v) {
		return usageErr("%s: --%s %q is not one of %s", cmd, name, v, strings.Join(allowed, ", "))
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

//go:build workstation

package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/models/rto"
	"github.com/inspectd/inspectd/models/synth"
)

// datasetCommand dispatches `inspectd dataset rto|synth`.
func datasetCommand(ctx context.Context, s streams, args []string) error {
	const usage = "dataset <rto|synth> [flags]\n\n  rto    write a randomly rotated and shifted copy of an MVTec-layout dataset (the paper's MAD-RTO)\n  synth  generate synthetic parts with known poses and painted defects with exact masks"
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

//go:build workstation

package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/train"
)

func trainCommand(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "train", "train --good DIR --out BUNDLE [--relearned DIR] [--reviewed-good DIR] [--backbone PATH] [--recipe FILE] [--defects DIR] [--tflite]\n\nTrains a model bundle from defect-free images only: template choice, the image\nmatching module (align = \"imm\"), the anomaly localisation module with synthetic\ndefects, threshold calibration on held-out good images, ONNX export, and a final\ncheck that the exported bundle scores the held-out images as training did.\nSettings come from the recipe (see models/train/recipe.example.toml). An\ninterrupted or failed run leaves no bundle at --out.")
	good := fs.String("good", "", "`folder` of defect-free images")
	reviewed := fs.String("reviewed-good", "", "optional `folder` of good parts a reviewer confirmed after a station rejected them (train/good of `inspectd dataset from-archive`): trained on, never used to set the thresholds")
	relearned := fs.String("relearned", "", "optional category `dir` written by `inspectd dataset from-archive`: the good parts the station passed join the good images; those it rejected (false rejects) are trained on, never used to set the thresholds")
	out := fs.String("out", "", "bundle `dir` to write")
	bb := fs.String("backbone", "", "ResNet-18 weights: a folder of .npy files or a torchvision .pth `path` (default: $INSPECTD_BACKBONE or ../shared/backbones/resnet18)")
	recipePath := fs.String("recipe", "", "training recipe TOML `file` (default: built-in defaults)")
	defects := fs.String("defects", "", "optional MVTec-style category `dir` with test/<defect> images (for the F1-optimal threshold only)")
	lib := fs.String("onnxruntime-library", "", libraryFlagUsage)
	quiet := fs.Bool("quiet", false, "no progress output")
	tfl := fs.Bool("tflite", false, "also write TensorFlow Lite twins of the graphs (localize.tflite, align.tflite) for model.runtime = \"tflite\"")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *good == "" || *out == "" {
		return usageErr("train: --good and --out are required")
	}
	recipe, err := train.LoadRecipe(*recipePath)
	if err != nil {
		return failure(err)
	}
	var progress io.Writer = s.stderr
	if *quiet {
		progress = nil
	}
	rt, err := openRuntime(*lib)
	if err != nil {
		return failure(fmt.Errorf("train: %w", err))
	}
	defer rt.Close()
	res, err := train.Run(ctx, train.Options{GoodDir: *good, ReviewedGoodDir: *reviewed, RelearnedDir: *relearned, Backbone: *bb, Out: *out, Recipe: recipe,
		Defects: *defects, Backend: infer.NewBackend(rt), Progress: progress, TFLite: *tfl})
	if err != nil {
		return failure(err)
	}
	m := res.Manifest
	loc := fmt.Sprintf("centres D %d", m.Localize.D)
	if m.Localize.Method == bundle.LocalizeMemory {
		var parts []string
		if m.Localize.Entries > 0 {
			parts = append(parts, fmt.Sprintf("%d per location", m.Localize.Entries))
		}
		if m.Localize.GlobalEntries > 0 {
			shared := fmt.Sprintf("%d shared", m.Localize.GlobalEntries)
			if m.Localize.GlobalPrecision == bundle.PrecisionInt8 {
				shared += " in int8"
			}
			parts = append(parts, shared)
		}
		loc = fmt.Sprintf("memory of %d-value entries, %s", m.Localize.D, strings.Join(parts, " and "))
		if m.Localize.Stride > 0 {
			loc += fmt.Sprintf(" (cells of %d px, layers %v)", m.Localize.Stride, m.Localize.Layers)
		}
	}
	fmt.Fprintf(s.stdout, "wrote %s: %s, %dx%d, align %s, localise %s\n", *out, m.Product, m.Input.Width, m.Input.Height, m.Align.Method, loc)
	if res.IMMSteps > 0 {
		fmt.Fprintf(s.stdout, "alignment: %d steps, pose error %.2f px on the validation poses (%.2f px untrained)\n", res.IMMSteps, res.IMMPoseError, res.IMMPoseErrorUntrained)
	}
	if res.AlignFallback != "" {
		fmt.Fprintf(s.stdout, "alignment dropped: %s\n", res.AlignFallback)
	}
	fmt.Fprintf(s.stdout, "good scores used for calibration: n=%d min %.4f mean %.4f max %.4f\n", m.Calibration.GoodScores.Count,
		m.Calibration.GoodScores.Min, m.Calibration.GoodScores.Mean, m.Calibration.GoodScores.Max)
	fmt.Fprintf(s.stdout, "thresholds: image %.4f, pixel %.4f (%s)\n", m.Calibration.ImageThreshold, m.Calibration.PixelThreshold, m.Calibration.Rule)
	if res.F1Optimal != nil {
		fmt.Fprintf(s.stdout, "with --defects: image AUROC %.4f, F1-optimal threshold %.4f (F1 %.3f, precision %.3f, recall %.3f)\n",
			res.DefectsAUC, res.F1Optimal.Threshold, res.F1Optimal.F1, res.F1Optimal.Precision, res.F1Optimal.Recall)
	}
	fmt.Fprintf(s.stdout, "verified: bundle scores match training within %.2g (tolerance %g)\n", res.MaxVerify, train.VerifyTolerance)
	return nil
}

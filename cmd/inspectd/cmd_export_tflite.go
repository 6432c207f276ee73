//go:build workstation

package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/staging"
)

// exportTFLiteCommand copies a bundle to a new directory with TensorFlow
// Lite twins of its graphs, re-emitted from the weights held by its ONNX
// graphs (netdef.TFLiteTwins).
func exportTFLiteCommand(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "export-tflite", "export-tflite --bundle IN --out OUT\n\nWrites a copy of the bundle IN to OUT with TensorFlow Lite twins of its graphs\n(localize.tflite and, with the IMM, align.tflite), for model.runtime = \"tflite\".\nThe twins are written from the network definitions with the weights read back\nfrom IN's ONNX graphs, not converted from ONNX. OUT must not exist (or be an\nempty directory); the copy is staged beside it, verified, then renamed.")
	in := fs.String("bundle", "", "bundle `dir` to read")
	out := fs.String("out", "", "new bundle `dir` to write")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return usageErr("export-tflite: --bundle and --out are required")
	}
	if overlap, err := staging.Overlaps(*in, *out); err != nil {
		return failure(fmt.Errorf("export-tflite: %w", err))
	} else if overlap {
		return usageErr("export-tflite: --out %s overlaps --bundle %s; choose a new directory", *out, *in)
	}
	if err := staging.Check(*out); err != nil {
		return failure(fmt.Errorf("export-tflite: --out: %w", err))
	}
	b, err := bundle.Load(*in)
	if err != nil {
		return failure(fmt.Errorf("export-tflite: %w", err))
	}
	files := map[string][]byte{}
	if err := readBundleFiles(b, files); err != nil {
		return failure(fmt.Errorf("export-tflite: %w", err))
	}
	twins, err := netdef.TFLiteTwins(b)
	if err != nil {
		return failure(fmt.Errorf("export-tflite: %w", err))
	}
	maps.Copy(files, twins)
	if err := ctx.Err(); err != nil {
		return failure(fmt.Errorf("export-tflite: %w", err))
	}
	st, err := staging.New(*out)
	if err != nil {
		return failure(fmt.Errorf("export-tflite: --out: %w", err))
	}
	defer st.Abort()
	m := b.Manifest
	if err := bundle.Write(st.Path(), &m, files); err != nil {
		return failure(fmt.Errorf("export-tflite: %w", err))
	}
	if _, err := bundle.Load(st.Path()); err != nil {
		return failure(fmt.Errorf("export-tflite: the written bundle does not load: %w", err))
	}
	if err := st.Commit(); err != nil {
		return failure(fmt.Errorf("export-tflite: %w", err))
	}
	slog.Info("tflite twins exported", "component", "export-tflite", "bundle", *in, "out", *out)
	for _, name := range []string{bundle.LocalizeTFLiteName, bundle.AlignTFLiteName} {
		if d, ok := twins[name]; ok {
			fmt.Fprintf(s.stdout, "wrote %s/%s (%d bytes)\n", *out, name, len(d))
		}
	}
	return nil
}

// readBundleFiles adds every file listed in b's manifest, as verified by
// bundle.Load, to files (the graphs from b, the rest re-read and checked
// against their checksums).
func readBundleFiles(b *bundle.Bundle, files map[string][]byte) error {
	for name, sum := range b.Manifest.Files {
		switch name {
		case b.Manifest.Localize.Graph:
			files[name] = b.LocalizeGraph
			continue
		case b.Manifest.Align.Graph:
			if b.AlignGraph != nil {
				files[name] = b.AlignGraph
				continue
			}
		}
		data, err := bundle.ReadListedFile(b.Dir, name, sum)
		if err != nil {
			return err
		}
		files[name] = data
	}
	return nil
}

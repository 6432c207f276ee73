package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/rollout"
)

// packCommand is `inspectd pack`: a verified bundle directory into a
// bundle archive for the fleet rollout.
func packCommand(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "pack", `pack --bundle DIR --out FILE.tar.gz

Verifies the bundle DIR (bundle.Load) and writes its files (manifest.toml
and every file it lists) to FILE.tar.gz, the archive stations install:
entries sorted, zero times and owners, so the same bundle always packs to
the same bytes and the same SHA-256. FILE.tar.gz must not exist; it is
written beside itself under a hidden name and appears only when complete
and checked. Sign it next: inspectd sign --key PREFIX.key FILE.tar.gz.`)
	dir := fs.String("bundle", "", "bundle `dir` to pack")
	out := fs.String("out", "", "archive `file` to write (.tar.gz)")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *dir == "" || *out == "" {
		return usageErr("pack: --bundle and --out are required")
	}
	if err := checkNewOutput(*out); err != nil {
		return failure(fmt.Errorf("pack: --out: %w", err))
	}
	b, err := bundle.Load(*dir)
	if err != nil {
		return failure(fmt.Errorf("pack: %w", err))
	}
	want := map[string]string{bundle.ManifestName: b.Hash}
	maps.Copy(want, b.Manifest.Files)
	names := slices.Sorted(maps.Keys(want))
	var size int64
	var sum string
	err = writeNewFile(ctx, *out, 0o644, false, func(w io.Writer) error {
		f := w.(*os.File)
		bw := bufio.NewWriterSize(f, 1<<20)
		if err := rollout.WriteArchive(ctx, bw, b.Dir, names); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		// Read back what was written: exactly the verified files.
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		size = fi.Size()
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
			return err
		}
		sum = hex.EncodeToString(h.Sum(nil))
		got, err := rollout.ArchiveDigests(io.NewSectionReader(f, 0, size), max(size, 1<<30))
		if err != nil {
			return fmt.Errorf("the written archive does not read back: %w", err)
		}
		for _, name := range names {
			if got[name] != want[name] {
				return fmt.Errorf("%s changed while it was packed (sha256 %s, the verified bundle has %s); pack again", name, got[name], want[name])
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return failure(fmt.Errorf("pack: %w", err))
	}
	fmt.Fprintf(s.stdout, "wrote %s: %d files, %d bytes\nproduct %s, bundle hash %s\nsha256 %s\nnext: inspectd sign --key PREFIX.key %s --url https://...\n",
		*out, len(names), size, b.Manifest.Product, b.Hash, sum, *out)
	return nil
}

package relearn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive/layout"
)

// Size limits of the archive files read: a sidecar JSON and a frame image.
const (
	maxRecordBytes = 4 << 20
	maxImageBytes  = 512 << 20
)

// Record is one archived result as package io/archive writes it (names
// from io/archive/layout): the
// result's JSON sidecar and, when the result had a frame, the frame JPEG
// and maybe the heatmap overlay, all in one day directory:
//
//	<dir>/<YYYY-MM-DD>/<HHMMSS.mmm>_<VERDICT>_<id>.json
//	<dir>/<YYYY-MM-DD>/<HHMMSS.mmm>_<VERDICT>_<id>.jpg
//	<dir>/<YYYY-MM-DD>/<HHMMSS.mmm>_<VERDICT>_<id>.overlay.jpg
type Record struct {
	// Result is the decoded sidecar. Its Regions are in pixels of the
	// whole frame (the frame the .jpg holds), not of the ROI.
	Result inspection.Result
	// JSONPath is the sidecar; FramePath the frame JPEG ("" when the
	// result had no frame, e.g. a camera timeout).
	JSONPath, FramePath string
	// Name is the file-name form of the result ID (sanitised by the
	// archive), unique within an archive.
	Name string
}

// ScanArchive lists every result archived under dir, oldest first. Only
// day directories (YYYY-MM-DD) and the archive's own file names are read;
// anything else (notes, foreign folders, ".tmp-*" leftovers) is ignored.
// A symbolic link where the archive would have a day directory or a file
// is an error naming it: the archive never writes one, so it was planted,
// and following it could copy any file of the machine into a dataset.
// Two sidecars with the same result ID are an error naming both.
func ScanArchive(dir string) ([]Record, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("archive: %s is not a directory, expected the [archive] dir with YYYY-MM-DD folders", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var out []Record
	byID := map[string]string{}
	for _, e := range entries {
		if !layout.IsDay(e.Name()) {
			continue
		}
		day := filepath.Join(dir, e.Name())
		if e.Type()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("archive: %s is a symbolic link; the archive never writes one, refusing to follow it", day)
		}
		if !e.IsDir() {
			continue
		}
		files, err := os.ReadDir(day)
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		kinds := map[string]layout.Kind{}
		var bases []string
		for _, f := range files {
			base, kind, ok := layout.ParseName(f.Name())
			if !ok {
				continue
			}
			p := filepath.Join(day, f.Name())
			if f.Type()&os.ModeSymlink != 0 {
				return nil, fmt.Errorf("archive: %s is a symbolic link; the archive never writes one, refusing to follow it", p)
			}
			if !f.Type().IsRegular() {
				return nil, fmt.Errorf("archive: %s is not a regular file (%v), expected a file the archive wrote", p, f.Type())
			}
			if kind == layout.KindJSON {
				bases = append(bases, base)
			}
			kinds[base] |= kind
		}
		sort.Strings(bases)
		for _, base := range bases {
			rec := Record{JSONPath: filepath.Join(day, base+layout.SuffixJSON), Name: idOf(base)}
			if kinds[base]&layout.KindFrame != 0 {
				rec.FramePath = filepath.Join(day, base+layout.SuffixFrame)
			}
			data, err := readRegular(rec.JSONPath, maxRecordBytes)
			if err != nil {
				return nil, fmt.Errorf("archive: %w", err)
			}
			if err := json.Unmarshal(data, &rec.Result); err != nil {
				return nil, fmt.Errorf("archive: %s: %v, expected the JSON of an inspection result", rec.JSONPath, err)
			}
			if rec.Result.ID == "" {
				return nil, fmt.Errorf("archive: %s: result_id is empty, expected the result's ID", rec.JSONPath)
			}
			if prev, dup := byID[rec.Result.ID]; dup {
				return nil, fmt.Errorf("archive: %s and %s both hold result %q, expected one set per result", prev, rec.JSONPath, rec.Result.ID)
			}
			byID[rec.Result.ID] = rec.JSONPath
			out = append(out, rec)
		}
	}
	return out, nil
}

// readRegular reads the regular file p (at most limit bytes) without
// following a symbolic link: the file opened must be the one Lstat saw.
func readRegular(p string, limit int64) ([]byte, error) {
	before, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if before.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link; the archive never writes one, refusing to follow it", p)
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file, expected a file the archive wrote", p)
	}
	if before.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d expected of an archive file", p, before.Size(), limit)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	after, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(before, after) {
		return nil, fmt.Errorf("%s changed while it was opened (replaced by a link?); refusing it", p)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(f, limit+1)); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s grew past %d bytes while it was read", p, limit)
	}
	return buf.Bytes(), nil
}

// idOf returns the ID part of a base name layout.ParseName accepted.
func idOf(base string) string {
	rest := base[11:]
	return rest[strings.IndexByte(rest, '_')+1:]
}

// idChar reports whether c may appear in a defect type.
func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

package rollout

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/inspectd/inspectd/models/staging"
)

// MaxEntries is the most entries (files and directories) a bundle
// archive may hold; a bundle has a handful of files.
const MaxEntries = 64

// ArchiveInfo describes a bundle archive that passed ScanArchive.
type ArchiveInfo struct {
	Entries int   // files and directories
	Bytes   int64 // total size of the files
}

// limits are the caps an archive is checked against.
type limits struct {
	entry, total int64
}

func limitsFor(maxBytes int64) limits { return limits{entry: maxBytes, total: 2 * maxBytes} }

// entry is one checked archive entry.
type entry struct {
	name string // cleaned, relative, slash-separated
	dir  bool
	size int64
}

// checkHeader validates one tar header against the rules of a bundle
// archive and returns its cleaned name ("" for the archive's "./" root).
func checkHeader(h *tar.Header, lim limits) (entry, error) {
	name := h.Name
	bad := func(format string, args ...any) (entry, error) {
		return entry{}, fmt.Errorf("%w: entry %q: %s", ErrArchive, abbreviate(name), fmt.Sprintf(format, args...))
	}
	if name == "" {
		return bad("empty name")
	}
	if strings.ContainsRune(name, 0) || strings.Contains(name, "\\") {
		return bad("the name holds a NUL or backslash")
	}
	if strings.HasPrefix(name, "/") {
		return bad("absolute path; entries must be relative to the bundle directory")
	}
	for _, part := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if part == ".." {
			return bad("the path climbs out of the bundle directory with \"..\"")
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		clean = ""
	}
	e := entry{name: clean}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA is what old tars write
		if clean == "" {
			return bad("a file named like the archive root")
		}
		if h.Size < 0 {
			return bad("negative size")
		}
		if h.Size > lim.entry {
			return entry{}, fmt.Errorf("%w: entry %q is %d bytes, more than the %d-byte cap (rollout.max_bundle_mb)", ErrTooLarge, abbreviate(name), h.Size, lim.entry)
		}
		e.size = h.Size
	case tar.TypeDir:
		e.dir = true
	case tar.TypeSymlink:
		return bad("a symbolic link (to %q); a bundle archive holds only regular files and directories", abbreviate(h.Linkname))
	case tar.TypeLink:
		return bad("a hard link (to %q); a bundle archive holds only regular files and directories", abbreviate(h.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		return bad("a device; a bundle archive holds only regular files and directories")
	case tar.TypeFifo:
		return bad("a named pipe; a bundle archive holds only regular files and directories")
	default:
		return bad("unsupported entry type %q; a bundle archive holds only regular files and directories", string(h.Typeflag))
	}
	return e, nil
}

// walkArchive reads the gzip-compressed tar r, checks every entry and
// calls fn (if not nil) with each entry and its data. Data after the end
// of the tar archive (or after the gzip member) is ignored.
func walkArchive(r io.Reader, lim limits, fn func(e entry, data io.Reader) error) (ArchiveInfo, error) {
	var info ArchiveInfo
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return info, fmt.Errorf("%w: not a gzip stream: %v", ErrArchive, err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return info, fmt.Errorf("%w: reading entry %d: %v", ErrArchive, info.Entries+1, err)
		}
		e, err := checkHeader(h, lim)
		if err != nil {
			return info, err
		}
		if e.name == "" {
			continue // "./"
		}
		info.Entries++
		if info.Entries > MaxEntries {
			return info, fmt.Errorf("%w: more than %d entries; a bundle has a handful of files", ErrArchive, MaxEntries)
		}
		if seen[e.name] {
			return info, fmt.Errorf("%w: entry %q appears twice", ErrArchive, abbreviate(h.Name))
		}
		seen[e.name] = true
		info.Bytes += e.size
		if info.Bytes > lim.total {
			return info, fmt.Errorf("%w: the files add up to more than %d bytes (twice rollout.max_bundle_mb)", ErrTooLarge, lim.total)
		}
		data := io.Reader(tr)
		if fn != nil {
			if err := fn(e, data); err != nil {
				return info, err
			}
		}
		// Read what fn left, so that a corrupt stream is found here.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return info, fmt.Errorf("%w: reading entry %q: %v", ErrArchive, abbreviate(h.Name), err)
		}
	}
	// Read the gzip member to its end so that its CRC is checked: a tar
	// reader stops at the end-of-archive blocks.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return info, fmt.Errorf("%w: the gzip stream is corrupt: %v", ErrArchive, err)
	}
	if info.Entries == 0 {
		return info, fmt.Errorf("%w: the archive is empty", ErrArchive)
	}
	return info, nil
}

// ScanArchive checks a bundle archive without writing anything: gzip and
// tar structure, only regular files and directories, relative names
// without "..", no duplicates, at most MaxEntries entries, no file over
// maxBytes and at most 2×maxBytes in all. Errors wrap ErrArchive or
// ErrTooLarge.
func ScanArchive(r io.Reader, maxBytes int64) (ArchiveInfo, error) {
	return walkArchive(r, limitsFor(maxBytes), nil)
}

// unpack extracts the archive at archivePath into dst (an existing empty
// directory): files 0640, directories 0750, every file and directory
// fsynced. progress is called after each file.
func unpack(ctx context.Context, archivePath, dst string, lim limits, progress func(done, total int64, name string), total int64) error {
	f, err := os.Open(archivePath)
	if err != nil {
		return err
	}
	defer f.Close()
	dirs := []string{dst}
	var done int64
	_, err = walkArchive(f, lim, func(e entry, data io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(e.name))
		if e.dir {
			if err := os.MkdirAll(target, 0o750); err != nil {
				return spaceErr(err)
			}
			dirs = append(dirs, target)
			return nil
		}
		parent := filepath.Dir(target)
		if parent != dst {
			if err := os.MkdirAll(parent, 0o750); err != nil {
				return spaceErr(err)
			}
			dirs = append(dirs, parent)
		}
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o640)
		if err != nil {
			return fmt.Errorf("%w: entry %q: %v", ErrArchive, e.name, err)
		}
		n, err := io.Copy(out, data)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if isNoSpace(err) {
				return spaceErr(err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) || !isWriteErr(err) {
				return fmt.Errorf("%w: entry %q: %v", ErrArchive, e.name, err)
			}
			return fmt.Errorf("unpack %s: %w", e.name, err)
		}
		done += n
		if progress != nil {
			progress(done, total, e.name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if i+1 < len(dirs) && dirs[i] == dirs[i+1] {
			continue
		}
		if err := staging.SyncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func isWriteErr(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && (pe.Op == "write" || pe.Op == "sync" || pe.Op == "close")
}

// WriteArchive writes the files of dir named in names (slash-separated
// relative paths of regular files) to w as a bundle archive: a gzip-
// compressed tar, entries sorted by name, mode 0644, zero modification
// times and owners, so that the same files always give the same bytes.
// ctx is checked between files.
func WriteArchive(ctx context.Context, w io.Writer, dir string, names []string) error {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for i, name := range sorted {
		if err := ctx.Err(); err != nil {
			return err
		}
		if i > 0 && sorted[i-1] == name {
			return fmt.Errorf("%s is listed twice", name)
		}
		if err := addFile(tw, dir, name); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func addFile(tw *tar.Writer, dir, name string) error {
	if name == "" || path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." {
		return fmt.Errorf("%q is not a plain relative file name", name)
	}
	p := filepath.Join(dir, filepath.FromSlash(name))
	f, err := os.OpenFile(p, os.O_RDONLY|noFollow|nonBlock, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     fi.Size(),
		Mode:     0o644,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
	if len(name) <= 100 {
		h.Format = tar.FormatUSTAR
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("%s changed size while it was read", p)
	}
	return nil
}

// ArchiveDigests checks a bundle archive like ScanArchive and returns the
// hex SHA-256 of every file in it, by name: to prove that an archive
// holds exactly the files of a verified bundle.
func ArchiveDigests(r io.Reader, maxBytes int64) (map[string]string, error) {
	sums := map[string]string{}
	_, err := walkArchive(r, limitsFor(maxBytes), func(e entry, data io.Reader) error {
		if e.dir {
			return nil
		}
		h := sha256.New()
		if _, err := io.Copy(h, data); err != nil {
			return fmt.Errorf("%w: reading entry %q: %v", ErrArchive, e.name, err)
		}
		sums[e.name] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sums, nil
}

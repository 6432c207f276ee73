package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive/layout"
	"github.com/inspectd/inspectd/models/staging"
)

// The naming of sets is package layout's (shared with its Reader); these
// are its names inside the package.
const (
	suffixJPG     = layout.SuffixFrame
	suffixOverlay = layout.SuffixOverlay
	suffixJSON    = layout.SuffixJSON
	kindJPG       = uint8(layout.KindFrame)
	kindOverlay   = uint8(layout.KindOverlay)
	kindJSON      = uint8(layout.KindJSON)
	tmpPrefix     = layout.TmpPrefix
)

var (
	setName    = layout.SetName
	sanitizeID = layout.SanitizeID
	isDay      = layout.IsDay
)

// parseName is layout.ParseName with the kind as the index's uint8.
func parseName(name string) (base string, kind uint8, ok bool) {
	b, k, ok := layout.ParseName(name)
	return b, uint8(k), ok
}

// set is one archived result on disk.
type set struct {
	day, base string
	size      int64
	kinds     uint8
}

func (s *set) key() string { return s.day + "/" + s.base }

// compare orders sets by day, then name.
func (s *set) compare(day, base string) int {
	if c := strings.Compare(s.day, day); c != 0 {
		return c
	}
	return strings.Compare(s.base, base)
}

// index holds the archive's sets oldest first (by day and name, which is by
// verdict time) and their total size.
type index struct {
	sets  []set
	total int64
}

func (x *index) len() int { return len(x.sets) }

// find returns the position of the set (day, base), or where it would be.
func (x *index) find(day, base string) (int, bool) {
	return slices.BinarySearchFunc(x.sets, base, func(s set, b string) int { return s.compare(day, b) })
}

// add inserts s (a new key) in order; usually at the end.
func (x *index) add(s set) {
	if n := len(x.sets); n == 0 || x.sets[n-1].compare(s.day, s.base) < 0 {
		x.sets = append(x.sets, s)
	} else {
		i, _ := x.find(s.day, s.base)
		x.sets = slices.Insert(x.sets, i, s)
	}
	x.total += s.size
}

func (x *index) removeAt(i int) set {
	s := x.sets[i]
	if i == 0 {
		x.sets = x.sets[1:]
	} else {
		x.sets = slices.Delete(x.sets, i, i+1)
	}
	x.total -= s.size
	return s
}

// hasDay reports whether any set of day remains.
func (x *index) hasDay(day string) bool {
	i, _ := x.find(day, "")
	return i < len(x.sets) && x.sets[i].day == day
}

// open creates and probes the directory, scans it and enforces the budget.
func (a *Archive) open() error {
	dir := a.cfg.Dir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		// Stat explains better what is in the way (a symbolic-link loop).
		if _, serr := os.Stat(dir); serr != nil && !errors.Is(serr, fs.ErrNotExist) {
			err = serr
		}
		return fmt.Errorf("create directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"probe-*")
	if err != nil {
		return fmt.Errorf("directory is not writable: %w", err)
	}
	f.Close()
	os.Remove(f.Name())
	a.unit = allocUnit(dir)
	idx, err := a.scan()
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	a.idx = idx
	a.ready = true
	a.setBytes()
	a.evict(0, "")
	return nil
}

// scan builds the index from the day directories, removes temporary files
// older than staleTemp and empty day directories. Only regular files and
// real directories are considered; symbolic links are ignored.
func (a *Archive) scan() (index, error) {
	root := a.cfg.Dir
	entries, err := os.ReadDir(root)
	if err != nil {
		return index{}, err
	}
	cutoff := a.now().Add(-staleTemp)
	var idx index
	for _, e := range entries {
		switch {
		case e.Type().IsRegular() && strings.HasPrefix(e.Name(), tmpPrefix):
			a.removeStale(root, e, cutoff)
		case e.IsDir() && isDay(e.Name()):
			a.scanDay(&idx, e.Name(), cutoff)
		}
	}
	// Directory order is by name, so each day's sets are already sorted;
	// sort anyway for file systems that list otherwise.
	slices.SortFunc(idx.sets, func(p, q set) int { return p.compare(q.day, q.base) })
	return idx, nil
}

func (a *Archive) scanDay(idx *index, day string, cutoff time.Time) {
	dir := filepath.Join(a.cfg.Dir, day)
	entries, err := os.ReadDir(dir)
	if err != nil {
		a.warn("cannot scan day directory", "dir", dir, "error", err)
		return
	}
	if len(entries) == 0 {
		os.Remove(dir)
		return
	}
	byBase := map[string]int{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			a.removeStale(dir, e, cutoff)
			continue
		}
		base, kind, ok := parseName(e.Name())
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		i, seen := byBase[base]
		if !seen {
			i = len(idx.sets)
			byBase[base] = i
			idx.sets = append(idx.sets, set{day: day, base: base})
		}
		used := diskUsage(fi)
		idx.sets[i].size += used
		idx.sets[i].kinds |= kind
		idx.total += used
	}
}

func (a *Archive) removeStale(dir string, e fs.DirEntry, cutoff time.Time) {
	fi, err := e.Info()
	if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(cutoff) {
		return
	}
	p := filepath.Join(dir, e.Name())
	if err := os.Remove(p); err == nil {
		a.log.Info("removed stale temporary file", "path", p)
	}
}

// evict deletes the oldest sets until need more bytes fit in the budget.
// keepDay is a day directory about to be written to, which is not removed
// even if it becomes empty.
func (a *Archive) evict(need int64, keepDay string) {
	for a.idx.len() > 0 && a.idx.total+need > a.budget {
		s := a.idx.removeAt(0)
		a.deleteSet(s)
		a.statsMu.Lock()
		a.stats.Deleted++
		a.statsMu.Unlock()
		a.log.Debug("deleted oldest set for the disk budget", "set", s.key(), "bytes", s.size)
		if s.day != keepDay && !a.idx.hasDay(s.day) {
			// Fails, harmlessly, when the directory holds other files.
			os.Remove(filepath.Join(a.cfg.Dir, s.day))
		}
	}
	a.setBytes()
}

// deleteSet removes the files of s, the .json first so that a set is never
// left looking complete. A failure is reported; the set leaves the index
// anyway, so the tracked size undercounts until the next start.
func (a *Archive) deleteSet(s set) {
	dir := filepath.Join(a.cfg.Dir, s.day)
	var errs []error
	for _, k := range []struct {
		bit    uint8
		suffix string
	}{{kindJSON, suffixJSON}, {kindOverlay, suffixOverlay}, {kindJPG, suffixJPG}} {
		if s.kinds&k.bit == 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, s.base+k.suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.fail(a.station, "", fmt.Errorf("delete %s: %w", s.key(), err))
	}
}

// onDisk estimates the disk usage of a file of n bytes before it is
// written: n rounded up to the file system's allocation unit.
func (a *Archive) onDisk(n int) int64 {
	u := max(a.unit, 1)
	return (int64(n) + u - 1) / u * u
}

// store writes the files of one set atomically, within the budget. The
// budget counts disk usage (diskUsage): the set's usage is estimated
// from its sizes to make room before writing, then measured from the
// written files, and older sets are evicted if it came out larger.
func (a *Archive) store(r *inspection.Result, day, base string, files []file) {
	var need int64
	var kinds uint8
	for _, f := range files {
		need += a.onDisk(len(f.data))
		switch f.suffix {
		case suffixJPG:
			kinds |= kindJPG
		case suffixOverlay:
			kinds |= kindOverlay
		case suffixJSON:
			kinds |= kindJSON
		}
	}
	if need > a.budget {
		a.tooBig(r, base, need)
		return
	}
	s := set{day: day, base: base, size: need, kinds: kinds}
	if i, ok := a.idx.find(day, base); ok {
		// The same name again (a re-delivered result): replace the set.
		a.deleteSet(a.idx.removeAt(i))
	}
	a.evict(need, day)
	dir := filepath.Join(a.cfg.Dir, day)
	if err := a.dayDir(dir); err != nil {
		a.fail(r.Station, r.ID, err)
		return
	}
	var done []string
	for _, f := range files {
		final := filepath.Join(dir, base+f.suffix)
		if err := a.writeAtomic(dir, final, f.data); err != nil {
			for _, p := range done {
				os.Remove(p)
			}
			a.fail(r.Station, r.ID, fmt.Errorf("write %s: %w", a.rel(final), err))
			return
		}
		done = append(done, final)
	}
	if err := staging.SyncDir(dir); err != nil {
		// The files are complete; only their durability across a power
		// cut is in doubt. Report, keep the set.
		a.fail(r.Station, r.ID, fmt.Errorf("sync %s: %w", a.rel(dir), err))
	}
	if used, ok := measure(done); ok {
		s.size = used
	}
	a.idx.add(s)
	a.statsMu.Lock()
	a.stats.Written++
	a.statsMu.Unlock()
	if a.idx.total > a.budget {
		a.evict(0, day) // the set took more than estimated
	}
	a.setBytes()
}

// measure returns the disk usage of the written files paths; ok is false
// when one cannot be read (the estimate stands then).
func measure(paths []string) (used int64, ok bool) {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return 0, false
		}
		used += diskUsage(fi)
	}
	return used, true
}

// dayDir creates the day directory if needed and refuses one that is not a
// real directory (a symbolic link or a file).
func (a *Archive) dayDir(dir string) error {
	err := os.Mkdir(dir, 0o750)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create day directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("day directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("day directory %s is not a directory (%s)", a.rel(dir), fi.Mode().Type())
	}
	return nil
}

// writeAtomic writes data to final through a temporary file in dir: write,
// fsync, rename. On failure the temporary file is removed and final is
// untouched.
func (a *Archive) writeAtomic(dir, final string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	half := len(data) / 2
	if _, err = f.Write(data[:half]); err != nil {
		return err
	}
	if a.writeHook != nil {
		if err = a.writeHook(final); err != nil {
			return err
		}
	}
	if _, err = f.Write(data[half:]); err != nil {
		return err
	}
	if err = f.Chmod(0o640); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	// rename(2) replaces whatever is at final, a symbolic link included,
	// without following it.
	return os.Rename(tmp, final)
}

func (a *Archive) setBytes() {
	a.statsMu.Lock()
	a.stats.Bytes = a.idx.total
	a.statsMu.Unlock()
}

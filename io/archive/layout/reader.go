package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// ErrNotFound is returned (wrapped) by Reader.Load and Reader.OpenImage for
// a result or image the archive does not hold.
var ErrNotFound = errors.New("not in the archive")

// ErrBadID is returned (wrapped) for a result ID that does not match
// ResultIDPattern; nothing is looked up for it.
var ErrBadID = errors.New("not a valid result id")

// ResultIDPattern is what the Reader accepts as a result ID: the daemon's
// IDs (<station>-<run>-<seq>; station IDs are letters, digits, '_', '.'
// and '-'), 1 to 128 characters, starting with a letter or digit and
// without "..". Anything else (a slash, a NUL, "..", an empty ID) is
// refused before the file system is touched.
const ResultIDPattern = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`

var resultIDRE = regexp.MustCompile(ResultIDPattern)

// ValidID reports whether id matches ResultIDPattern.
func ValidID(id string) bool { return resultIDRE.MatchString(id) && !strings.Contains(id, "..") }

// maxRecordBytes is the largest .json file a Reader parses.
const maxRecordBytes = 1 << 20

// Image names the images of an archived set.
type Image string

// The images a set may have (see the package doc's Layout).
const (
	ImageFrame   Image = "frame"   // <base>.jpg, the original frame
	ImageOverlay Image = "overlay" // <base>.overlay.jpg, the heatmap overlay
)

func (i Image) suffix() (string, Kind, bool) {
	switch i {
	case ImageFrame:
		return SuffixFrame, KindFrame, true
	case ImageOverlay:
		return SuffixOverlay, KindOverlay, true
	}
	return "", 0, false
}

// Record is one archived result as a Reader finds it.
type Record struct {
	// Result is the archived JSON (Snapshot nil).
	Result inspection.Result
	// Frame and Overlay report which images the set has.
	Frame, Overlay bool
	// File is the .json file's path relative to the archive directory
	// (<day>/<base>.json), for messages.
	File string

	day, base string
}

// Filter selects archived results for Reader.List. Zero fields select
// everything.
type Filter struct {
	// Verdict is "OK", "NG" or "ERROR" (case-insensitive); "" any.
	Verdict string
	// Reason is the result's reason, exactly; "" any.
	Reason string
	// Product is the result's model product, exactly; "" any.
	Product string
	// Since and Until bound the verdict time (Since inclusive, Until
	// exclusive); zero: unbounded.
	Since, Until time.Time
	// MinScore and MaxScore bound the score (inclusive); nil: unbounded.
	MinScore, MaxScore *float64
	// Page (from 1) and PerPage (1 to MaxPerPage) select the page;
	// zero means 1 and DefaultPerPage.
	Page, PerPage int
}

// Paging limits of Reader.List.
const (
	DefaultPerPage = 50
	MaxPerPage     = 1000
)

// Listing is one page of Reader.List.
type Listing struct {
	Total   int      // results matching the filter, on every page
	Page    int      // this page, from 1
	PerPage int      // results per page
	Records []Record // newest first
	// Unreadable counts sets whose .json could not be read or parsed;
	// they are left out.
	Unreadable int
}

// Reader reads an archive directory for review: it lists the archived
// results, loads one, and opens its images. It only reads, only files and
// directories of the archive's own naming (day directories, set files),
// and never follows a symbolic link inside the directory: a day directory
// or a set file that is a link is ignored. No path given by a caller
// reaches the file system; result IDs are matched against the names the
// Reader listed itself. Parsed records are cached (a set's .json is never
// rewritten). Safe for concurrent use.
type Reader struct {
	dir string

	mu    sync.Mutex
	cache map[string]inspection.Result // by day/base
}

// NewReader returns a Reader of the archive directory dir (config
// archive.dir, resolved). It touches nothing until used; a missing
// directory reads as an empty archive.
func NewReader(dir string) *Reader {
	return &Reader{dir: dir, cache: map[string]inspection.Result{}}
}

// Dir returns the archive directory.
func (r *Reader) Dir() string { return r.dir }

// scanned is one set found by scan.
type scanned struct {
	day, base string
	verdict   string
	fileID    string
	t         time.Time // from the name (ms precision)
	kinds     Kind
}

// scan lists the complete sets (those with a .json) newest first, within
// [since, until) by day when those are set.
func (r *Reader) scan(since, until time.Time) ([]scanned, error) {
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", r.dir, err)
	}
	var days []string
	for _, e := range entries {
		// DirEntry types come from lstat: a symbolic link is not IsDir.
		if e.IsDir() && IsDay(e.Name()) {
			days = append(days, e.Name())
		}
	}
	slices.Sort(days)
	slices.Reverse(days)
	var out []scanned
	for _, day := range days {
		d0, _ := time.Parse(DayLayout, day)
		if !since.IsZero() && !d0.Add(24*time.Hour).After(since) || !until.IsZero() && !d0.Before(until) {
			continue
		}
		des, err := os.ReadDir(filepath.Join(r.dir, day))
		if err != nil {
			continue // vanished (evicted) or unreadable: nothing to show
		}
		byBase := map[string]int{}
		start := len(out)
		for _, e := range des {
			if !e.Type().IsRegular() {
				continue
			}
			base, kind, ok := ParseName(e.Name())
			if !ok {
				continue
			}
			i, seen := byBase[base]
			if !seen {
				verdict, fid := splitBase(base)
				t, err := time.Parse(DayLayout+" "+TimeLayout, day+" "+base[:10])
				if err != nil {
					continue
				}
				i = len(out)
				byBase[base] = i
				out = append(out, scanned{day: day, base: base, verdict: verdict, fileID: fid, t: t})
			}
			out[i].kinds |= kind
		}
		part := out[start:]
		part = slices.DeleteFunc(part, func(s scanned) bool { return s.kinds&KindJSON == 0 })
		slices.SortFunc(part, func(p, q scanned) int { return strings.Compare(q.base, p.base) })
		out = out[:start+len(part)]
	}
	return out, nil
}

// splitBase returns the verdict and the (sanitised) ID of a base name
// parseName accepted.
func splitBase(base string) (verdict, id string) {
	rest := base[11:]
	u := strings.IndexByte(rest, '_')
	return rest[:u], rest[u+1:]
}

// record loads (or takes from the cache) the .json of s.
func (r *Reader) record(s scanned) (Record, error) {
	key := s.day + "/" + s.base
	rec := Record{File: key + SuffixJSON, Frame: s.kinds&KindFrame != 0, Overlay: s.kinds&KindOverlay != 0, day: s.day, base: s.base}
	r.mu.Lock()
	res, ok := r.cache[key]
	r.mu.Unlock()
	if ok {
		rec.Result = res
		return rec, nil
	}
	f, err := r.openFile(s.day, s.base+SuffixJSON)
	if err != nil {
		return rec, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecordBytes+1))
	if err != nil {
		return rec, fmt.Errorf("archive %s: %w", rec.File, err)
	}
	if len(b) > maxRecordBytes {
		return rec, fmt.Errorf("archive %s: larger than %d bytes", rec.File, maxRecordBytes)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return rec, fmt.Errorf("archive %s: %w", rec.File, err)
	}
	r.mu.Lock()
	r.cache[key] = res
	r.mu.Unlock()
	rec.Result = res
	return rec, nil
}

// openFile opens <dir>/<day>/<name> for reading, refusing a day directory
// or a file that is a symbolic link or not of the expected type (checked
// with lstat, and the opened file checked to be the one lstat saw).
func (r *Reader) openFile(day, name string) (*os.File, error) {
	rel := day + "/" + name
	dfi, err := os.Lstat(filepath.Join(r.dir, day))
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", rel, notFound(err))
	}
	if !dfi.IsDir() {
		return nil, fmt.Errorf("archive %s: day directory is a %s, not a directory: %w", rel, typeName(dfi), ErrNotFound)
	}
	p := filepath.Join(r.dir, day, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", rel, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("archive %s: is a %s, not a regular file: %w", rel, typeName(fi), ErrNotFound)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", rel, notFound(err))
	}
	ofi, err := f.Stat()
	if err != nil || !os.SameFile(fi, ofi) {
		f.Close()
		return nil, fmt.Errorf("archive %s: replaced while opening: %w", rel, ErrNotFound)
	}
	return f, nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (%v)", ErrNotFound, err)
	}
	return err
}

func typeName(fi fs.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t&fs.ModeSymlink != 0:
		return "symbolic link"
	case t.IsDir():
		return "directory"
	case t == 0:
		return "regular file"
	default:
		return t.String()
	}
}

// matches reports whether rec passes the filter's record fields (the
// verdict and time were checked on the name).
func (f *Filter) matches(res *inspection.Result) bool {
	switch {
	case f.Reason != "" && res.Reason != f.Reason,
		f.Product != "" && res.Model.Product != f.Product,
		f.MinScore != nil && !(res.Score >= *f.MinScore),
		f.MaxScore != nil && !(res.Score <= *f.MaxScore),
		!f.Since.IsZero() && res.VerdictTime.Before(f.Since),
		!f.Until.IsZero() && !res.VerdictTime.Before(f.Until):
		return false
	}
	return true
}

// Check reports what is wrong with f's values, naming the field.
func (f *Filter) Check() error {
	switch v := strings.ToUpper(f.Verdict); v {
	case "", string(inspection.OK), string(inspection.NG), string(inspection.Error):
	default:
		return fmt.Errorf("verdict %q is not known; use OK, NG or ERROR", f.Verdict)
	}
	switch {
	case f.Page < 0:
		return fmt.Errorf("page %d must be at least 1", f.Page)
	case f.PerPage < 0 || f.PerPage > MaxPerPage:
		return fmt.Errorf("per_page %d must be from 1 to %d", f.PerPage, MaxPerPage)
	case !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until):
		return fmt.Errorf("since %s is not before until %s", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	case f.MinScore != nil && f.MaxScore != nil && *f.MinScore > *f.MaxScore:
		return fmt.Errorf("min_score %g is greater than max_score %g", *f.MinScore, *f.MaxScore)
	}
	return nil
}

// List returns the archived results that match f, newest first, one page
// of them. A missing archive directory is an empty archive; sets whose
// .json cannot be read are counted in Unreadable and left out.
func (r *Reader) List(f Filter) (Listing, error) {
	if err := f.Check(); err != nil {
		return Listing{}, err
	}
	if f.Page == 0 {
		f.Page = 1
	}
	if f.PerPage == 0 {
		f.PerPage = DefaultPerPage
	}
	sets, err := r.scan(f.Since, f.Until)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Page: f.Page, PerPage: f.PerPage}
	first := (f.Page - 1) * f.PerPage
	verdict := strings.ToUpper(f.Verdict)
	seen := make(map[string]bool, len(sets))
	for _, s := range sets {
		seen[s.day+"/"+s.base] = true
		if verdict != "" && s.verdict != verdict {
			continue
		}
		// The name's time is the verdict time truncated to the
		// millisecond: a cheap bound before the record is read.
		if !f.Until.IsZero() && !s.t.Before(f.Until) || !f.Since.IsZero() && s.t.Add(time.Millisecond).Before(f.Since) {
			continue
		}
		rec, err := r.record(s)
		if err != nil {
			l.Unreadable++
			continue
		}
		if !f.matches(&rec.Result) {
			continue
		}
		if l.Total >= first && len(l.Records) < f.PerPage {
			l.Records = append(l.Records, rec)
		}
		l.Total++
	}
	r.prune(seen, f.Since.IsZero() && f.Until.IsZero())
	return l, nil
}

// prune drops cached records of sets no longer on disk (evicted), when
// the scan covered every day.
func (r *Reader) prune(seen map[string]bool, full bool) {
	if !full {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.cache {
		if !seen[k] {
			delete(r.cache, k)
		}
	}
}

// Load returns the archived result whose Result.ID is id: ErrBadID for an
// id that does not match ResultIDPattern, ErrNotFound when the archive
// holds no such result.
func (r *Reader) Load(id string) (Record, error) {
	if !ValidID(id) {
		return Record{}, fmt.Errorf("result id %q: %w; want %s", truncate(id, 80), ErrBadID, ResultIDPattern)
	}
	fid := SanitizeID(id)
	sets, err := r.scan(time.Time{}, time.Time{})
	if err != nil {
		return Record{}, err
	}
	for _, s := range sets {
		if s.fileID != fid {
			continue
		}
		rec, err := r.record(s)
		if err != nil {
			return Record{}, err
		}
		if rec.Result.ID == id {
			return rec, nil
		}
	}
	return Record{}, fmt.Errorf("result %s: %w", id, ErrNotFound)
}

// OpenImage opens the image img of the result id (see Load) for reading,
// with its modification time. Only the archive's own file of that set is
// opened; it is ErrNotFound when the set has no such image (a result
// without a frame, or saved without heatmap_overlay) or img is not
// ImageFrame or ImageOverlay.
func (r *Reader) OpenImage(id string, img Image) (*os.File, time.Time, error) {
	suffix, kind, ok := img.suffix()
	if !ok {
		return nil, time.Time{}, fmt.Errorf("image %q: %w; use %q or %q", truncate(string(img), 40), ErrNotFound, ImageFrame, ImageOverlay)
	}
	rec, err := r.Load(id)
	if err != nil {
		return nil, time.Time{}, err
	}
	if (kind == KindFrame && !rec.Frame) || (kind == KindOverlay && !rec.Overlay) {
		return nil, time.Time{}, fmt.Errorf("result %s has no %s image: %w", id, img, ErrNotFound)
	}
	f, err := r.openFile(rec.day, rec.base+suffix)
	if err != nil {
		return nil, time.Time{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, time.Time{}, err
	}
	return f, fi.ModTime(), nil
}

// truncate shortens s for messages.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging"
)

// The save policies of config.Archive.Save.
const (
	SaveNG   = "ng"   // rejected parts (NG and ERROR verdicts)
	SaveAll  = "all"  // every part
	SaveNone = "none" // nothing
)

// reportEvery is the shortest interval between two logged errors (and
// events) of one kind; the ones in between are counted and summarised.
const reportEvery = time.Minute

// staleTemp is the age after which a ".tmp-*" file is a crash leftover.
const staleTemp = time.Hour

// Host is what the archive needs from the daemon.
type Host interface {
	// ReportEvent publishes a disk_budget or archive_error event; it must
	// not block.
	ReportEvent(inspection.Event)
}

// Options configures an Archive.
type Options struct {
	// Config is the [archive] section, validated by package config; Dir
	// must be resolved (non-empty).
	Config config.Archive
	// Logger is the daemon's logger; New tags it component=archive. Nil
	// discards logs.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Station is stamped on events raised without a result at hand (at
	// start-up); events about a result carry the result's station.
	Station string
}

// Stats are the archive's counters, for metrics.
type Stats struct {
	Written uint64 // sets written
	Deleted uint64 // sets deleted to stay within the budget
	Skipped uint64 // sets not written because they alone exceed the budget
	Errors  uint64 // failures: unusable directory, write, delete or encode errors
	// Bytes is the current size of the archive: the disk space the
	// managed sets' files take (allocated blocks, as du counts them; the
	// file sizes outside Linux).
	Bytes int64
	// LastError describes the most recent failure; empty when none.
	LastError string
}

// Archive is the archive sink. Its methods are safe for concurrent use;
// Deliver calls are serialised.
type Archive struct {
	cfg     config.Archive
	budget  int64
	log     *slog.Logger
	now     func() time.Time
	station string

	mu          sync.Mutex // serialises Start, Deliver and Close; guards the fields below
	host        Host       // set by Start
	started     bool
	closed      bool
	ready       bool  // directory created, probed and scanned
	unit        int64 // allocation unit of the directory's file system (allocUnit)
	idx         index
	rd          renderer
	errLimit    limiter
	budgetLimit limiter
	warnLimit   limiter
	// writeHook, when set (tests), is called halfway through writing each
	// file with the file's final path; an error aborts the write there.
	writeHook func(path string) error

	statsMu sync.Mutex
	stats   Stats
}

var (
	_ inspection.Sink      = (*Archive)(nil)
	_ inspection.ImageSink = (*Archive)(nil)
	_ prometheus.Collector = (*Archive)(nil)
)

// New checks the configuration and returns an archive that has not yet
// touched the disk; Start opens the directory. It starts no goroutine and
// holds nothing that needs Close.
func New(o Options) (*Archive, error) {
	c := o.Config
	switch c.Save {
	case SaveNG, SaveAll, SaveNone:
	default:
		return nil, fmt.Errorf("archive: save %q is not allowed; use %q, %q or %q", c.Save, SaveNG, SaveAll, SaveNone)
	}
	if c.Save != SaveNone {
		if c.Dir == "" {
			return nil, errors.New("archive: dir is empty")
		}
		if c.MaxSizeMB < 1 {
			return nil, fmt.Errorf("archive: max_size_mb %d must be at least 1", c.MaxSizeMB)
		}
		if c.JPEGQuality < 1 || c.JPEGQuality > 100 {
			return nil, fmt.Errorf("archive: jpeg_quality %d must be between 1 and 100", c.JPEGQuality)
		}
	}
	l := o.Logger
	if l == nil {
		l = logging.Discard()
	}
	a := &Archive{
		cfg:     c,
		budget:  int64(c.MaxSizeMB) << 20,
		log:     logging.Component(l, "archive"),
		now:     o.Now,
		station: o.Station,
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

// Start opens the archive: it creates and probes the directory, scans it
// and deletes the oldest sets beyond the budget. An unusable directory is
// not an error: the problem is logged, raised through host as a critical
// archive_error event and counted, and the archive tries again on every
// result it has to write. With save = "none" the directory is not
// touched. Start starts no goroutine; it fails only for a nil host, a
// cancelled ctx, or a second call or one after Close.
func (a *Archive) Start(ctx context.Context, host Host) error {
	if host == nil {
		return errors.New("archive: start: host is nil")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("archive: start: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return errors.New("archive: start: archive is closed")
	case a.started:
		return errors.New("archive: start: already started")
	}
	a.host, a.started = host, true
	if a.cfg.Save == SaveNone {
		return nil
	}
	if err := a.open(); err != nil {
		a.fail(a.station, "", err)
	} else {
		a.log.Info("archive opened", "dir", a.cfg.Dir, "sets", a.idx.len(), "bytes", a.idx.total, "budget_bytes", a.budget)
	}
	return nil
}

// Name returns "archive".
func (a *Archive) Name() string { return "archive" }

// WantsImage reports whether r will be archived: every result for
// save = "all", rejected ones (NG, ERROR) for "ng", none for "none".
func (a *Archive) WantsImage(r *inspection.Result) bool { return a.wants(r) }

func (a *Archive) wants(r *inspection.Result) bool {
	switch a.cfg.Save {
	case SaveAll:
		return true
	case SaveNG:
		return r.Verdict.Rejects()
	default:
		return false
	}
}

// Deliver archives r when the save policy selects it: the frame, the
// overlay (both when r carries a Snapshot) and the JSON sidecar (always).
// Disk problems are reported through events, logs and Stats, not returned;
// the error is non-nil only for a cancelled ctx or an archive that is not
// started or closed.
func (a *Archive) Deliver(ctx context.Context, r *inspection.Result) error {
	if r == nil || !a.wants(r) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("archive %s: %w", r.ID, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return fmt.Errorf("archive %s: archive is closed", r.ID)
	case !a.started:
		return fmt.Errorf("archive %s: archive is not started", r.ID)
	}
	if !a.ready {
		if err := a.open(); err != nil {
			a.fail(r.Station, r.ID, err)
			return nil
		}
		a.log.Info("archive directory usable again", "dir", a.cfg.Dir, "sets", a.idx.len(), "bytes", a.idx.total)
	}
	day, base := setName(r, a.now())
	files, err := a.encode(r)
	if err != nil {
		a.fail(r.Station, r.ID, fmt.Errorf("encode %s: %w", base, err))
		return nil
	}
	a.store(r, day, base, files)
	return nil
}

// Close stops the archive: it waits for a Deliver in progress (every write
// is complete when Deliver returns, so nothing else is pending) and later
// Deliver calls fail. There is no goroutine to stop and no file held open.
// A write blocked on a frozen or dead disk is waited for only until ctx
// ends: Close then returns an error naming the directory, and the archive
// closes as soon as that write returns. Safe without Start and safe twice.
func (a *Archive) Close(ctx context.Context) error {
	locked := make(chan struct{})
	go func() {
		a.mu.Lock()
		close(locked)
	}()
	finish := func() {
		a.closed = true
		a.rd = renderer{}
		a.mu.Unlock()
	}
	select {
	case <-locked:
		finish()
		return nil
	case <-ctx.Done():
		go func() {
			<-locked
			finish()
		}()
		return fmt.Errorf("archive: close: a write to %s is still blocked: %w", a.cfg.Dir, ctx.Err())
	}
}

// Stats returns a snapshot of the counters.
func (a *Archive) Stats() Stats {
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	return a.stats
}

// file is one encoded file of a set.
type file struct {
	suffix string
	data   []byte
}

// encode renders the files of r's set in memory, the .json last. The
// returned slices alias the renderer's buffers until the next call.
func (a *Archive) encode(r *inspection.Result) ([]file, error) {
	var files []file
	if s := r.Snapshot; s != nil && s.Frame != nil {
		img, err := a.rd.frame(s.Frame, a.cfg.JPEGQuality)
		if err != nil {
			return nil, fmt.Errorf("frame: %w", err)
		}
		files = append(files, file{suffixJPG, img})
		if a.cfg.HeatmapOverlay && s.Heatmap != nil {
			ov, err := a.rd.overlay(s, r.Regions, heatScale(r), a.cfg.JPEGQuality)
			if err != nil {
				// The frame and the result are still worth keeping.
				a.warn("overlay skipped", "result_id", r.ID, "error", err)
			} else {
				files = append(files, file{suffixOverlay, ov})
			}
		}
	}
	js, err := marshalResult(r)
	if err != nil {
		return nil, err
	}
	return append(files, file{suffixJSON, js}), nil
}

// marshalResult returns r as indented JSON. JSON has no NaN or infinity, so
// non-finite numbers (a nan_score ERROR) are written as 0 rather than
// losing the sidecar.
func marshalResult(r *inspection.Result) ([]byte, error) {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		c := *r
		c.Score, c.Threshold, c.PixelThreshold = finite(c.Score), finite(c.Threshold), finite(c.PixelThreshold)
		c.Alignment = inspection.Alignment{Tx: finite(c.Alignment.Tx), Ty: finite(c.Alignment.Ty), ThetaDeg: finite(c.Alignment.ThetaDeg)}
		l := &c.Latency
		l.CaptureWaitMs, l.AlignMs, l.LocalizeMs, l.DecideMs, l.TotalMs = finite(l.CaptureWaitMs), finite(l.AlignMs), finite(l.LocalizeMs), finite(l.DecideMs), finite(l.TotalMs)
		if c.Regions != nil {
			c.Regions = append([]inspection.Region(nil), c.Regions...)
			for i := range c.Regions {
				c.Regions[i].Peak = finite(c.Regions[i].Peak)
			}
		}
		if js, err = json.MarshalIndent(&c, "", "  "); err != nil {
			return nil, fmt.Errorf("json: %w", err)
		}
	}
	return append(js, '\n'), nil
}

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// heatScale is the heatmap value shown at the top of the colour map: the
// larger of the image threshold and the score, so that one colour means one
// value across a station's overlays and parts below the threshold never look
// saturated.
func heatScale(r *inspection.Result) float64 {
	hi := math.Max(r.Threshold, r.Score)
	if !(hi > 0) || hi > 1 {
		hi = 1
	}
	return hi
}

// fail counts err and, at most once per reportEvery, logs it and raises a
// critical archive_error event.
func (a *Archive) fail(station, resultID string, err error) {
	msg := err.Error()
	if errors.Is(err, syscall.ENOSPC) {
		msg = "disk full: " + msg
	}
	a.statsMu.Lock()
	a.stats.Errors++
	a.stats.LastError = msg
	a.statsMu.Unlock()
	now := a.now()
	ok, suppressed := a.errLimit.allow(now)
	if !ok {
		return
	}
	a.log.Error("archive failure; inspection continues", "dir", a.cfg.Dir, "result_id", resultID, "error", msg, "suppressed", suppressed)
	a.emit(inspection.Event{
		Time: now, Station: station, Severity: inspection.Critical, Kind: inspection.EventArchiveError,
		Message: "archive: " + msg,
		Fields:  eventFields(a.cfg.Dir, resultID, suppressed),
	})
}

// tooBig counts and reports a set larger than the whole budget.
func (a *Archive) tooBig(r *inspection.Result, base string, size int64) {
	a.statsMu.Lock()
	a.stats.Skipped++
	a.statsMu.Unlock()
	now := a.now()
	ok, suppressed := a.budgetLimit.allow(now)
	if !ok {
		return
	}
	msg := fmt.Sprintf("archive: %s not archived: its %d bytes exceed the whole budget of %d bytes (max_size_mb = %d)", base, size, a.budget, a.cfg.MaxSizeMB)
	a.log.Warn(msg, "result_id", r.ID, "suppressed", suppressed)
	a.emit(inspection.Event{
		Time: now, Station: r.Station, Severity: inspection.Warning, Kind: inspection.EventDiskBudget,
		Message: msg,
		Fields:  eventFields(a.cfg.Dir, r.ID, suppressed),
	})
}

// warn logs a non-fatal problem at most once per reportEvery.
func (a *Archive) warn(msg string, args ...any) {
	if ok, suppressed := a.warnLimit.allow(a.now()); ok {
		a.log.Warn(msg, append(args, "suppressed", suppressed)...)
	}
}

func eventFields(dir, resultID string, suppressed int) map[string]string {
	f := map[string]string{"dir": dir}
	if resultID != "" {
		f["result_id"] = resultID
	}
	if suppressed > 0 {
		f["suppressed"] = fmt.Sprint(suppressed)
	}
	return f
}

// emit hands e to the host; it is called with a.mu held, after Start.
func (a *Archive) emit(e inspection.Event) {
	if a.host != nil {
		a.host.ReportEvent(e)
	}
}

// limiter lets one report through per interval and counts the others.
type limiter struct {
	next       time.Time
	suppressed int
}

// allow reports whether a report may go out at now and, if so, how many
// were suppressed since the last one.
func (l *limiter) allow(now time.Time) (bool, int) {
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed = 0
	l.next = now.Add(reportEvery)
	return true, n
}

// rel returns p relative to the archive directory, for messages.
func (a *Archive) rel(p string) string {
	if r, err := filepath.Rel(a.cfg.Dir, p); err == nil {
		return r
	}
	return p
}

package archive

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging/logtest"
	"github.com/inspectd/inspectd/models/preprocess"
)

// clock is a settable fake time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []inspection.Event
}

// ReportEvent makes the recorder the archive's Host.
func (r *recorder) ReportEvent(e inspection.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) all() []inspection.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]inspection.Event(nil), r.events...)
}

// env is one archive under test.
type env struct {
	a     *Archive
	dir   string
	clk   *clock
	rec   *recorder
	logs  *logtest.Buffer
	start time.Time
}

var testStart = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func testConfig(dir string) config.Archive {
	return config.Archive{Save: SaveAll, Dir: dir, MaxSizeMB: 64, HeatmapOverlay: true, JPEGQuality: 90}
}

// newEnv opens an archive in a fresh directory; edit may change the
// configuration.
func newEnv(t testing.TB, edit func(*config.Archive)) *env {
	t.Helper()
	e := &env{dir: filepath.Join(t.TempDir(), "archive"), clk: &clock{t: testStart}, rec: &recorder{}, logs: &logtest.Buffer{}, start: testStart}
	cfg := testConfig(e.dir)
	if edit != nil {
		edit(&cfg)
	}
	e.dir = cfg.Dir
	a, err := New(Options{
		Config:  cfg,
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:     e.clk.Now,
		Station: "st1",
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := a.Start(t.Context(), e.rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	e.a = a
	t.Cleanup(func() { a.Close(t.Context()) })
	return e
}

// result returns a plausible result n (times advance by 1 s per n).
func result(n int, v inspection.Verdict) *inspection.Result {
	vt := testStart.Add(time.Duration(n) * time.Second).Add(123 * time.Millisecond)
	reason := inspection.ReasonPass
	switch v {
	case inspection.NG:
		reason = inspection.ReasonScore
	case inspection.Error:
		reason = inspection.ReasonCameraTimeout
	}
	return &inspection.Result{
		ID:     fmt.Sprintf("st1-20260501T120000-%06d", n),
		PartID: fmt.Sprintf("P-%d", n), Station: "st1", Seq: uint64(n), FrameSeq: uint64(n), Trigger: "software",
		Verdict: v, Reason: reason,
		TriggerTime: vt.Add(-40 * time.Millisecond), CaptureTime: vt.Add(-30 * time.Millisecond), VerdictTime: vt,
		Latency: inspection.Latency{CaptureWaitMs: 10, AlignMs: 5.5, LocalizeMs: 20.25, DecideMs: 0.5, TotalMs: 40},
		Score:   0.7, Threshold: 0.5, PixelThreshold: 0.4,
		Regions:   []inspection.Region{{X: 200, Y: 40, Width: 30, Height: 20, Area: 400, Peak: 0.7}},
		Alignment: inspection.Alignment{Tx: 0.01, Ty: -0.02, ThetaDeg: 1.5},
		Model:     inspection.Model{Product: "widget", BundleHash: "abc123"},
	}
}

// greyFrame returns a uniform BGR frame.
func greyFrame(w, h int, v uint8) *preprocess.BGR {
	f := preprocess.NewBGR(image.Rect(0, 0, w, h))
	for i := range f.Pix {
		f.Pix[i] = v
	}
	return f
}

// snapshot returns a 320×240 grey frame with a 240×180 ROI and a 60×45
// zero heatmap.
func snapshot() *inspection.Snapshot {
	return &inspection.Snapshot{
		Frame:   greyFrame(320, 240, 128),
		ROI:     image.Rect(40, 30, 280, 210),
		Heatmap: preprocess.NewHeatmap(60, 45),
	}
}

// files lists the regular files under dir, relative, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func decodeJPEG(t testing.TB, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return img
}

// setPath returns the path of r's set file with the given suffix.
func setPath(e *env, r *inspection.Result, suffix string) string {
	day, base := setName(r, e.clk.Now())
	return filepath.Join(e.dir, day, base+suffix)
}

func eventKinds(evs []inspection.Event) []string {
	var k []string
	for _, e := range evs {
		k = append(k, string(e.Severity)+"/"+e.Kind)
	}
	return k
}

// du returns the disk usage the archive counts (diskUsage) of the files
// rel under dir (dir "" for absolute paths).
func du(t testing.TB, dir string, rel ...string) int64 {
	t.Helper()
	var n int64
	for _, r := range rel {
		fi, err := os.Lstat(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		n += diskUsage(fi)
	}
	return n
}

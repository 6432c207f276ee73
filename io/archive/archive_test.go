package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		edit func(*config.Archive)
		want string // error text; empty: success
	}{
		{"valid", func(c *config.Archive) {}, ""},
		{"unknown save", func(c *config.Archive) { c.Save = "NG" }, `archive: save "NG" is not allowed; use "ng", "all" or "none"`},
		{"empty dir", func(c *config.Archive) { c.Dir = "" }, "archive: dir is empty"},
		{"zero budget", func(c *config.Archive) { c.MaxSizeMB = 0 }, "archive: max_size_mb 0 must be at least 1"},
		{"quality 0", func(c *config.Archive) { c.JPEGQuality = 0 }, "archive: jpeg_quality 0 must be between 1 and 100"},
		{"quality 101", func(c *config.Archive) { c.JPEGQuality = 101 }, "archive: jpeg_quality 101 must be between 1 and 100"},
		{"none ignores the rest", func(c *config.Archive) { *c = config.Archive{Save: SaveNone} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(filepath.Join(dir, tc.name))
			tc.edit(&c)
			a, err := New(Options{Config: c})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if a.Name() != "archive" {
					t.Errorf("Name = %q", a.Name())
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("New error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSavePolicy(t *testing.T) {
	tests := []struct {
		save    string
		verdict inspection.Verdict
		want    bool
	}{
		{SaveAll, inspection.OK, true},
		{SaveAll, inspection.NG, true},
		{SaveAll, inspection.Error, true},
		{SaveNG, inspection.OK, false},
		{SaveNG, inspection.NG, true},
		{SaveNG, inspection.Error, true},
		{SaveNone, inspection.OK, false},
		{SaveNone, inspection.NG, false},
		{SaveNone, inspection.Error, false},
	}
	for _, tc := range tests {
		t.Run(tc.save+"/"+string(tc.verdict), func(t *testing.T) {
			e := newEnv(t, func(c *config.Archive) { c.Save = tc.save })
			r := result(1, tc.verdict)
			if got := e.a.WantsImage(r); got != tc.want {
				t.Errorf("WantsImage = %v, want %v", got, tc.want)
			}
			r.Snapshot = snapshot()
			if err := e.a.Deliver(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			n := len(files(t, e.dir))
			if wantN := map[bool]int{true: 3, false: 0}[tc.want]; n != wantN {
				t.Errorf("%d files written, want %d: %v", n, wantN, files(t, e.dir))
			}
			if _, err := os.Stat(e.dir); tc.save == SaveNone && err == nil {
				t.Errorf("save = none created the directory")
			}
		})
	}
}

func TestDeliverWritesSet(t *testing.T) {
	e := newEnv(t, nil)
	r := result(7, inspection.NG)
	r.Snapshot = snapshot()
	if err := e.a.Deliver(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"2026-05-01/120007.123_NG_st1-20260501T120000-000007.jpg",
		"2026-05-01/120007.123_NG_st1-20260501T120000-000007.json",
		"2026-05-01/120007.123_NG_st1-20260501T120000-000007.overlay.jpg",
	}
	if got := files(t, e.dir); !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	for _, suffix := range []string{suffixJPG, suffixOverlay} {
		img := decodeJPEG(t, setPath(e, r, suffix))
		if img.Bounds() != image.Rect(0, 0, 320, 240) {
			t.Errorf("%s bounds %v", suffix, img.Bounds())
		}
	}
	fi, err := os.Stat(setPath(e, r, suffixJSON))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	b, err := os.ReadFile(setPath(e, r, suffixJSON))
	if err != nil {
		t.Fatal(err)
	}
	var back inspection.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want0 := *r
	want0.Snapshot = nil
	if !reflect.DeepEqual(back, want0) {
		t.Errorf("JSON round trip:\n got %+v\nwant %+v", back, want0)
	}
	if !strings.Contains(string(b), "\n  \"result_id\"") {
		t.Errorf("JSON is not indented:\n%s", b)
	}
	s := e.a.Stats()
	total := du(t, e.dir, want...)
	if s.Written != 1 || s.Errors != 0 || s.Bytes != total || s.LastError != "" {
		t.Errorf("Stats = %+v, want 1 written, %d bytes", s, total)
	}
	if ev := e.rec.all(); len(ev) != 0 {
		t.Errorf("events: %v", ev)
	}
}

func TestErrorWithoutSnapshot(t *testing.T) {
	e := newEnv(t, func(c *config.Archive) { c.Save = SaveNG })
	r := result(3, inspection.Error)
	r.Detail = "no frame within 500ms"
	r.Regions = nil
	r.FrameSeq = 0
	r.CaptureTime = time.Time{}
	r.Score = 0
	if !e.a.WantsImage(r) {
		t.Fatal("WantsImage(ERROR) = false")
	}
	if err := e.a.Deliver(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	want := []string{"2026-05-01/120003.123_ERROR_st1-20260501T120000-000003.json"}
	if got := files(t, e.dir); !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	b, _ := os.ReadFile(filepath.Join(e.dir, want[0]))
	var back inspection.Result
	if err := json.Unmarshal(b, &back); err != nil || back.Reason != inspection.ReasonCameraTimeout || back.Detail != r.Detail {
		t.Errorf("JSON %s: %v", b, err)
	}
	if strings.Contains(string(b), "capture_time") {
		t.Errorf("zero capture_time serialised: %s", b)
	}
}

func TestNaNScoreStillWritesJSON(t *testing.T) {
	e := newEnv(t, nil)
	r := result(4, inspection.Error)
	r.Reason = inspection.ReasonNaN
	r.Score = math.NaN()
	r.Regions[0].Peak = math.Inf(1)
	if err := e.a.Deliver(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(setPath(e, r, suffixJSON))
	if err != nil {
		t.Fatal(err)
	}
	var back inspection.Result
	if err := json.Unmarshal(b, &back); err != nil || back.Score != 0 || back.Reason != inspection.ReasonNaN || back.Regions[0].Peak != 0 {
		t.Errorf("JSON %s: %v", b, err)
	}
	if !math.IsNaN(r.Score) {
		t.Error("the result was modified")
	}
}

func TestHostileIDs(t *testing.T) {
	long := strings.Repeat("x", 300)
	ids := []string{
		"../../etc/passwd", "a/b", "/abs", "..", ".", "  spaces  in id ", "ünïcødé-部品", "",
		long, long + "y", "x.overlay", "x\x00y", "normal-id_1", "a\\b", "CON", "-rf",
	}
	e := newEnv(t, nil)
	seen := map[string]string{}
	for i, id := range ids {
		r := result(i, inspection.NG)
		r.ID = id
		r.PartID = "../" + id + "/../部品 id"
		r.Snapshot = snapshot()
		r.Regions = append(r.Regions, inspection.Region{X: -1 << 40, Y: 1 << 40, Width: 5, Height: 5}, inspection.Region{X: 10, Y: 10, Width: -3, Height: 1 << 40})
		if err := e.a.Deliver(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[sanitizeID(id)]; dup {
			t.Errorf("IDs %q and %q share the name %q", prev, id, sanitizeID(id))
		}
		seen[sanitizeID(id)] = id
		b, err := os.ReadFile(setPath(e, r, suffixJSON))
		if err != nil {
			t.Fatalf("ID %q: %v", id, err)
		}
		var back inspection.Result
		if err := json.Unmarshal(b, &back); err != nil || back.ID != id || back.PartID != r.PartID {
			t.Errorf("ID %q: JSON round trip %q %q, %v", id, back.ID, back.PartID, err)
		}
	}
	// Everything lies directly in the one day directory, and every name
	// parses as the archive's own.
	got := files(t, e.dir)
	if len(got) != 3*len(ids) {
		t.Errorf("%d files, want %d", len(got), 3*len(ids))
	}
	for _, f := range got {
		day, name := filepath.Split(f)
		if day != "2026-05-01/" {
			t.Errorf("file %q outside the day directory", f)
		}
		if _, _, ok := parseName(name); !ok {
			t.Errorf("name %q does not parse", name)
		}
		if len(name) > 120 {
			t.Errorf("name %q is too long", name)
		}
	}
	if fs := files(t, filepath.Dir(e.dir)); len(fs) != len(got) {
		t.Errorf("files outside the archive: %v", fs)
	}
	if s := e.a.Stats(); s.Errors != 0 || s.Written != uint64(len(ids)) {
		t.Errorf("Stats = %+v", s)
	}
}

func TestWriteFailureIsAtomic(t *testing.T) {
	enospc := &os.PathError{Op: "write", Path: "/x/.tmp-1", Err: syscall.ENOSPC}
	tests := []struct {
		name    string
		failOn  string
		err     error
		message string // the event message must contain it
	}{
		{"frame disk full", suffixJPG, enospc, "archive: disk full: write 2026-05-01/120001.123_NG_st1-20260501T120000-000001.jpg: write /x/.tmp-1: no space left on device"},
		{"overlay io error", suffixOverlay, errors.New("input/output error"), "archive: write 2026-05-01/120001.123_NG_st1-20260501T120000-000001.overlay.jpg: input/output error"},
		{"json disk full", suffixJSON, enospc, "archive: disk full: write 2026-05-01/120001.123_NG_st1-20260501T120000-000001.json: write /x/.tmp-1: no space left on device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			fail := true
			e.a.writeHook = func(p string) error {
				if fail && strings.HasSuffix(p, tc.failOn) && (tc.failOn != suffixJPG || !strings.HasSuffix(p, suffixOverlay)) {
					return tc.err
				}
				return nil
			}
			r := result(1, inspection.NG)
			r.Snapshot = snapshot()
			if err := e.a.Deliver(t.Context(), r); err != nil {
				t.Fatalf("Deliver returned %v; disk errors are reported, not returned", err)
			}
			if got := files(t, e.dir); len(got) != 0 {
				t.Errorf("files left after a failed write: %v", got)
			}
			ev := e.rec.all()
			if len(ev) != 1 || ev[0].Kind != inspection.EventArchiveError || ev[0].Severity != inspection.Critical || ev[0].Message != tc.message {
				t.Fatalf("events = %+v, want one critical archive_error %q", ev, tc.message)
			}
			if ev[0].Station != "st1" || ev[0].Fields["result_id"] != r.ID {
				t.Errorf("event fields %+v", ev[0])
			}
			s := e.a.Stats()
			if s.Errors != 1 || s.Written != 0 || s.Bytes != 0 || "archive: "+s.LastError != tc.message {
				t.Errorf("Stats = %+v", s)
			}
			if !strings.Contains(e.logs.String(), "level=ERROR") || !strings.Contains(e.logs.String(), "component=archive") {
				t.Errorf("log:\n%s", e.logs.String())
			}
			// The next result goes through.
			fail = false
			r2 := result(2, inspection.NG)
			r2.Snapshot = snapshot()
			if err := e.a.Deliver(t.Context(), r2); err != nil {
				t.Fatal(err)
			}
			if got := files(t, e.dir); len(got) != 3 {
				t.Errorf("files after recovery: %v", got)
			}
			if s := e.a.Stats(); s.Written != 1 {
				t.Errorf("Stats = %+v", s)
			}
		})
	}
}

func TestErrorReportsAreRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	e.a.writeHook = func(string) error { return &os.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC} }
	for i := range 5 {
		e.a.Deliver(t.Context(), result(i, inspection.NG))
		e.clk.Add(10 * time.Second)
	}
	if ev := e.rec.all(); len(ev) != 1 {
		t.Fatalf("%d events in 50 s, want 1", len(ev))
	}
	if n := strings.Count(e.logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error log lines in 50 s, want 1:\n%s", n, e.logs.String())
	}
	e.clk.Add(15 * time.Second)
	e.a.Deliver(t.Context(), result(9, inspection.NG))
	ev := e.rec.all()
	if len(ev) != 2 || ev[1].Fields["suppressed"] != "4" {
		t.Fatalf("events = %+v, want a second one with suppressed=4", ev)
	}
	if s := e.a.Stats(); s.Errors != 6 || !strings.HasPrefix(s.LastError, "disk full: ") {
		t.Errorf("Stats = %+v", s)
	}
}

func TestUnusableDirectory(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		fix    func(t *testing.T, dir string)
		want   string // in the event message
		root   bool   // needs a non-root user
	}{
		{
			name:   "file in the way",
			break_: func(t *testing.T, dir string) { must(t, os.WriteFile(dir, []byte("x"), 0o600)) },
			fix:    func(t *testing.T, dir string) { must(t, os.Remove(dir)) },
			want:   "archive: create directory: mkdir " + "%s: not a directory",
		},
		{
			name: "symlink loop",
			break_: func(t *testing.T, dir string) {
				must(t, os.Symlink(dir+".b", dir))
				must(t, os.Symlink(dir, dir+".b"))
			},
			fix:  func(t *testing.T, dir string) { must(t, os.Remove(dir)) },
			want: "too many levels of symbolic links",
		},
		{
			name: "unwritable",
			break_: func(t *testing.T, dir string) {
				must(t, os.Mkdir(dir, 0o750))
				must(t, os.Chmod(dir, 0o500))
			},
			fix:  func(t *testing.T, dir string) { must(t, os.Chmod(dir, 0o750)) },
			want: "archive: directory is not writable: open %s/.tmp-probe-",
			root: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() == 0 {
				t.Skip("root can write to any directory")
			}
			dir := filepath.Join(t.TempDir(), "archive")
			tc.break_(t, dir)
			e := newEnv(t, func(c *config.Archive) { c.Dir = dir })
			want := strings.ReplaceAll(tc.want, "%s", dir)
			ev := e.rec.all()
			if len(ev) != 1 || ev[0].Kind != inspection.EventArchiveError || ev[0].Severity != inspection.Critical || !strings.Contains(ev[0].Message, want) {
				t.Fatalf("events = %+v, want one critical archive_error containing %q", ev, want)
			}
			if ev[0].Station != "st1" {
				t.Errorf("station %q", ev[0].Station)
			}
			// Inspection continues; the archive keeps trying.
			if err := e.a.Deliver(t.Context(), result(1, inspection.NG)); err != nil {
				t.Fatal(err)
			}
			if s := e.a.Stats(); s.Errors != 2 || s.Written != 0 || !strings.Contains("archive: "+s.LastError, want) {
				t.Errorf("Stats = %+v", s)
			}
			tc.fix(t, dir)
			r := result(2, inspection.NG)
			r.Snapshot = snapshot()
			if err := e.a.Deliver(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			if got := files(t, dir); len(got) != 3 {
				t.Errorf("files after the fix: %v", got)
			}
			if s := e.a.Stats(); s.Written != 1 {
				t.Errorf("Stats = %+v", s)
			}
			if !strings.Contains(e.logs.String(), "archive directory usable again") {
				t.Errorf("no recovery log:\n%s", e.logs.String())
			}
		})
	}
}

func TestSymlinks(t *testing.T) {
	t.Run("at the final name", func(t *testing.T) {
		e := newEnv(t, nil)
		outside := filepath.Join(t.TempDir(), "precious")
		must(t, os.WriteFile(outside, []byte("keep me"), 0o600))
		r := result(1, inspection.NG)
		must(t, os.MkdirAll(filepath.Dir(setPath(e, r, suffixJSON)), 0o750))
		must(t, os.Symlink(outside, setPath(e, r, suffixJSON)))
		if err := e.a.Deliver(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(outside); string(b) != "keep me" {
			t.Errorf("the link target was written: %q", b)
		}
		fi, err := os.Lstat(setPath(e, r, suffixJSON))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("final name: %v, %v", fi, err)
		}
	})
	t.Run("day directory", func(t *testing.T) {
		e := newEnv(t, nil)
		outside := t.TempDir()
		must(t, os.Symlink(outside, filepath.Join(e.dir, "2026-05-01")))
		if err := e.a.Deliver(t.Context(), result(1, inspection.NG)); err != nil {
			t.Fatal(err)
		}
		if fs := files(t, outside); len(fs) != 0 {
			t.Errorf("written through the link: %v", fs)
		}
		want := "archive: day directory 2026-05-01 is not a directory (L---------)"
		if ev := e.rec.all(); len(ev) != 1 || ev[0].Message != want {
			t.Errorf("events = %+v, want %q", ev, want)
		}
	})
}

func TestBudget(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	write := func(rel string, size int) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o750))
		must(t, os.WriteFile(p, make([]byte, size), 0o640))
	}
	// Older sets of two days, 2000 bytes each, and things the archive did
	// not create.
	write("2026-04-01/100000.000_NG_a1.jpg", 1000)
	write("2026-04-01/100000.000_NG_a1.json", 1000)
	write("2026-04-01/110000.000_OK_a2.json", 2000)
	write("2026-04-01/notes.txt", 10)
	write("2026-04-01/100000.000_NG_a1.png", 10)
	write("2026-04-02/090000.000_ERROR_b1.json", 2000)
	write("2026-04-02/095959.999_NG_b2.jpg", 500)
	write("2026-04-02/095959.999_NG_b2.overlay.jpg", 500)
	write("2026-04-02/095959.999_NG_b2.json", 1000)
	write("2026-04-02/.tmp-crashed", 5000)
	write("2026-04-02/.tmp-inflight", 5000)
	write("notes.txt", 10)
	write("foreign/2026-04-01/100000.000_NG_x.json", 10)
	write("foreign/100000.000_NG_y.json", 10)
	write("2026-13-01/100000.000_NG_z.json", 10)
	write("100000.000_NG_top.json", 10)
	outside := filepath.Join(t.TempDir(), "target.json")
	must(t, os.WriteFile(outside, []byte("x"), 0o600))
	must(t, os.Symlink(outside, filepath.Join(root, "2026-04-02/080000.000_NG_link.json")))
	old := testStart.Add(-2 * time.Hour)
	must(t, os.Chtimes(filepath.Join(root, "2026-04-02/.tmp-crashed"), old, old))
	recent := testStart.Add(-10 * time.Minute)
	must(t, os.Chtimes(filepath.Join(root, "2026-04-02/.tmp-inflight"), recent, recent))

	// The sets' disk usage (8000 bytes of contents).
	a1 := du(t, root, "2026-04-01/100000.000_NG_a1.jpg", "2026-04-01/100000.000_NG_a1.json")
	a2 := du(t, root, "2026-04-01/110000.000_OK_a2.json")
	b1 := du(t, root, "2026-04-02/090000.000_ERROR_b1.json")
	b2 := du(t, root, "2026-04-02/095959.999_NG_b2.jpg", "2026-04-02/095959.999_NG_b2.overlay.jpg", "2026-04-02/095959.999_NG_b2.json")

	e := newEnv(t, func(c *config.Archive) { c.Dir = root })
	if s := e.a.Stats(); s.Bytes != a1+a2+b1+b2 || s.Deleted != 0 {
		t.Fatalf("after the scan: %+v, want %d bytes", s, a1+a2+b1+b2)
	}
	if _, err := os.Stat(filepath.Join(root, "2026-04-02/.tmp-crashed")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file kept: %v", err)
	}

	deliver := func(n int) int64 {
		t.Helper()
		r := result(n, inspection.NG)
		if err := e.a.Deliver(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		return du(t, "", setPath(e, r, suffixJSON))
	}
	sets := func() []string {
		var out []string
		for _, s := range e.a.idx.sets {
			out = append(out, s.key())
		}
		return out
	}

	// Exactly full: the oldest set makes room.
	e.a.mu.Lock()
	e.a.budget = a1 + a2 + b1 + b2
	e.a.mu.Unlock()
	s1 := deliver(1)
	want := []string{"2026-04-01/110000.000_OK_a2", "2026-04-02/090000.000_ERROR_b1", "2026-04-02/095959.999_NG_b2", "2026-05-01/120001.123_NG_st1-20260501T120000-000001"}
	if got := sets(); !slices.Equal(got, want) {
		t.Fatalf("sets = %v, want %v", got, want)
	}
	// Two more must go for the next one.
	e.a.mu.Lock()
	e.a.budget = b2 + 2*s1 + 10
	e.a.mu.Unlock()
	deliver(2)
	want = []string{"2026-04-02/095959.999_NG_b2", "2026-05-01/120001.123_NG_st1-20260501T120000-000001", "2026-05-01/120002.123_NG_st1-20260501T120000-000002"}
	if got := sets(); !slices.Equal(got, want) {
		t.Fatalf("sets = %v, want %v", got, want)
	}
	// The last old set, a whole set with its images, and its day.
	e.a.mu.Lock()
	e.a.budget = 3*s1 + 10
	e.a.mu.Unlock()
	deliver(3)
	if got := sets(); len(got) != 3 || strings.HasPrefix(got[0], "2026-04") {
		t.Fatalf("sets = %v", got)
	}
	st := e.a.Stats()
	if st.Deleted != 4 || st.Written != 3 || st.Errors != 0 || st.Bytes != e.a.idx.total {
		t.Errorf("Stats = %+v", st)
	}

	wantFiles := []string{
		"100000.000_NG_top.json",
		"2026-04-01/100000.000_NG_a1.png",
		"2026-04-01/notes.txt",
		"2026-04-02/.tmp-inflight",
		"2026-04-02/080000.000_NG_link.json",
		"2026-05-01/120001.123_NG_st1-20260501T120000-000001.json",
		"2026-05-01/120002.123_NG_st1-20260501T120000-000002.json",
		"2026-05-01/120003.123_NG_st1-20260501T120000-000003.json",
		"2026-13-01/100000.000_NG_z.json",
		"foreign/100000.000_NG_y.json",
		"foreign/2026-04-01/100000.000_NG_x.json",
		"notes.txt",
	}
	if got := files(t, root); !slices.Equal(got, wantFiles) {
		t.Errorf("files =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantFiles, "\n"))
	}
	if b, _ := os.ReadFile(outside); string(b) != "x" {
		t.Error("symlink target changed")
	}

	// Empty day directories are removed; 2026-04-02 still holds the
	// in-flight temp file and the link, so it stays too; remove those and
	// rescan.
	must(t, os.Remove(filepath.Join(root, "2026-04-02/.tmp-inflight")))
	must(t, os.Remove(filepath.Join(root, "2026-04-02/080000.000_NG_link.json")))
	e2 := newEnv(t, func(c *config.Archive) { c.Dir = root })
	if _, err := os.Stat(filepath.Join(root, "2026-04-02")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty day directory kept: %v", err)
	}
	if s := e2.a.Stats(); s.Bytes != st.Bytes {
		t.Errorf("rescan: %d bytes, tracked %d", s.Bytes, st.Bytes)
	}
}

func TestEvictionRemovesEmptyDay(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	must(t, os.MkdirAll(filepath.Join(root, "2026-04-30"), 0o750))
	must(t, os.WriteFile(filepath.Join(root, "2026-04-30", "235959.000_NG_old.json"), make([]byte, 3000), 0o640))
	e := newEnv(t, func(c *config.Archive) { c.Dir = root })
	e.a.mu.Lock()
	e.a.budget = du(t, root, "2026-04-30/235959.000_NG_old.json")
	e.a.mu.Unlock()
	e.a.Deliver(t.Context(), result(1, inspection.NG))
	if _, err := os.Stat(filepath.Join(root, "2026-04-30")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("emptied day directory kept: %v", err)
	}
	if s := e.a.Stats(); s.Deleted != 1 || s.Written != 1 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestBudgetEnforcedAtStart(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	for i := range 3 {
		p := filepath.Join(root, "2026-04-30", fmt.Sprintf("10000%d.000_NG_s%d.jpg", i, i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o750))
		must(t, os.WriteFile(p, make([]byte, 600<<10), 0o640))
	}
	e := newEnv(t, func(c *config.Archive) { c.Dir = root; c.MaxSizeMB = 1 })
	if s := e.a.Stats(); s.Deleted != 2 || s.Bytes != 600<<10 {
		t.Errorf("Stats = %+v", s)
	}
	if got := files(t, root); !slices.Equal(got, []string{"2026-04-30/100002.000_NG_s2.jpg"}) {
		t.Errorf("files = %v", got)
	}
}

func TestSetLargerThanBudget(t *testing.T) {
	e := newEnv(t, nil)
	e.a.Deliver(t.Context(), result(1, inspection.NG))
	e.a.mu.Lock()
	e.a.budget = 100
	e.a.mu.Unlock()
	r := result(2, inspection.NG)
	r.Snapshot = snapshot()
	e.a.Deliver(t.Context(), r)
	ev := e.rec.all()
	if len(ev) != 1 || ev[0].Kind != inspection.EventDiskBudget || ev[0].Severity != inspection.Warning {
		t.Fatalf("events = %+v", ev)
	}
	if !strings.HasPrefix(ev[0].Message, "archive: 120002.123_NG_st1-20260501T120000-000002 not archived: its ") ||
		!strings.HasSuffix(ev[0].Message, " bytes exceed the whole budget of 100 bytes (max_size_mb = 64)") {
		t.Errorf("message %q", ev[0].Message)
	}
	if s := e.a.Stats(); s.Skipped != 1 || s.Written != 1 || s.Deleted != 0 {
		t.Errorf("Stats = %+v; the older set must not be evicted for a set that cannot fit", s)
	}
	if got := files(t, e.dir); len(got) != 1 {
		t.Errorf("files = %v", got)
	}
}

func TestRedeliveryReplacesSet(t *testing.T) {
	e := newEnv(t, nil)
	r := result(1, inspection.NG)
	r.Snapshot = snapshot()
	e.a.Deliver(t.Context(), r)
	r2 := *r
	r2.Snapshot = nil
	e.a.Deliver(t.Context(), &r2)
	if got := files(t, e.dir); len(got) != 1 {
		t.Errorf("files = %v", got)
	}
	if s, want := e.a.Stats(), du(t, "", setPath(e, r, suffixJSON)); s.Bytes != want || e.a.idx.len() != 1 {
		t.Errorf("Stats = %+v, want %d bytes", s, want)
	}
}

func TestDeliverAfterCloseAndCancel(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.a.Deliver(ctx, result(1, inspection.NG)); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("cancelled Deliver: %v", err)
	}
	if err := e.a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := e.a.Deliver(t.Context(), result(2, inspection.NG))
	if want := "archive st1-20260501T120000-000002: archive is closed"; err == nil || err.Error() != want {
		t.Errorf("Deliver after Close: %v, want %q", err, want)
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		id, want string
	}{
		{"st1-20260501T120000-000001", "st1-20260501T120000-000001"},
		{"a/b", "a_b-"},
		{"..", "__-"},
		{"", "-811c9dc5"},
	}
	for _, tc := range tests {
		got := sanitizeID(tc.id)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("sanitizeID(%q) = %q, want prefix %q", tc.id, got, tc.want)
		}
	}
	for _, name := range []string{
		"120000.000_NG_x.jpg", "120000.000_OK_x.overlay.jpg", "235959.999_ERROR_a-b_c.json",
	} {
		if _, _, ok := parseName(name); !ok {
			t.Errorf("parseName(%q) failed", name)
		}
	}
	for _, name := range []string{
		"notes.txt", "120000.000_NG_x.png", "120000.000_ng_x.jpg", "12000.000_NG_x.jpg", "120000.000_NG_.jpg",
		"120000.000_NG_x.y.json", "120000000_NG_x.json", ".tmp-123", "120000.000__x.json", "120000.000_TOOLONGVERDICT_x.json",
	} {
		if _, _, ok := parseName(name); ok {
			t.Errorf("parseName(%q) accepted", name)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadOnlyDayDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write to any directory")
	}
	e := newEnv(t, nil)
	day := filepath.Join(e.dir, "2026-05-01")
	must(t, os.Mkdir(day, 0o500))
	t.Cleanup(func() { os.Chmod(day, 0o750) })
	r := result(1, inspection.NG)
	r.Snapshot = snapshot()
	e.a.Deliver(t.Context(), r)
	if got := files(t, e.dir); len(got) != 0 {
		t.Errorf("files = %v", got)
	}
	want := "archive: write 2026-05-01/120001.123_NG_st1-20260501T120000-000001.jpg: open " + day + "/.tmp-"
	if ev := e.rec.all(); len(ev) != 1 || !strings.HasPrefix(ev[0].Message, want) || !strings.HasSuffix(ev[0].Message, ": permission denied") {
		t.Errorf("events = %+v, want %q…", ev, want)
	}
}

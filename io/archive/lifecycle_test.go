package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inspectd/inspectd/inspection"
)

// New touches nothing on disk (no directory created, nothing scanned or
// deleted); Start opens the archive and enforces the budget.
func TestNewTouchesNothingStartOpens(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	day := filepath.Join(root, "2026-04-30")
	must(t, os.MkdirAll(day, 0o750))
	// One old set of 2 MiB against a 1 MiB budget.
	old := filepath.Join(day, "120000.000_NG_old.json")
	must(t, os.WriteFile(old, make([]byte, 2<<20), 0o640))
	stale := filepath.Join(root, tmpPrefix+"crash")
	must(t, os.WriteFile(stale, []byte("x"), 0o640))
	must(t, os.Chtimes(stale, time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour)))

	c := testConfig(root)
	c.MaxSizeMB = 1
	a, err := New(Options{Config: c, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{old, stale} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("New changed the directory: %v", err)
		}
	}
	if s := a.Stats(); s != (Stats{}) {
		t.Errorf("New scanned: %+v", s)
	}
	rec := &recorder{}
	if err := a.Start(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	defer a.Close(t.Context())
	for _, p := range []string{old, stale} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Start left %s: %v", p, err)
		}
	}
	if s := a.Stats(); s.Deleted != 1 || s.Bytes != 0 {
		t.Errorf("Stats after Start = %+v", s)
	}

	// New with a directory that does not exist does not create it.
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := New(Options{Config: testConfig(missing)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New created the directory: %v", err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		do   func(*Archive) error
		want string
	}{
		{"nil host", func(a *Archive) error { return a.Start(ctx, nil) }, "archive: start: host is nil"},
		{"cancelled ctx", func(a *Archive) error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			return a.Start(c, &recorder{})
		}, "archive: start: context canceled"},
		{"started twice", func(a *Archive) error {
			if err := a.Start(ctx, &recorder{}); err != nil {
				return err
			}
			return a.Start(ctx, &recorder{})
		}, "archive: start: already started"},
		{"start after close", func(a *Archive) error {
			if err := a.Close(ctx); err != nil {
				return err
			}
			return a.Start(ctx, &recorder{})
		}, "archive: start: archive is closed"},
		{"deliver before start", func(a *Archive) error { return a.Deliver(ctx, result(1, inspection.NG)) },
			"archive st1-20260501T120000-000001: archive is not started"},
		{"close without start, twice", func(a *Archive) error { return errors.Join(a.Close(ctx), a.Close(ctx)) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(Options{Config: testConfig(filepath.Join(t.TempDir(), "archive"))})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(ctx)
			err = tt.do(a)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	deliver := func(i int, snap bool) {
		t.Helper()
		r := result(i, inspection.NG)
		if snap {
			r.Snapshot = snapshot()
		}
		if err := e.a.Deliver(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	setBudget := func(b int64) {
		e.a.mu.Lock()
		e.a.budget = b
		e.a.mu.Unlock()
	}
	deliver(1, false)
	deliver(2, false)
	setBudget(e.a.Stats().Bytes) // the third set evicts the first
	deliver(3, false)
	setBudget(100) // too small for any set
	deliver(4, true)
	onDisk := du(t, e.dir, files(t, e.dir)...)
	if onDisk == 0 {
		t.Fatal("nothing written")
	}
	want := fmt.Sprintf(`
# HELP inspectd_archive_bytes Current size of the archive in bytes.
# TYPE inspectd_archive_bytes gauge
inspectd_archive_bytes %d
# HELP inspectd_archive_deleted_total Archived parts deleted, oldest first, to stay within archive.max_size_mb.
# TYPE inspectd_archive_deleted_total counter
inspectd_archive_deleted_total 1
# HELP inspectd_archive_errors_total Archive failures: unusable directory, full disk, write or delete errors.
# TYPE inspectd_archive_errors_total counter
inspectd_archive_errors_total 0
# HELP inspectd_archive_skipped_total Parts not archived because one alone exceeds the budget.
# TYPE inspectd_archive_skipped_total counter
inspectd_archive_skipped_total 1
# HELP inspectd_archive_written_total Parts archived (frame, overlay, JSON).
# TYPE inspectd_archive_written_total counter
inspectd_archive_written_total 3
`, onDisk)
	if err := testutil.CollectAndCompare(e.a, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if p, err := testutil.CollectAndLint(e.a); err != nil || len(p) != 0 {
		t.Errorf("lint: %v %v", p, err)
	}
}

// A scrape does not wait for a Deliver stuck on the disk.
func TestCollectDoesNotWaitForDisk(t *testing.T) {
	e := newEnv(t, nil)
	inWrite, release := make(chan struct{}), make(chan struct{})
	e.a.writeHook = func(string) error {
		close(inWrite)
		<-release
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- e.a.Deliver(context.Background(), result(1, inspection.NG)) }()
	<-inWrite
	scraped := make(chan int, 1)
	go func() {
		_ = e.a.Stats()
		scraped <- testutil.CollectAndCount(e.a)
	}()
	select {
	case n := <-scraped:
		if n != 5 {
			t.Errorf("%d series, want 5", n)
		}
	case <-time.After(2 * time.Second):
		t.Error("Collect blocked while Deliver writes")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

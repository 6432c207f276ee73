package layout_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive/layout"
)

var t0 = time.Date(2026, 12, 6, 23, 59, 58, 0, time.UTC)

// result is the i-th part: every third NG (score 0.7 + i/100), every
// seventh an ERROR, the rest OK (score 0.1 + i/100); products alternate.
func result(i int) *inspection.Result {
	r := &inspection.Result{
		ID: fmt.Sprintf("st.1-20261206T235900-%06d", i), Station: "st.1", Seq: uint64(i),
		Verdict: inspection.OK, Reason: inspection.ReasonPass,
		VerdictTime: t0.Add(time.Duration(i) * time.Second),
		Score:       0.1 + float64(i)/100, Threshold: 0.5,
		Model: inspection.Model{Product: []string{"plate", "bracket"}[i%2], BundleHash: "sha256:ab"},
	}
	switch {
	case i%7 == 0:
		r.Verdict, r.Reason, r.Score = inspection.Error, inspection.ReasonCameraTimeout, 0
	case i%3 == 0:
		r.Verdict, r.Reason, r.Score = inspection.NG, inspection.ReasonRegion, 0.7+float64(i)/100
	}
	return r
}

// writeSet writes r's set as the archive names it: the .json, and the
// frame and overlay images when frame is true.
func writeSet(t testing.TB, dir string, r *inspection.Result, frame bool) (day, base string) {
	t.Helper()
	day, base = layout.SetName(r, time.Now())
	d := filepath.Join(dir, day)
	if err := os.MkdirAll(d, 0o750); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if frame {
		os.WriteFile(filepath.Join(d, base+layout.SuffixFrame), []byte("frame of "+r.ID), 0o640)
		os.WriteFile(filepath.Join(d, base+layout.SuffixOverlay), []byte("overlay of "+r.ID), 0o640)
	}
	if err := os.WriteFile(filepath.Join(d, base+layout.SuffixJSON), b, 0o640); err != nil {
		t.Fatal(err)
	}
	return day, base
}

// archive20 writes parts 1..20 (crossing midnight into 2026-12-07) with
// images for the rejected ones.
func archive20(t testing.TB) string {
	dir := t.TempDir()
	for i := 1; i <= 20; i++ {
		r := result(i)
		writeSet(t, dir, r, r.Verdict != inspection.Error)
	}
	return dir
}

func ids(l layout.Listing) string {
	var s []string
	for _, r := range l.Records {
		s = append(s, fmt.Sprint(r.Result.Seq))
	}
	return strings.Join(s, ",")
}

func fp(v float64) *float64 { return &v }

func TestListFilters(t *testing.T) {
	rd := layout.NewReader(archive20(t))
	for _, tc := range []struct {
		name  string
		f     layout.Filter
		want  string
		total int
	}{
		{"all newest first", layout.Filter{PerPage: 100}, "20,19,18,17,16,15,14,13,12,11,10,9,8,7,6,5,4,3,2,1", 20},
		{"page 2 of 7", layout.Filter{Page: 2, PerPage: 7}, "13,12,11,10,9,8,7", 20},
		{"past the end", layout.Filter{Page: 9, PerPage: 7}, "", 20},
		{"NG", layout.Filter{Verdict: "NG"}, "18,15,12,9,6,3", 6},
		{"error lower-case", layout.Filter{Verdict: "error"}, "14,7", 2},
		{"reason", layout.Filter{Reason: inspection.ReasonCameraTimeout}, "14,7", 2},
		{"product", layout.Filter{Product: "plate", Verdict: "NG"}, "18,12,6", 3},
		{"since (across midnight)", layout.Filter{Since: t0.Add(17 * time.Second)}, "20,19,18,17", 4},
		{"until exclusive", layout.Filter{Until: t0.Add(3 * time.Second)}, "2,1", 2},
		{"window", layout.Filter{Since: t0.Add(2 * time.Second), Until: t0.Add(5 * time.Second)}, "4,3,2", 3},
		{"min score", layout.Filter{MinScore: fp(0.8)}, "18,15,12", 3},
		{"score range", layout.Filter{MinScore: fp(0.2), MaxScore: fp(0.25)}, "13,11,10", 3},
		{"nothing", layout.Filter{Product: "nope"}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := rd.List(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(l); got != tc.want || l.Total != tc.total {
				t.Errorf("got %s (total %d), want %s (total %d)", got, l.Total, tc.want, tc.total)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	rd := layout.NewReader(t.TempDir())
	for _, tc := range []struct {
		f    layout.Filter
		want string
	}{
		{layout.Filter{Verdict: "BAD"}, `verdict "BAD" is not known; use OK, NG or ERROR`},
		{layout.Filter{Page: -1}, "page -1 must be at least 1"},
		{layout.Filter{PerPage: 1001}, "per_page 1001 must be from 1 to 1000"},
		{layout.Filter{Since: t0, Until: t0}, "since 2026-12-06T23:59:58Z is not before until 2026-12-06T23:59:58Z"},
		{layout.Filter{MinScore: fp(2), MaxScore: fp(1)}, "min_score 2 is greater than max_score 1"},
	} {
		if _, err := rd.List(tc.f); err == nil || err.Error() != tc.want {
			t.Errorf("List(%+v) = %v, want %s", tc.f, err, tc.want)
		}
	}
	// A missing archive directory is an empty archive.
	if l, err := layout.NewReader(filepath.Join(t.TempDir(), "none")).List(layout.Filter{}); err != nil || l.Total != 0 {
		t.Errorf("missing dir: %+v, %v", l, err)
	}
}

func TestLoadAndImages(t *testing.T) {
	dir := archive20(t)
	rd := layout.NewReader(dir)
	rec, err := rd.Load(result(3).ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result.Verdict != inspection.NG || !rec.Frame || !rec.Overlay || !strings.HasPrefix(rec.File, "2026-12-07/000001.000_NG_st_1-") {
		t.Errorf("Load = %+v", rec)
	}
	f, _, err := rd.OpenImage(result(3).ID, layout.ImageOverlay)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "overlay of "+result(3).ID {
		t.Errorf("overlay = %q", b)
	}
	if _, _, err := rd.OpenImage(result(7).ID, layout.ImageFrame); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("frame of an ERROR without image: %v", err)
	}
	if _, _, err := rd.OpenImage(result(3).ID, layout.Image("json")); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("image kind json: %v", err)
	}
}

// TestHostileIDs: no ID reaches the file system unless it is a result ID;
// traversal, separators and NUL are refused as bad IDs, unknown ones are
// not found, whatever lies around the archive.
func TestHostileIDs(t *testing.T) {
	dir := archive20(t)
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret.json"), []byte(`{"result_id":"secret"}`), 0o600)
	rd := layout.NewReader(dir)
	for _, id := range []string{"", "..", "../secret", "a/../../secret", "a..b", "st.1/x", `a\b`, "a\x00b", ".hidden",
		"-x", strings.Repeat("a", 129), "%2e%2e", "a b"} {
		if _, err := rd.Load(id); !errors.Is(err, layout.ErrBadID) {
			t.Errorf("Load(%q) = %v, want ErrBadID", id, err)
		}
		if _, _, err := rd.OpenImage(id, layout.ImageFrame); !errors.Is(err, layout.ErrBadID) {
			t.Errorf("OpenImage(%q) = %v, want ErrBadID", id, err)
		}
	}
	for _, id := range []string{"secret", "st.1-20261206T235900-999999", "st_1-20261206T235900-000003"} {
		if _, err := rd.Load(id); !errors.Is(err, layout.ErrNotFound) {
			t.Errorf("Load(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

// TestSymlinksRefused: a set file or a day directory that is a symbolic
// link is neither listed nor opened.
func TestSymlinksRefused(t *testing.T) {
	dir := archive20(t)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "passwd"), []byte("root:x:0:0"), 0o600)

	// An image replaced by a link to a file outside.
	r := result(6)
	day, base := layout.SetName(r, time.Now())
	img := filepath.Join(dir, day, base+layout.SuffixFrame)
	os.Remove(img)
	if err := os.Symlink(filepath.Join(outside, "passwd"), img); err != nil {
		t.Fatal(err)
	}
	rd := layout.NewReader(dir)
	if rec, err := rd.Load(r.ID); err != nil || rec.Frame {
		t.Errorf("Load = %+v, %v; want the set without its linked frame", rec, err)
	}
	if _, _, err := rd.OpenImage(r.ID, layout.ImageFrame); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("OpenImage(linked frame) = %v, want ErrNotFound", err)
	}

	// A day directory that is a link to another archive.
	other := t.TempDir()
	foreign := result(1)
	foreign.ID, foreign.VerdictTime = "st.1-foreign-000001", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	fday, _ := writeSet(t, other, foreign, true)
	if err := os.Symlink(filepath.Join(other, fday), filepath.Join(dir, fday)); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Load(foreign.ID); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("Load(result in a linked day directory) = %v, want ErrNotFound", err)
	}
	if l, _ := rd.List(layout.Filter{PerPage: 100}); l.Total != 20 || l.Unreadable != 0 {
		t.Errorf("List counts %d (%d unreadable), want the 20 real sets and nothing of the linked day", l.Total, l.Unreadable)
	}

	// A .json that is a link is not a set.
	j := filepath.Join(dir, day, base+layout.SuffixJSON)
	os.Remove(j)
	os.Symlink(filepath.Join(outside, "passwd"), j)
	if _, err := layout.NewReader(dir).Load(r.ID); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("Load(linked json) = %v, want ErrNotFound", err)
	}
}

// TestUnreadableRecord: a damaged .json is counted, not fatal.
func TestUnreadableRecord(t *testing.T) {
	dir := archive20(t)
	day, base := layout.SetName(result(5), time.Now())
	os.WriteFile(filepath.Join(dir, day, base+layout.SuffixJSON), []byte("{torn"), 0o640)
	l, err := layout.NewReader(dir).List(layout.Filter{PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	if l.Total != 19 || l.Unreadable != 1 {
		t.Errorf("total %d unreadable %d, want 19 and 1", l.Total, l.Unreadable)
	}
}

// TestTimeBoundsBelowTheMillisecond: names carry milliseconds, records
// nanoseconds; since is inclusive and until exclusive to the nanosecond.
func TestTimeBoundsBelowTheMillisecond(t *testing.T) {
	dir := t.TempDir()
	at := t0.Add(10*time.Second + 500*time.Microsecond)
	for i, vt := range []time.Time{at.Add(-time.Second), at, at.Add(time.Second)} {
		r := result(i + 1)
		r.VerdictTime = vt
		writeSet(t, dir, r, false)
	}
	rd := layout.NewReader(dir)
	for _, tc := range []struct {
		f    layout.Filter
		want string
	}{
		{layout.Filter{Until: at}, "1"},
		{layout.Filter{Until: at.Add(time.Nanosecond)}, "2,1"},
		{layout.Filter{Since: at}, "3,2"},
		{layout.Filter{Since: at.Add(time.Nanosecond)}, "3"},
	} {
		l, err := rd.List(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(l); got != tc.want {
			t.Errorf("since %v until %v: %s, want %s", tc.f.Since, tc.f.Until, got, tc.want)
		}
	}
}

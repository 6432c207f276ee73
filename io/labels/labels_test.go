package labels

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func entry(id, label, typ string) Entry {
	return Entry{User: "alice", ResultID: id, Label: label, DefectType: typ, Station: "st-1", Product: "plate", BundleHash: "sha256:ab"}
}

func mustAppend(t *testing.T, l *Log, e Entry) {
	t.Helper()
	if err := l.Append(e); err != nil {
		t.Fatal(err)
	}
}

func TestAppendReadCurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels.jsonl")
	l, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	at := time.Date(2026, 12, 7, 22, 41, 5, 123456789, time.FixedZone("CET", 3600))
	e1 := entry("r1", Good, "")
	e1.Time = at
	mustAppend(t, l, e1)
	mustAppend(t, l, entry("r2", Unsure, ""))
	e3 := entry("r1", Defect, "scratch")
	e3.Previous = Good
	mustAppend(t, l, e3)

	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o640 {
		t.Errorf("mode %v, want 0640", m)
	}
	b, _ := os.ReadFile(p)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), b)
	}
	// The contract's format: every key, the time in UTC with nanoseconds.
	want := `{"time":"2026-12-07T21:41:05.123456789Z","user":"alice","result_id":"r1","label":"good","defect_type":"","previous":"","previous_defect_type":"","station":"st-1","product":"plate","bundle_hash":"sha256:ab","note":""}`
	if lines[0] != want {
		t.Errorf("line 1\n got %s\nwant %s", lines[0], want)
	}
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ResultID != "r1" || got[1].ResultID != "r2" || got[2].Label != Defect {
		t.Fatalf("Read = %+v", got)
	}
	if got[1].Time.IsZero() || got[1].Time.Location() != time.UTC {
		t.Errorf("Append did not stamp the time in UTC: %v", got[1].Time)
	}
	cur := Current(got)
	if len(cur) != 2 || cur["r1"].Label != Defect || cur["r1"].DefectType != "scratch" || cur["r2"].Label != Unsure {
		t.Errorf("Current = %+v", cur)
	}
	if h := History(got, "r1"); len(h) != 2 || h[0].Label != Good || h[1].Previous != Good {
		t.Errorf("History(r1) = %+v", h)
	}
}

// TestTornLastLine: a crash in the middle of a write leaves a line without
// its end. Readers skip it with a reason; Open ends it so that the next
// entry is whole, and the log reads on.
func TestTornLastLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels.jsonl")
	l, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, entry("r1", Good, ""))
	mustAppend(t, l, entry("r2", Defect, "dent"))
	l.Close()
	b, _ := os.ReadFile(p)
	whole := bytes.Count(b, []byte("\n"))
	line3, _ := json.Marshal(entry("r3", Unsure, ""))
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line3[:len(line3)/2]) // the crash
	f.Close()

	got, skipped, err := ReadDetailed(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(skipped) != 1 || skipped[0].Line != whole+1 || !strings.HasPrefix(skipped[0].Reason, "torn last line (no newline)") {
		t.Fatalf("entries %d, skipped %+v", len(got), skipped)
	}
	if got, err := Read(p); err != nil || len(got) != 2 {
		t.Fatalf("Read = %d entries, %v", len(got), err)
	}

	l, err = Open(p) // after the restart
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, entry("r3", Unsure, ""))
	l.Close()
	got, skipped, err = ReadDetailed(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].ResultID != "r3" || len(skipped) != 1 || !strings.HasPrefix(skipped[0].Reason, "not a JSON entry") {
		t.Fatalf("after the restart: entries %+v, skipped %+v", got, skipped)
	}
}

// TestDamagedLines: lines that are not entries anywhere in the file are
// skipped with their line numbers; the rest is read.
func TestDamagedLines(t *testing.T) {
	good, _ := json.Marshal(entry("r1", Good, ""))
	noType, _ := json.Marshal(entry("r2", Defect, ""))
	text := string(good) + "\n" + "garbage\n" + "\n" + string(noType) + "\n" + strings.Repeat("x", MaxLineBytes+10) + "\n" + string(good) + "\n"
	got, skipped, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("%d entries, want 2", len(got))
	}
	var lines []string
	for _, s := range skipped {
		lines = append(lines, fmt.Sprintf("%d:%s", s.Line, strings.SplitN(s.Reason, ":", 2)[0]))
	}
	if g, w := strings.Join(lines, " "), "2:not a JSON entry 4:invalid entry 5:longer than 65536 bytes"; g != w {
		t.Errorf("skipped %q, want %q", g, w)
	}
}

func TestAppendRefuses(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels.jsonl")
	l, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		e    Entry
		want string
	}{
		{entry("", Good, ""), "label log: result_id is empty"},
		{Entry{ResultID: "r", Label: Good}, "label log: user is empty"},
		{entry("r", "bad", ""), `label log: label "bad" is not known; use "good", "defect" or "unsure"`},
		{entry("r", Defect, ""), `label log: label "defect" needs a defect_type`},
		{entry("r", Good, "scratch"), `label log: label "good" takes no defect_type (got "scratch"); only "defect" does`},
		{Entry{User: "a", ResultID: "r", Label: Unsure, Note: strings.Repeat("n", MaxNoteBytes+1)}, "label log: note is 2001 bytes; at most 2000 are kept"},
	} {
		if err := l.Append(tc.e); err == nil || err.Error() != tc.want {
			t.Errorf("Append(%+v) = %v, want %s", tc.e, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Errorf("refused entries were written: %s", b)
	}
	l.Close()
	if err := l.Append(entry("r", Good, "")); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Append after Close = %v", err)
	}
}

func TestOpenRefusesLinksAndDirectories(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "labels.jsonl")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link); err == nil || !strings.Contains(err.Error(), "is not a regular file (L") {
		t.Errorf("Open(symlink) = %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "is not a regular file (d") {
		t.Errorf("Open(dir) = %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read(missing) = %v, want ErrNotExist", err)
	}
}

// TestConcurrentAppend: appends from many goroutines (and two Logs on one
// file, as two handlers would) never interleave inside a line.
func TestConcurrentAppend(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels.jsonl")
	a, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a
			if w%2 == 1 {
				l = b
			}
			for i := range each {
				e := entry(fmt.Sprintf("w%d-%d", w, i), Unsure, "")
				e.Note = strings.Repeat("n", 1500) // long lines make interleaving visible
				if err := l.Append(e); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, skipped, err := ReadDetailed(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != workers*each || len(skipped) != 0 {
		t.Errorf("%d entries and %d skipped lines, want %d and 0", len(got), len(skipped), workers*each)
	}
	if c := Current(got); len(c) != workers*each {
		t.Errorf("Current has %d results, want %d", len(c), workers*each)
	}
}

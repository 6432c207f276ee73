package evaluate

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/models/dataset"
)

// runProgress feeds m updates spread over span of fake time to a progress
// bar writing into a buffer that terminal says is (or is not) a terminal,
// and returns what it wrote.
func runProgress(t *testing.T, terminal bool, m int, span time.Duration) string {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	var out bytes.Buffer
	p := newProgress(&out, "gear", m, clk.now, func(io.Writer) bool { return terminal })
	for i := 1; i <= m; i++ {
		clk.t = clk.t.Add(span / time.Duration(m))
		p.update(i)
	}
	p.finish()
	return out.String()
}

// A log file or a pipe gets whole lines, no '\r', at most one per
// plainProgressInterval of (fake) time plus the first and the last.
func TestProgressPlainWhenNotATerminal(t *testing.T) {
	const m, span = 600, 100 * time.Second // an update every 1/6 s
	out := runProgress(t, false, m, span)
	if strings.Contains(out, "\r") {
		t.Fatalf("non-terminal progress contains '\\r':\n%q", out)
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("non-terminal progress does not end with a newline: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	maxLines := 1 + int(span/plainProgressInterval) + 1
	if len(lines) > maxLines || len(lines) < 3 {
		t.Errorf("%d updates over %s: %d lines, want 3 to %d:\n%s", m, span, len(lines), maxLines, out)
	}
	if !strings.Contains(lines[0], " 0/600") || !strings.Contains(lines[len(lines)-1], "600/600") {
		t.Errorf("first line %q, last %q: want 0/600 and 600/600", lines[0], lines[len(lines)-1])
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "gear ") || !strings.Contains(l, "img/s") {
			t.Errorf("line %q is not a progress line", l)
		}
	}
}

// The last line is written once even when the final update came with a
// rate-limited line already.
func TestProgressPlainLastLineOnce(t *testing.T) {
	out := runProgress(t, false, 2, 20*time.Second) // every update prints
	if got := strings.Count(out, "2/2"); got != 1 {
		t.Errorf("final state written %d times, want 1:\n%s", got, out)
	}
}

// A terminal keeps the bar: redrawn in place after every update, one
// newline at the end.
func TestProgressBarOnTerminal(t *testing.T) {
	const m = 50
	out := runProgress(t, true, m, 100*time.Second)
	if strings.Count(out, "\r") != m+1 || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("terminal progress: %d '\\r', %d '\\n', want %d and 1:\n%q", strings.Count(out, "\r"), strings.Count(out, "\n"), m+1, out)
	}
	if !strings.Contains(out, "[########################] 50/50") {
		t.Errorf("terminal progress has no full bar: %q", out)
	}
}

// Run with its default terminal detection, writing the progress into a
// file as `inspectd eval 2>log` does: plain lines.
func TestRunProgressIntoFileIsPlain(t *testing.T) {
	cat := handCategory(t, t.TempDir(), "hand", true)
	log, err := os.Create(filepath.Join(t.TempDir(), "eval.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	if _, err := Run(context.Background(), &fakeEngine{w: 8, h: 8, thr: 0.45, clock: clk}, []*dataset.Category{cat},
		Options{Progress: log, now: clk.now}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(log.Name())
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	if strings.Contains(out, "\r") || strings.Count(out, "\n") != 2 || !strings.Contains(out, "8/8") {
		t.Errorf("progress in a file: want 2 plain lines (start and 8/8), got\n%q", out)
	}
}

//go:build workstation

package imm

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// reportLines runs a reporter over steps steps of 5 per epoch, one step
// every stepTime of fake time, into a writer that terminal says is (or is
// not) a terminal, and returns the lines printed.
func reportLines(t *testing.T, terminal bool, steps int, stepTime time.Duration) []string {
	t.Helper()
	clk := time.Unix(1000, 0)
	var out bytes.Buffer
	sc := &schedule{steps: steps, stepsPerEpoch: 5, epochs: (steps + 4) / 5}
	r := newReporter(&out, sc, 8, func() time.Time { return clk }, func(io.Writer) bool { return terminal })
	epochs := 0
	for s := range steps {
		clk = clk.Add(stepTime)
		if _, done := r.add(s, 0.01, 0.02, 0.5); done {
			epochs++
		}
	}
	if epochs != sc.epochs {
		t.Errorf("%d epochs ended, want %d", epochs, sc.epochs)
	}
	text := out.String()
	if strings.Contains(text, "\r") || !strings.HasSuffix(text, "\n") {
		t.Errorf("progress is not whole lines: %q", text)
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// In a log (file, pipe) training writes a line at most every 5 s, and the
// last; on a terminal at most one a second.
func TestReporterInterval(t *testing.T) {
	const steps, stepTime = 1000, 100 * time.Millisecond // 200 epochs of 0.5 s over 100 s
	for _, c := range []struct {
		terminal bool
		max      int
	}{
		{false, 100/5 + 1},
		{true, 100/1 + 1},
	} {
		lines := reportLines(t, c.terminal, steps, stepTime)
		if len(lines) > c.max || len(lines) < c.max-2 {
			t.Errorf("terminal %v: %d lines over 100 s, want %d at most (and not far fewer)", c.terminal, len(lines), c.max)
		}
		if last := lines[len(lines)-1]; !strings.Contains(last, "step 1000/1000") {
			t.Errorf("terminal %v: last line %q, want step 1000/1000", c.terminal, last)
		}
	}
}

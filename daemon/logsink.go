package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging"
)

// LogSink logs every result: NG and ERROR at info level with their reason,
// OK at debug level (a line per good part would flood a busy line's log).
type LogSink struct{ log *slog.Logger }

// NewLogSink returns a LogSink writing to logger.
func NewLogSink(logger *slog.Logger) *LogSink {
	return &LogSink{log: logging.Component(logger, "results")}
}

// Name is "log".
func (s *LogSink) Name() string { return "log" }

// Deliver logs r.
func (s *LogSink) Deliver(ctx context.Context, r *inspection.Result) error {
	level := slog.LevelDebug
	if r.Verdict != inspection.OK {
		level = slog.LevelInfo
	}
	if !s.log.Enabled(ctx, level) {
		return nil
	}
	attrs := []any{"part_id", r.PartID, "verdict", r.Verdict, "reason", r.Reason, "score", round3(r.Score),
		"threshold", r.Threshold, "regions", len(r.Regions), "total_ms", r.Latency.TotalMs, "result_id", r.ID}
	if r.Detail != "" {
		attrs = append(attrs, "detail", r.Detail)
	}
	s.log.Log(ctx, level, "part inspected", attrs...)
	return nil
}

// Close does nothing.
func (s *LogSink) Close(context.Context) error { return nil }

// PrintSink writes one human-readable line per result, for `inspectd run
// --print` and the demo:
//
//	P0007  NG     score 0.731 (thr 0.420)  2 regions  31.2 ms  [score]
//
// Close prints a summary: parts by verdict and trigger→verdict latency.
type PrintSink struct {
	w       io.Writer
	counts  map[inspection.Verdict]int
	latency []float64
}

// NewPrintSink returns a PrintSink writing to w.
func NewPrintSink(w io.Writer) *PrintSink {
	return &PrintSink{w: w, counts: map[inspection.Verdict]int{}}
}

// Name is "print".
func (s *PrintSink) Name() string { return "print" }

// Deliver prints r.
func (s *PrintSink) Deliver(_ context.Context, r *inspection.Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %-5s  score %.3f (thr %.3f)  %d region", r.PartID, r.Verdict, r.Score, r.Threshold, len(r.Regions))
	if len(r.Regions) != 1 {
		b.WriteString("s")
	}
	fmt.Fprintf(&b, "  %6.1f ms  [%s]", r.Latency.TotalMs, r.Reason)
	if r.Detail != "" {
		fmt.Fprintf(&b, " %s", r.Detail)
	}
	b.WriteByte('\n')
	s.counts[r.Verdict]++
	s.latency = append(s.latency, r.Latency.TotalMs)
	_, err := io.WriteString(s.w, b.String())
	return err
}

// Close prints the summary.
func (s *PrintSink) Close(context.Context) error {
	n := len(s.latency)
	if n == 0 {
		_, err := fmt.Fprintln(s.w, "no parts inspected")
		return err
	}
	sorted := append([]float64(nil), s.latency...)
	sort.Float64s(sorted)
	_, err := fmt.Fprintf(s.w, "%d parts: %d OK, %d NG, %d ERROR; trigger→verdict p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		n, s.counts[inspection.OK], s.counts[inspection.NG], s.counts[inspection.Error],
		percentile(sorted, 0.5), percentile(sorted, 0.99), sorted[n-1])
	return err
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

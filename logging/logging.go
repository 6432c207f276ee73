// Package logging builds the daemon's structured logger (log/slog, text or
// JSON) and derives per-component loggers that carry component=<name>.
// Loggers are always passed explicitly; nothing here is global.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a logger writing to w at the given level ("debug", "info",
// "warn", "error") in the given format ("text" or "json").
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

// Component returns l tagged with component=name, the logger every
// subsystem receives.
func Component(l *slog.Logger, name string) *slog.Logger {
	return l.With(slog.String("component", name))
}

// Discard returns a logger that drops everything (for tests and tools).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

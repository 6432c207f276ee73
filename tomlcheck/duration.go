package tomlcheck

import (
	"time"
)

// Duration is a time.Duration written in the file as a string such as
// "250ms", "2s" or "1m30s". A malformed value does not stop decoding: it is
// reported by validation together with every other problem.
type Duration struct {
	D   time.Duration
	raw string
	err error
}

// Dur returns a Duration holding d (used for defaults).
func Dur(d time.Duration) Duration { return Duration{D: d, raw: d.String()} }

// UnmarshalText records the text and whether it parses.
func (d *Duration) UnmarshalText(text []byte) error {
	d.raw = string(text)
	d.D, d.err = time.ParseDuration(d.raw)
	return nil
}

// MarshalText writes the duration in Go's notation.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.D.String()), nil }

// String returns the duration in Go's notation.
func (d Duration) String() string { return d.D.String() }

// Valid reports whether the text parsed as a duration (defaults always do).
func (d Duration) Valid() bool { return d.err == nil }

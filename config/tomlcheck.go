package config

import (
	"time"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/tomlcheck"
)

// The strict TOML machinery lives in package tomlcheck, shared with the
// training recipe and the bundle manifest; these names keep config's API.
type (
	// Problem is one thing wrong with a configuration file.
	Problem = tomlcheck.Problem
	// Problems is every problem found in one file; the error returned for
	// semantically invalid configurations.
	Problems = tomlcheck.Problems
	// SyntaxError is a TOML syntax error with its position and line.
	SyntaxError = tomlcheck.SyntaxError
	// Checker collects the problems of one file with their keys and lines.
	Checker = tomlcheck.Checker
	// Duration is a time.Duration written as a string such as "250ms".
	Duration = tomlcheck.Duration
)

// ErrInvalid is matched by errors.Is for every configuration problem list
// and syntax error, to tell them apart from I/O errors.
var ErrInvalid = tomlcheck.ErrInvalid

// Dur returns a Duration holding d (used for defaults).
func Dur(d time.Duration) Duration { return tomlcheck.Dur(d) }

// DecodeStrict is [tomlcheck.Decode], kept for existing callers.
//
// Deprecated: use tomlcheck.Decode.
func DecodeStrict(name string, data []byte, dst any, reference string) (*Checker, toml.MetaData, error) {
	return tomlcheck.Decode(name, data, dst, reference)
}

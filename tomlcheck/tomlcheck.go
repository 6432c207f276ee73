// Package tomlcheck decodes TOML files strictly for people who edit them by
// hand: the station configuration, the training recipe and the model
// bundle manifest.
//
// A syntax error is reported as file:line:col with the offending line and
// a caret ([SyntaxError]). A value of the wrong type, an unknown key and
// every value a [Checker] refuses is a [Problem] rendered as
// "file:line: key: message", the line found from the file's text
// ([Index]) because the TOML decoder does not expose key positions. All
// problems of a file are reported at once ([Problems]).
package tomlcheck

import (
	"bytes"
	"errors"

	"github.com/BurntSushi/toml"
)

// ErrInvalid is matched by errors.Is for every [Problems] list and
// [SyntaxError], to tell them apart from I/O errors.
var ErrInvalid = errors.New("invalid TOML file")

// Decode decodes the TOML text data (from the file name) into dst, which
// holds the defaults beforehand. A syntax error is returned as a
// *SyntaxError and a value of the wrong type as Problems. Otherwise the
// returned Checker holds a problem for every unknown key, and the caller
// adds its own checks to it before calling Err, so that every problem of
// the file is reported at once with its key and line. reference names the
// documented example that unknown-key messages point to.
func Decode(name string, data []byte, dst any, reference string) (*Checker, toml.MetaData, error) {
	return DecodeIndexed(name, data, NewIndex(string(data)), dst, reference)
}

// DecodeIndexed is Decode with the file's Index already built.
func DecodeIndexed(name string, data []byte, idx *Index, dst any, reference string) (*Checker, toml.MetaData, error) {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(dst)
	if err != nil {
		// A syntax error is shown with its line and a caret; only a
		// well-formed file's values can be of the wrong type.
		var raw map[string]any
		if _, serr := toml.Decode(string(data), &raw); serr != nil {
			return nil, md, Syntax(name, string(data), serr)
		}
		if p, ok := typeProblem(err, idx); ok {
			p.File = name
			return nil, md, Problems{p}
		}
		return nil, md, Syntax(name, string(data), err)
	}
	v := NewChecker(name, idx)
	reportUnknownKeys(v, md.Undecoded(), reference)
	return v, md, nil
}

// reportUnknownKeys reports each undecoded key once: the keys inside an
// unknown table are not repeated after the table itself. It is linear in
// the number of keys (times their depth): a set of the reported keys is
// looked up for each key's parents, so that a file of 40,000 unknown keys
// is reported at once instead of in seconds (issue 24, finding 13).
func reportUnknownKeys(v *Checker, keys []toml.Key, reference string) {
	reported := make(map[string]bool)
	for _, k := range keys {
		if insideReported(k, reported) {
			continue
		}
		key := k.String()
		reported[key] = true
		v.ProblemAt(key, "unknown key; check the spelling against "+reference)
	}
}

// insideReported reports whether a parent table of k is in reported.
func insideReported(k toml.Key, reported map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if reported[k[:i].String()] {
			return true
		}
	}
	return false
}

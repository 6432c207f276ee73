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
	"strings"

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
// unknown table are not repeated after the table itself.
func reportUnknownKeys(v *Checker, keys []toml.Key, reference string) {
	var unknownTables []string
	for _, k := range keys {
		key := k.String()
		inside := false
		for _, t := range unknownTables {
			if strings.HasPrefix(key, t+".") {
				inside = true
				break
			}
		}
		if inside {
			continue
		}
		unknownTables = append(unknownTables, key)
		v.ProblemAt(key, "unknown key; check the spelling against "+reference)
	}
}

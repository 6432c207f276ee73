package tomlcheck

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File string // file name as given to Load or Parse
	Line int    // 1-based line, 0 when unknown (e.g. a missing key)
	Key  string // dotted key, e.g. "camera.read_timeout"
	Msg  string // what is wrong and what is allowed
}

// String renders the problem as "file:line: key: message".
func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Key, p.Msg)
}

// Problems is the list of every problem found in one file. It is the error
// returned for semantically invalid configurations.
type Problems []Problem

// Error renders one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is reports ErrInvalid as the class of this error.
func (ps Problems) Is(target error) bool { return target == ErrInvalid }

// sorted orders problems by line (unknown lines last), then key, keeping
// the order stable for equal positions.
func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if li == 0 {
			li = 1 << 30
		}
		if lj == 0 {
			lj = 1 << 30
		}
		if li != lj {
			return li < lj
		}
		return ps[i].Key < ps[j].Key
	})
	return ps
}

// SyntaxError is a TOML syntax error with its position and the offending
// line, rendered as
//
//	file:line:col: syntax error: message
//	    | the offending line
//	    |      ^
type SyntaxError struct {
	File       string
	Line, Col  int
	Msg        string
	SourceLine string
}

// Error renders the position, the message, the line and a caret.
func (e *SyntaxError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: syntax error: %s", e.File, e.Line, e.Col, e.Msg)
	if e.SourceLine != "" {
		src := strings.ReplaceAll(e.SourceLine, "\t", " ")
		col := e.Col
		if col < 1 {
			col = 1
		}
		if col > len(src)+1 {
			col = len(src) + 1
		}
		fmt.Fprintf(&b, "\n    | %s\n    | %s^", src, strings.Repeat(" ", col-1))
	}
	return b.String()
}

// Is reports ErrInvalid as the class of this error.
func (e *SyntaxError) Is(target error) bool { return target == ErrInvalid }

// Syntax turns an error of the TOML decoder on text (from file) into a
// *SyntaxError with the offending line.
func Syntax(file, text string, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &SyntaxError{File: file, Line: 1, Col: 1, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	lines := strings.Split(text, "\n")
	src := ""
	if pe.Position.Line >= 1 && pe.Position.Line <= len(lines) {
		src = strings.TrimRight(lines[pe.Position.Line-1], "\r")
	}
	msg := pe.Message
	if pe.Usage != "" {
		// Usage is a multi-line explanation; its first sentence is enough.
		msg += " (" + strings.TrimSpace(strings.SplitN(strings.TrimSpace(pe.Usage), "\n", 2)[0]) + ")"
	}
	return &SyntaxError{File: file, Line: pe.Position.Line, Col: pe.Position.Col, Msg: msg, SourceLine: src}
}

// typeErrRE matches BurntSushi/toml's type mismatch errors, which carry the
// line and key only in their text.
var typeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): incompatible types: TOML value has type ([^;]+); destination has type (.+)$`)

// tableErrRE matches a scalar given where a table is expected.
var tableErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): type mismatch for .+?: expected table but found (.+)$`)

// rangeErrRE matches integer overflow errors ("... value X is out of range for int8").
var rangeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// typeProblem turns a decode error about a value's type into a Problem.
func typeProblem(err error, idx *Index) (Problem, bool) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		if pe.LastKey == "" {
			return Problem{}, false
		}
		return Problem{Key: pe.LastKey, Line: pe.Position.Line, Msg: pe.Message}, true
	}
	msg := err.Error()
	if m := typeErrRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if line == 0 {
			line = idx.Line(m[2])
		}
		return Problem{Key: m[2], Line: line, Msg: fmt.Sprintf("wrong type: expected %s, got %s", typeWords(m[4]), typeWords(m[3]))}, true
	}
	if m := tableErrRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if line == 0 {
			line = idx.Line(m[2])
		}
		return Problem{Key: m[2], Line: line, Msg: fmt.Sprintf("wrong type: expected a table ([%s] section), got %s", m[2], typeWords(m[3]))}, true
	}
	if m := rangeErrRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if line == 0 {
			line = idx.Line(m[2])
		}
		return Problem{Key: m[2], Line: line, Msg: m[3]}, true
	}
	return Problem{}, false
}

// typeWords describes a type named in a decode error (a Go type or a TOML
// type word) for a technician.
func typeWords(t string) string {
	switch t = strings.ToLower(strings.TrimSpace(t)); {
	case t == "integer", strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "float", strings.HasPrefix(t, "float"):
		return "a number with a fraction"
	case t == "bool", t == "boolean":
		return "a boolean (true or false)"
	case t == "string", strings.Contains(t, "string-like"):
		return "a string"
	case t == "array", strings.HasPrefix(t, "[]"), strings.HasPrefix(t, "slice"):
		return "an array"
	case t == "table", t == "hash", t == "inline table", strings.HasPrefix(t, "map"), t == "struct":
		return "a table"
	case strings.Contains(t, "time"), strings.Contains(t, "datetime"):
		return "a date/time"
	default:
		return t
	}
}

package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// validator collects problems for one file. in() returns a validator for a
// nested table that shares the problem list and prefixes keys.
type validator struct {
	file     string
	index    *keyIndex
	prefix   string
	root     *Config
	problems Problems
	parent   *validator
}

func (v *validator) top() *validator {
	for v.parent != nil {
		v = v.parent
	}
	return v
}

// in returns a validator for the table name below the current one.
func (v *validator) in(name string) *validator {
	return &validator{file: v.file, index: v.index, prefix: v.key(name), root: v.root, parent: v.top()}
}

func (v *validator) key(name string) string {
	if v.prefix == "" {
		return name
	}
	return v.prefix + "." + name
}

// problemAt records a problem for an absolute dotted key.
func (v *validator) problemAt(key, msg string) {
	t := v.top()
	t.problems = append(t.problems, Problem{File: v.file, Line: v.index.line(key), Key: key, Msg: msg})
}

// errorf records a problem for a key relative to this validator's table.
func (v *validator) errorf(name, format string, args ...any) {
	v.problemAt(v.key(name), fmt.Sprintf(format, args...))
}

func (v *validator) intRange(name string, val, lo, hi int, unit string) {
	if val < lo || val > hi {
		v.errorf(name, "%d is out of range; allowed %d to %d%s", val, lo, hi, unitSuffix(unit))
	}
}

func (v *validator) floatRange(name string, val, lo, hi float64, unit string) {
	if val < lo || val > hi {
		v.errorf(name, "%s is out of range; allowed %s to %s%s", fmtFloat(val), fmtFloat(lo), fmtFloat(hi), unitSuffix(unit))
	}
}

func unitSuffix(unit string) string {
	if unit == "" {
		return ""
	}
	return " " + unit
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func (v *validator) oneOf(name, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.errorf(name, "%q is not allowed; use one of %s", val, quoteList(allowed))
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// duration checks that d parsed and lies within [lo, hi].
func (v *validator) duration(name string, d Duration, lo, hi time.Duration) {
	if d.err != nil {
		v.errorf(name, "%q is not a duration; write a number with a unit, e.g. \"250ms\", \"2s\", \"1m\"", d.raw)
		return
	}
	if d.D < lo || d.D > hi {
		v.errorf(name, "%s is out of range; allowed %s to %s", d.D, lo, hi)
	}
}

func (v *validator) required(name, val, hint string) {
	if strings.TrimSpace(val) == "" {
		v.errorf(name, "must not be empty; %s", hint)
	}
}

// existingFile checks that path names a readable regular file.
func (v *validator) existingFile(name, path string) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		v.errorf(name, "%q: %s; expected an existing file", path, statReason(err))
	case st.IsDir():
		v.errorf(name, "%q is a directory; expected a file", path)
	}
}

// existingDir checks that path names a directory.
func (v *validator) existingDir(name, path string) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		v.errorf(name, "%q: %s; expected an existing directory", path, statReason(err))
	case !st.IsDir():
		v.errorf(name, "%q is not a directory", path)
	}
}

func statReason(err error) string {
	switch {
	case os.IsNotExist(err):
		return "no such file or directory"
	case os.IsPermission(err):
		return "permission denied"
	default:
		return err.Error()
	}
}

// hostPort checks a "host:port" listen or dial address.
func (v *validator) hostPort(name, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errorf(name, "%q is not host:port, e.g. \"127.0.0.1:9120\" or \":9120\"", addr)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		v.errorf(name, "%q has port %q; expected a number from 0 to 65535", addr, port)
	}
}

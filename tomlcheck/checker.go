package tomlcheck

import (
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Checker collects the problems of one TOML file, each with its dotted key
// and line. In returns a Checker for a nested table that shares the problem
// list and prefixes keys.
type Checker struct {
	file     string
	index    *Index
	prefix   string
	problems Problems
	parent   *Checker
}

// NewChecker returns an empty Checker for the file name whose keys are
// located with idx (nil: no lines).
func NewChecker(name string, idx *Index) *Checker {
	return &Checker{file: name, index: idx}
}

func (v *Checker) top() *Checker {
	for v.parent != nil {
		v = v.parent
	}
	return v
}

// In returns a Checker for the table name below the current one.
func (v *Checker) In(name string) *Checker {
	return &Checker{file: v.file, index: v.index, prefix: v.key(name), parent: v.top()}
}

func (v *Checker) key(name string) string {
	if v.prefix == "" {
		return name
	}
	return v.prefix + "." + name
}

// ProblemAt records a problem for an absolute dotted key.
func (v *Checker) ProblemAt(key, msg string) {
	t := v.top()
	t.problems = append(t.problems, Problem{File: v.file, Line: v.index.Line(key), Key: key, Msg: msg})
}

// Errorf records a problem for a key relative to this Checker's table.
func (v *Checker) Errorf(name, format string, args ...any) {
	v.ProblemAt(v.key(name), fmt.Sprintf(format, args...))
}

// IntRange checks lo ≤ val ≤ hi; unit is appended to the message.
func (v *Checker) IntRange(name string, val, lo, hi int, unit string) {
	if val < lo || val > hi {
		v.Errorf(name, "%d is out of range; allowed %d to %d%s", val, lo, hi, unitSuffix(unit))
	}
}

// FloatRange checks lo ≤ val ≤ hi; unit is appended to the message.
func (v *Checker) FloatRange(name string, val, lo, hi float64, unit string) {
	if math.IsNaN(val) || math.IsInf(val, 0) {
		v.Errorf(name, "%s is not a finite number; allowed %s to %s%s", fmtFloat(val), fmtFloat(lo), fmtFloat(hi), unitSuffix(unit))
		return
	}
	if val < lo || val > hi {
		v.Errorf(name, "%s is out of range; allowed %s to %s%s", fmtFloat(val), fmtFloat(lo), fmtFloat(hi), unitSuffix(unit))
	}
}

func unitSuffix(unit string) string {
	if unit == "" {
		return ""
	}
	return " " + unit
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// OneOf checks that val is one of allowed.
func (v *Checker) OneOf(name, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.Errorf(name, "%q is not allowed; use one of %s", val, quoteList(allowed))
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// Duration checks that d parsed and lies within [lo, hi].
func (v *Checker) Duration(name string, d Duration, lo, hi time.Duration) {
	if d.err != nil {
		if looksLikeDuration(d.raw) {
			v.Errorf(name, "%q is too long a duration for this field; allowed %s to %s", d.raw, lo, hi)
			return
		}
		v.Errorf(name, "%q is not a duration; write a number with a unit, e.g. \"250ms\", \"2s\", \"1m\"", d.raw)
		return
	}
	if d.D < lo || d.D > hi {
		v.Errorf(name, "%s is out of range; allowed %s to %s", d.D, lo, hi)
	}
}

// Required checks that val is not blank; hint says what to set.
func (v *Checker) Required(name, val, hint string) {
	if strings.TrimSpace(val) == "" {
		v.Errorf(name, "must not be empty; %s", hint)
	}
}

// ExistingFile checks that path names a regular file (a symbolic link to
// one is followed): a directory, a device, a named pipe or a socket is
// refused, naming what it is.
func (v *Checker) ExistingFile(name, path string) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		v.Errorf(name, "%q: %s; expected an existing file", path, statReason(err))
	case !st.Mode().IsRegular():
		v.Errorf(name, "%q is %s; expected a file", path, FileKind(st.Mode()))
	}
}

// ExistingDir checks that path names a directory.
func (v *Checker) ExistingDir(name, path string) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		v.Errorf(name, "%q: %s; expected an existing directory", path, statReason(err))
	case !st.IsDir():
		v.Errorf(name, "%q is not a directory", path)
	}
}

// KernelFilesystems are the directories whose files the kernel makes up:
// nothing a program stores can live below them.
var KernelFilesystems = []string{"/proc", "/sys", "/dev"}

// DataDir checks, without touching the disk, that path can name a
// directory a program keeps its data in: an absolute or relative path that
// is not on a kernel filesystem (/proc, /sys, /dev), where writes vanish,
// fail or reach a device (/dev/null). Whether the directory exists and is
// writable is checked where the file system is looked at (check-config's
// environment checks, the daemon's start).
func (v *Checker) DataDir(name, path string) {
	if fs := OnKernelFilesystem(path); fs != "" {
		v.Errorf(name, "%q is on %s, a kernel filesystem that cannot hold data; use a directory on a disk, e.g. \"/var/lib/inspectd\"", path, fs)
	}
}

// OnKernelFilesystem returns the kernel filesystem (one of
// KernelFilesystems) that the cleaned path lies in, or "".
func OnKernelFilesystem(path string) string {
	if path == "" {
		return ""
	}
	p := filepath.Clean(path)
	for _, k := range KernelFilesystems {
		if p == k || strings.HasPrefix(p, k+"/") {
			return k
		}
	}
	return ""
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

// HostPort checks a "host:port" listen or dial address.
func (v *Checker) HostPort(name, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.Errorf(name, "%q is not host:port, e.g. \"127.0.0.1:9120\" or \":9120\"", addr)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		v.Errorf(name, "%q has port %q; expected a number from 0 to 65535", addr, port)
	}
}

// Problems returns the problems recorded so far, ordered by line.
func (v *Checker) Problems() Problems { return v.top().problems.sorted() }

// Err returns the problems as an error (a Problems value), or nil.
func (v *Checker) Err() error {
	if ps := v.Problems(); len(ps) > 0 {
		return ps
	}
	return nil
}

// looksLikeDuration reports whether s has the shape of a Go duration
// (numbers each followed by a unit) although it did not parse: then it
// overflowed (more than about 292 years).
func looksLikeDuration(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" {
		return false
	}
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		if i == 0 {
			return false
		}
		s = s[i:]
		unit := ""
		for _, u := range []string{"ns", "us", "µs", "μs", "ms", "s", "m", "h"} {
			if strings.HasPrefix(s, u) && len(u) > len(unit) {
				unit = u
			}
		}
		if unit == "" {
			return false
		}
		s = s[len(unit):]
	}
	return true
}

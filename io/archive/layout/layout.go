// Package layout is the on-disk layout of inspectd's image archive (see
// package archive, "Layout"): how the files of an archived result (a set)
// are named, used by the archive to write them, and a Reader that lists,
// loads and opens them without following links or taking a path from its
// caller, for the review view (io/web) and the dataset builder.
//
// It is a package of its own so that readers need not import the archive
// sink (whose tests drive the web server).
package layout

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// Kind is a bit set of the files a set has.
type Kind uint8

// File name suffixes of a set: the frame, the heatmap overlay, the result.
const (
	SuffixFrame   = ".jpg"
	SuffixOverlay = ".overlay.jpg"
	SuffixJSON    = ".json"
)

// The kind bits: which files of a set exist.
const (
	KindFrame Kind = 1 << iota
	KindOverlay
	KindJSON
)

// Name parts: the day directory and the time prefix of a set's base name
// (UTC), and the prefix of temporary files.
const (
	DayLayout  = "2006-01-02"
	TimeLayout = "150405.000"
	TmpPrefix  = ".tmp-"
	maxIDLen   = 64
	maxVerdict = 8
)

// SetName returns the day directory and base name of r's set. The time is
// the verdict time in UTC (now when the result has none).
func SetName(r *inspection.Result, now time.Time) (day, base string) {
	t := r.VerdictTime
	if t.IsZero() {
		t = now
	}
	t = t.UTC()
	return t.Format(DayLayout), t.Format(TimeLayout) + "_" + verdictName(r.Verdict) + "_" + SanitizeID(r.ID)
}

// verdictName returns v as 1 to 8 capital letters.
func verdictName(v inspection.Verdict) string {
	var b strings.Builder
	for _, c := range string(v) {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c >= 'A' && c <= 'Z' && b.Len() < maxVerdict {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "UNKNOWN"
	}
	return b.String()
}

// SanitizeID maps id to at most maxIDLen characters of [A-Za-z0-9_-],
// appending a hash of the original when anything was changed so that
// distinct IDs keep distinct names.
func SanitizeID(id string) string {
	var b strings.Builder
	changed := id == ""
	for _, c := range id {
		if b.Len() >= maxIDLen {
			changed = true
			break
		}
		if c < 0x80 && idChar(byte(c)) {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
			changed = true
		}
	}
	if changed {
		h := fnv.New32a()
		h.Write([]byte(id))
		fmt.Fprintf(&b, "-%08x", h.Sum32())
	}
	return b.String()
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ParseName splits a file name of the archive's pattern into the set's base
// name and the file's kind; ok is false for any other name.
func ParseName(name string) (base string, kind Kind, ok bool) {
	switch {
	case strings.HasSuffix(name, SuffixOverlay):
		base, kind = name[:len(name)-len(SuffixOverlay)], KindOverlay
	case strings.HasSuffix(name, SuffixFrame):
		base, kind = name[:len(name)-len(SuffixFrame)], KindFrame
	case strings.HasSuffix(name, SuffixJSON):
		base, kind = name[:len(name)-len(SuffixJSON)], KindJSON
	default:
		return "", 0, false
	}
	// HHMMSS.mmm_VERDICT_ID
	if len(base) < 14 || base[6] != '.' || base[10] != '_' {
		return "", 0, false
	}
	for i, c := range []byte(base[:10]) {
		if i != 6 && (c < '0' || c > '9') {
			return "", 0, false
		}
	}
	rest := base[11:]
	u := strings.IndexByte(rest, '_')
	if u < 1 || u > maxVerdict {
		return "", 0, false
	}
	for _, c := range []byte(rest[:u]) {
		if c < 'A' || c > 'Z' {
			return "", 0, false
		}
	}
	id := rest[u+1:]
	if id == "" || len(id) > maxIDLen+9 {
		return "", 0, false
	}
	for _, c := range []byte(id) {
		if !idChar(c) {
			return "", 0, false
		}
	}
	return base, kind, true
}

// IsDay reports whether name is a day directory name (a valid date).
func IsDay(name string) bool {
	t, err := time.Parse(DayLayout, name)
	return err == nil && t.Format(DayLayout) == name
}

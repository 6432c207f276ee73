// Package labels keeps the operators' judgements of archived results: an
// append-only, fsynced log of JSON lines beside the archive
// (<archive.dir>/labels.jsonl by default, config.Review.LabelLog), one line
// per change:
//
//	{"time":"2026-12-07T22:41:05.123456789Z","user":"alice","result_id":"st-1-…-000042",
//	 "label":"defect","defect_type":"scratch","previous":"good","previous_defect_type":"",
//	 "station":"st-1","product":"bracket-a","bundle_hash":"sha256:…","note":""}
//
// "good" means the part was fine (a false reject), "defect" a confirmed
// defect of DefectType, "unsure" that the reviewer could not tell. The
// current label of a result is its last line (Current); every earlier line
// stays, so the log is the history of who changed what, when, old → new.
// The archive's own JSON is never rewritten.
//
// Every Append writes one whole line in a single write to a file opened
// O_APPEND and fsyncs it before returning; the directory is fsynced when
// Open creates the file. A crash can leave a torn last line: Open ends it
// with a newline so later lines stay whole, and Read skips every line that
// is not a valid entry with a warning naming the file and line (Skipped
// lists them), so one torn write never hides the rest of the log.
package labels

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/inspectd/inspectd/models/staging"
)

// The labels a result can have.
const (
	Good   = "good"   // the part was fine: a false reject
	Defect = "defect" // a confirmed defect, of Entry.DefectType
	Unsure = "unsure" // the reviewer could not tell
)

// MaxLineBytes is the longest line Read accepts (and Append writes).
const MaxLineBytes = 64 << 10

// MaxNoteBytes is the longest note an entry may carry.
const MaxNoteBytes = 2000

// Entry is one line of the log: one change of one result's label.
type Entry struct {
	// Time is when the label was given (UTC, RFC 3339 with nanoseconds).
	Time time.Time `json:"time"`
	// User is who gave it (web.UserFrom; "local" without authentication).
	User string `json:"user"`
	// ResultID is the archived Result.ID.
	ResultID string `json:"result_id"`
	// Label is Good, Defect or Unsure.
	Label string `json:"label"`
	// DefectType is the kind of defect (from config review.defect_types);
	// required for Defect, empty otherwise.
	DefectType string `json:"defect_type"`
	// Previous and PreviousDefectType are the label this change replaced
	// ("" for the first label of a result).
	Previous           string `json:"previous"`
	PreviousDefectType string `json:"previous_defect_type"`
	// Station, Product and BundleHash are copied from the archived result,
	// so that a reader needs the archive only for the images.
	Station    string `json:"station"`
	Product    string `json:"product"`
	BundleHash string `json:"bundle_hash"`
	// Note is the reviewer's free text (at most MaxNoteBytes).
	Note string `json:"note"`
}

// Check reports what is wrong with e, or nil: a result ID, a user and a
// known label are required, a Defect needs a DefectType and the other
// labels must not have one.
func (e *Entry) Check() error {
	switch {
	case e.ResultID == "":
		return errors.New("result_id is empty")
	case e.User == "":
		return errors.New("user is empty")
	case len(e.Note) > MaxNoteBytes:
		return fmt.Errorf("note is %d bytes; at most %d are kept", len(e.Note), MaxNoteBytes)
	}
	switch e.Label {
	case Defect:
		if e.DefectType == "" {
			return errors.New(`label "defect" needs a defect_type`)
		}
	case Good, Unsure:
		if e.DefectType != "" {
			return fmt.Errorf("label %q takes no defect_type (got %q); only \"defect\" does", e.Label, e.DefectType)
		}
	default:
		return fmt.Errorf("label %q is not known; use %q, %q or %q", e.Label, Good, Defect, Unsure)
	}
	return nil
}

// Log is an open label log. Its methods are safe for concurrent use.
type Log struct {
	path string
	mu   sync.Mutex // serialises Append and Close
	f    *os.File
}

// Open opens the log at path for appending, creating it (mode 0640, the
// directory fsynced) when it does not exist. A symbolic link or anything
// but a regular file at path is refused. When the file ends in a torn line
// (a crash during a write), Open ends that line so that the next entry
// starts on a line of its own; Read skips the torn one.
func Open(path string) (*Log, error) {
	fi, err := os.Lstat(path)
	created := errors.Is(err, fs.ErrNotExist)
	switch {
	case created:
	case err != nil:
		return nil, fmt.Errorf("label log %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("label log %s is not a regular file (%s); refusing to write to it", path, fi.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("label log: %w", err)
	}
	if created {
		if err := staging.SyncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("label log %s: sync directory: %w", path, err)
		}
	} else if err := endTornLine(path, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("label log %s: %w", path, err)
	}
	return &Log{path: path, f: f}, nil
}

// endTornLine appends a newline when the file's last byte is not one.
func endTornLine(path string, w *os.File) error {
	r, err := os.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	fi, err := r.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, fi.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	if _, err := w.Write([]byte{'\n'}); err != nil {
		return fmt.Errorf("end the torn last line: %w", err)
	}
	return w.Sync()
}

// Append checks e (Entry.Check), stamps Time (now, UTC) when it is zero,
// and writes it as one line, fsynced before Append returns.
func (l *Log) Append(e Entry) error {
	if err := e.Check(); err != nil {
		return fmt.Errorf("label log: %w", err)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("label log: encode: %w", err)
	}
	b = append(b, '\n')
	if len(b) > MaxLineBytes {
		return fmt.Errorf("label log: entry is %d bytes; at most %d", len(b), MaxLineBytes)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("label log %s: closed", l.path)
	}
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("label log %s: write: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("label log %s: sync: %w", l.path, err)
	}
	return nil
}

// Close closes the file; a later Append fails. It is safe to call twice.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Skipped is a line Read left out.
type Skipped struct {
	Line   int    // 1-based
	Reason string // why, e.g. "torn last line (no newline)"
}

// Read returns every valid entry of the log at path, in file order. Lines
// that are not valid entries (a torn last line after a crash, or one
// damaged by hand) are skipped, each with a warning on slog's default
// logger naming path:line; ReadDetailed returns them instead.
func Read(path string) ([]Entry, error) {
	entries, skipped, err := ReadDetailed(path)
	if err != nil {
		return nil, err
	}
	log := slog.Default().With("component", "labels")
	for _, s := range skipped {
		log.Warn("label log line skipped", "file", path, "line", s.Line, "reason", s.Reason)
	}
	return entries, nil
}

// ReadDetailed is Read returning the skipped lines instead of logging them.
// A missing file is an error (fs.ErrNotExist).
func ReadDetailed(path string) ([]Entry, []Skipped, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("label log: %w", err)
	}
	defer f.Close()
	entries, skipped, err := Parse(f)
	if err != nil {
		return nil, nil, fmt.Errorf("label log %s: %w", path, err)
	}
	return entries, skipped, nil
}

// Parse reads a label log from r; see Read.
func Parse(r io.Reader) ([]Entry, []Skipped, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		entries []Entry
		skipped []Skipped
	)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		long := false
		for errors.Is(err, bufio.ErrBufferFull) { // drain an over-long line
			long = true
			_, err = br.ReadSlice('\n')
		}
		if len(line) == 0 && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("line %d: %w", n, err)
		}
		torn := errors.Is(err, io.EOF) // no newline: the last line, cut short
		text := bytes.TrimSpace(line)
		switch {
		case long:
			skipped = append(skipped, Skipped{n, fmt.Sprintf("longer than %d bytes", MaxLineBytes)})
		case len(text) == 0:
			// Open's newline after a torn line, or a blank line: nothing.
		default:
			var e Entry
			if derr := json.Unmarshal(text, &e); derr != nil {
				why := "not a JSON entry: " + derr.Error()
				if torn {
					why = "torn last line (no newline): " + derr.Error()
				}
				skipped = append(skipped, Skipped{n, why})
			} else if cerr := e.Check(); cerr != nil {
				skipped = append(skipped, Skipped{n, "invalid entry: " + cerr.Error()})
			} else {
				entries = append(entries, e)
			}
		}
		if torn {
			break
		}
	}
	return entries, skipped, nil
}

// Current returns the current label of every result in entries: its last
// entry in log order. A result whose last entry is absent has no label.
func Current(entries []Entry) map[string]Entry {
	m := make(map[string]Entry, len(entries))
	for _, e := range entries {
		m[e.ResultID] = e
	}
	return m
}

// History returns the entries of one result, in log order.
func History(entries []Entry, resultID string) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.ResultID == resultID {
			out = append(out, e)
		}
	}
	return out
}

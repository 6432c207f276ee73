package relearn

import (
	"fmt"

	"github.com/inspectd/inspectd/io/labels"
)

// LabelEntry is one line of the review view's label log (package
// io/labels): the current label of a result is its last entry.
type LabelEntry = labels.Entry

// ReadLabels reads the label log at path with io/labels. Lines that are
// not valid entries — a torn line left by a crash during an append
// (io/labels.Open ends it with a newline, so it may sit in the middle of
// the log), or one damaged by hand — are left out and described in the
// returned warnings (path:line and why); an append that was never fsynced
// was never acknowledged to the reviewer. A current "defect" label whose
// defect_type cannot name a directory (say "../x") is an error: it would
// put files outside test/.
func ReadLabels(path string) ([]LabelEntry, []string, error) {
	entries, skipped, err := labels.ReadDetailed(path)
	if err != nil {
		return nil, nil, fmt.Errorf("labels: %w", err)
	}
	var warnings []string
	for _, s := range skipped {
		warnings = append(warnings, fmt.Sprintf("%s:%d: line ignored: %s", path, s.Line, s.Reason))
	}
	for _, e := range entries {
		if e.Label == labels.Defect {
			if err := checkDefectType(e.DefectType); err != nil {
				return nil, nil, fmt.Errorf("labels: %s: result %s labelled by %s at %s: %w", path, e.ResultID, e.User, e.Time.Format("2006-01-02T15:04:05Z07:00"), err)
			}
		}
	}
	return entries, warnings, nil
}

// The labels of the label log.
const (
	LabelGood   = labels.Good   // the part was fine: a false reject when the verdict was NG
	LabelDefect = labels.Defect // a confirmed defect, of LabelEntry.DefectType
	LabelUnsure = labels.Unsure // the reviewer could not tell; never used for training
)

// checkDefectType accepts a defect type usable as a directory name:
// 1 to 64 characters of [A-Za-z0-9_-], not "good".
func checkDefectType(t string) error {
	if t == "" {
		return fmt.Errorf("label \"defect\" without defect_type, expected a type such as \"scratch\"")
	}
	if t == "good" {
		return fmt.Errorf("defect_type \"good\" is reserved for defect-free images, expected a defect type")
	}
	if len(t) > 64 {
		return fmt.Errorf("defect_type %q is longer than 64 characters", t)
	}
	for _, c := range []byte(t) {
		if !idChar(c) {
			return fmt.Errorf("defect_type %q has a character outside [A-Za-z0-9_-], expected a name usable as a directory", t)
		}
	}
	return nil
}

// CurrentLabels returns the current label of every result: its last entry.
func CurrentLabels(entries []LabelEntry) map[string]LabelEntry {
	return labels.Current(entries)
}

package config

import (
	"path/filepath"
	"regexp"
)

// Review configures the review view of the status page (io/web): operators
// judge archived results (good = a false reject, defect of a type, unsure)
// and every change is appended to the label log (io/labels). It needs the
// archive (archive.save "ng" or "all"): with archive.save = "none" there
// is nothing to review and check-config reports it.
type Review struct {
	// Enabled serves the review view (/review and /api/review/…, POST
	// /api/labels) when the HTTP server and the archive are on.
	Enabled bool `toml:"enabled"`
	// DefectTypes are the defect types a reviewer chooses from when
	// confirming a defect; they become the test/<type> directories of
	// `inspectd dataset from-archive`. 1 to 32 distinct names of 1 to 32
	// lower-case letters, digits, '_' or '-'.
	DefectTypes []string `toml:"defect_types"`
	// LabelLog is the append-only label log (JSON lines); "" means
	// <archive.dir>/labels.jsonl.
	LabelLog string `toml:"label_log"`
}

// defectTypeRE is what a defect type may be: it names a directory.
var defectTypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

func (r *Review) defaults() {
	*r = Review{Enabled: true, DefectTypes: []string{"scratch", "dent", "stain", "other"}}
}

// resolvePaths runs after the archive's (sections() order), so the
// default label log lies in the resolved archive directory; a relative
// label_log is relative to the configuration file.
func (r *Review) resolvePaths(p pathResolver) { r.LabelLog = p.path(r.LabelLog) }

func (r *Review) validate(v *Checker) {
	if len(r.DefectTypes) == 0 || len(r.DefectTypes) > 32 {
		v.Errorf("defect_types", "has %d entries; list 1 to 32 defect types, e.g. [\"scratch\", \"dent\", \"stain\", \"other\"]", len(r.DefectTypes))
	}
	seen := map[string]bool{}
	for i, t := range r.DefectTypes {
		switch {
		case !defectTypeRE.MatchString(t):
			v.Errorf("defect_types", "entry %d %q is not a valid defect type; use 1 to 32 lower-case letters, digits, '_' or '-', starting with a letter or digit (it names a dataset directory)", i+1, t)
		case seen[t]:
			v.Errorf("defect_types", "entry %d %q is listed twice", i+1, t)
		}
		seen[t] = true
	}
}

// validateReview reports what [review] needs from other sections: the
// archive, whose directory holds what is reviewed.
func (c *Config) validateReview(v *Checker) {
	if c.Review.Enabled && c.HTTP.Enabled && c.Archive.Save == "none" && c.keys.Has("review.enabled") {
		v.In("review").Errorf("enabled", `true needs the archive: set archive.save = "ng" or "all" (with "none" nothing is archived to review), or review.enabled = false`)
	}
}

// LabelLogPath returns the label log's path: label_log, or
// <archive.dir>/labels.jsonl when it is empty.
func (c *Config) LabelLogPath() string {
	if c.Review.LabelLog != "" {
		return c.Review.LabelLog
	}
	if c.Archive.Dir == "" {
		return ""
	}
	return filepath.Join(c.Archive.Dir, "labels.jsonl")
}

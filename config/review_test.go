package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReviewConfig: the [review] rules, with the complete text of each
// problem, and where the label log goes.
func TestReviewConfig(t *testing.T) {
	for _, tc := range []struct {
		name, archive, review string
		want                  []string // none: valid
		log                   string   // label log, relative to the config's directory
	}{
		{"defaults", "", "", nil, "state/archive/labels.jsonl"},
		{"own archive dir", "dir = \"arch\"\n", "", nil, "arch/labels.jsonl"},
		{"own label log", "", "label_log = \"labels/l.jsonl\"\n", nil, "labels/l.jsonl"},
		{"defaults with save none", "save = \"none\"\n", "", nil, "state/archive/labels.jsonl"},
		{"enabled with save none", "save = \"none\"\n", "enabled = true\n", []string{
			`review.enabled: true needs the archive: set archive.save = "ng" or "all" (with "none" nothing is archived to review), or review.enabled = false`}, ""},
		{"disabled with save none", "save = \"none\"\n", "enabled = false\n", nil, "state/archive/labels.jsonl"},
		{"no defect types", "", "defect_types = []\n", []string{
			`review.defect_types: has 0 entries; list 1 to 32 defect types, e.g. ["scratch", "dent", "stain", "other"]`}, ""},
		{"bad and duplicate types", "", "defect_types = [\"scratch\", \"Dent\", \"../x\", \"scratch\"]\n", []string{
			`review.defect_types: entry 2 "Dent" is not a valid defect type; use 1 to 32 lower-case letters, digits, '_' or '-', starting with a letter or digit (it names a dataset directory)`,
			`review.defect_types: entry 3 "../x" is not a valid defect type`,
			`review.defect_types: entry 4 "scratch" is listed twice`}, ""},
		{"unknown key", "", "defect_type = [\"a\"]\n", []string{`review.defect_type`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "bundle"), 0o755)
			name := filepath.Join(dir, "inspectd.toml")
			text := "config_version = 1\nstate_dir = \"state\"\n\n[station]\nid = \"s1\"\n\n[model]\nbundle = \"bundle\"\n\n[archive]\n" +
				tc.archive + "\n[review]\n" + tc.review
			cfg, err := Parse(name, []byte(text))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got, want := cfg.LabelLogPath(), filepath.Join(dir, tc.log); got != want {
					t.Errorf("LabelLogPath = %q, want %q", got, want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error:\n%s\nwant it to contain:\n%s", msg, w)
				}
			}
			if n := strings.Count(msg, ": review."); tc.name != "unknown key" && n != len(tc.want) {
				t.Errorf("%d review problems in:\n%s", n, msg)
			}
		})
	}
}

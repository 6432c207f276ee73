package relearn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeCategory makes a category root with the given train/good files and
// provenance.json text (none when prov is empty).
func writeCategory(t *testing.T, files []string, prov string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "train", "good"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(root, "train", "good", f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if prov != "" {
		if err := os.WriteFile(filepath.Join(root, ProvenanceName), []byte(prov), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReadReviewedGood(t *testing.T) {
	const two = `{"images": [
	  {"file": "train/good/a.png", "source": "label", "verdict": "NG"},
	  {"file": "train/good/b.png", "source": "ok_sample", "verdict": "OK"},
	  {"file": "test/other/c.png", "source": "label", "verdict": "NG"}]}`
	root := writeCategory(t, []string{"a.png", "b.png"}, two)
	got, err := ReadReviewedGood(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rejected) != 1 || filepath.Base(got.Rejected[0]) != "a.png" || len(got.Passed) != 1 || filepath.Base(got.Passed[0]) != "b.png" {
		t.Errorf("split: passed %v, rejected %v; want b.png passed, a.png rejected", got.Passed, got.Rejected)
	}
	if !strings.HasPrefix(got.Passed[0], root) {
		t.Errorf("path %q is not under the category", got.Passed[0])
	}

	for _, tc := range []struct {
		name  string
		files []string
		prov  string
		want  string
	}{
		{"no provenance", []string{"a.png"}, "", "provenance.json not found: the folder was not written by `inspectd dataset from-archive`"},
		{"not JSON", []string{"a.png"}, `{"images": [`, "provenance.json: unexpected EOF"},
		{"unknown key", []string{"a.png"}, `{"imagez": []}`, `provenance.json: json: unknown field "imagez"`},
		{"two objects", []string{"a.png"}, `{"images": []} {}`, "provenance.json: data after the JSON object"},
		{"image added by hand", []string{"a.png", "extra.png"}, `{"images": [{"file": "train/good/a.png", "verdict": "NG"}]}`,
			"extra.png is not in "},
		{"listed image gone", nil, `{"images": [{"file": "train/good/a.png", "verdict": "NG"}]}`, "images[0].file: stat "},
		{"traversal", []string{"a.png"}, `{"images": [{"file": "train/good/../../x.png", "verdict": "NG"}]}`,
			`images[0].file "train/good/../../x.png" is not a file directly in train/good`},
		{"listed twice", []string{"a.png"}, `{"images": [{"file": "train/good/a.png", "verdict": "NG"}, {"file": "train/good/a.png", "verdict": "OK"}]}`,
			`images[1].file "train/good/a.png" is listed twice`},
		{"odd verdict", []string{"a.png"}, `{"images": [{"file": "train/good/a.png", "verdict": "MAYBE"}]}`,
			`images[0].verdict "MAYBE": expected OK, NG or ERROR`},
		{"empty", nil, `{"images": []}`, "holds no good parts (train/good is empty)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadReviewedGood(writeCategory(t, tc.files, tc.prov))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

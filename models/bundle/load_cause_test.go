package bundle

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestLoadErrorsWrapTheirCause: a missing bundle, manifest or listed file
// matches fs.ErrNotExist (and ErrInvalid); a corrupt one matches only
// ErrInvalid, so callers can tell "missing" from "corrupt".
func TestLoadErrorsWrapTheirCause(t *testing.T) {
	for _, tc := range []struct {
		name    string
		break_  func(t *testing.T, dir string)
		missing bool
	}{
		{"missing directory", func(t *testing.T, dir string) { must(t, os.RemoveAll(dir)) }, true},
		{"missing manifest", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, ManifestName))) }, true},
		{"listed file missing", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, AlignGraphName))) }, true},
		{"tampered file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, LocalizeGraphName)
			data, _ := os.ReadFile(p)
			data[len(data)/2] ^= 0xff
			must(t, os.WriteFile(p, data, 0o644))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			writeValid(t, dir)
			tc.break_(t, dir)
			_, err := Load(dir)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tc.missing {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, got, tc.missing)
			}
		})
	}
}

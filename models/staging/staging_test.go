package staging

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheck(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(root, "empty"), 0o755))
	must(os.Mkdir(filepath.Join(root, "full"), 0o755))
	must(os.WriteFile(filepath.Join(root, "full", "x"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "file"), nil, 0o644))
	must(os.Symlink(filepath.Join(root, "empty"), filepath.Join(root, "link")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	cases := []struct{ name, want string }{
		{"missing", ""},
		{"empty", ""},
		{"full", "exists and is not empty"},
		{"file", "exists and is not a directory (a file); choose a new directory"},
		{"fifo", "exists and is not a directory (a named pipe)"},
		{"link", "is a symbolic link"},
	}
	for _, c := range cases {
		err := Check(filepath.Join(root, c.name))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestCommitAndAbort(t *testing.T) {
	root := t.TempDir()
	dst := filepath.Join(root, "out")
	d, err := New(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Path(), "a"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("destination exists before Commit")
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	d.Abort() // no effect after Commit
	if b, err := os.ReadFile(filepath.Join(dst, "a")); err != nil || string(b) != "1" {
		t.Fatalf("after commit: %q %v", b, err)
	}

	// Something appears at the destination while staging: Commit refuses.
	dst2 := filepath.Join(root, "out2")
	d2, err := New(dst2)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dst2, "theirs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d2.Commit(); err == nil {
		t.Fatal("Commit replaced a directory that appeared meanwhile")
	}
	d2.Abort()
	if _, err := os.Stat(filepath.Join(dst2, "theirs")); err != nil {
		t.Fatal("their directory was touched")
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".partial-") {
			t.Errorf("staging directory %s left behind", e.Name())
		}
	}
}

func TestOverlaps(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(src, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		b    string
		want bool
	}{
		{"src", true},
		{"src/sub/new", true},
		{"link", true},
		{"link/new", true},
		{"srcx", false},
		{"other/new", false},
		{".", true}, // src is inside root
	}
	for _, c := range cases {
		got, err := Overlaps(src, filepath.Join(root, c.b))
		if err != nil || got != c.want {
			t.Errorf("Overlaps(src, %s) = %v, %v; want %v", c.b, got, err, c.want)
		}
	}
}

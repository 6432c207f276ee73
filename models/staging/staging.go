// Package staging creates command output directories safely: the
// destination must not exist (or be an empty directory), everything is
// written into a hidden sibling directory, and only a complete result is
// renamed into place. An interrupted or failed command leaves nothing at the
// destination and never touches what it did not create.
package staging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/inspectd/inspectd/tomlcheck"
)

// ErrNotEmpty is wrapped by Check and New when the destination exists and
// holds something.
var ErrNotEmpty = errors.New("exists and is not empty; choose a new directory")

// Dir is a staging directory for one destination.
type Dir struct {
	dst, path string
	done      bool
}

// Check reports whether dst may be created: it must not exist, or be an
// empty directory that is not a symbolic link.
func Check(dst string) error {
	fi, err := os.Lstat(dst)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link; give the real directory", dst)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory (%s); choose a new directory", dst, FileKind(fi.Mode()))
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s %w", dst, ErrNotEmpty)
	}
	return nil
}

// New checks dst and creates its staging directory beside it.
func New(dst string) (*Dir, error) {
	if err := Check(dst); err != nil {
		return nil, err
	}
	clean := filepath.Clean(dst)
	parent := filepath.Dir(clean)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	p, err := os.MkdirTemp(parent, "."+filepath.Base(clean)+".partial-")
	if err != nil {
		return nil, err
	}
	return &Dir{dst: clean, path: p}, nil
}

// Path is where the output is written until Commit.
func (d *Dir) Path() string { return d.path }

// Commit moves the staging directory to the destination. The destination
// is checked again: if something appeared there meanwhile, Commit fails and
// leaves both alone.
func (d *Dir) Commit() error {
	if err := Check(d.dst); err != nil {
		return err
	}
	if fi, err := os.Lstat(d.dst); err == nil && fi.IsDir() {
		// An empty directory the user prepared: replace it.
		if err := os.Remove(d.dst); err != nil {
			return err
		}
	}
	if err := os.Chmod(d.path, 0o755); err != nil {
		return err
	}
	if err := os.Rename(d.path, d.dst); err != nil {
		return err
	}
	d.done = true
	return nil
}

// Abort removes the staging directory unless Commit succeeded. Safe to
// defer.
func (d *Dir) Abort() {
	if d.done || !strings.Contains(filepath.Base(d.path), ".partial-") {
		return
	}
	os.RemoveAll(d.path)
	d.done = true
}

// Overlaps reports whether one of the two directories lies inside the
// other (or they are the same), after resolving symbolic links in the
// existing part of each path.
func Overlaps(a, b string) (bool, error) {
	ra, err := resolve(a)
	if err != nil {
		return false, err
	}
	rb, err := resolve(b)
	if err != nil {
		return false, err
	}
	inside := func(x, y string) bool {
		rel, err := filepath.Rel(y, x)
		return err == nil && (rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))))
	}
	return inside(ra, rb) || inside(rb, ra), nil
}

// resolve returns the absolute path of p with symbolic links resolved in
// its longest existing prefix.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	cur := abs
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// FileKind names what a non-directory path is ("a file", "a named pipe"…),
// for error messages.
func FileKind(m os.FileMode) string { return fileKinds.Name(m) }

var fileKinds = tomlcheck.FileKindNames{
	NamedPipe: "a named pipe", Socket: "a socket", Device: "a device", Regular: "a file", Other: "not a regular file",
}

// SyncDir fsyncs the directory dir, so that the creations, renames and
// removals made in it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteFileSync creates path (which must not exist) with data and perm
// and fsyncs it before closing.
func WriteFileSync(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

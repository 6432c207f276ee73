package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/models/staging"
)

// Write creates the bundle dir from m and files (file name → content),
// filling m.Files with the checksums. It writes into a temporary sibling
// directory, syncs it, and renames it into place, so an interrupted write
// never leaves a half-written bundle at dir. An existing bundle at dir is
// replaced only once the new one is complete.
func Write(dir string, m *Manifest, files map[string][]byte) error {
	m.FormatVersion = FormatVersion
	m.Files = make(map[string]string, len(files))
	names := make([]string, 0, len(files))
	for name, data := range files {
		if !plainName(name) {
			return fmt.Errorf("write bundle %s: %q is not a plain file name", dir, name)
		}
		sum := sha256.Sum256(data)
		m.Files[name] = hex.EncodeToString(sum[:])
		names = append(names, name)
	}
	sort.Strings(names)
	var manifest bytes.Buffer
	manifest.WriteString("# inspectd model bundle manifest. Every file's SHA-256 is listed under [files];\n# the daemon refuses the bundle if any file differs.\n")
	if err := toml.NewEncoder(&manifest).Encode(m); err != nil {
		return fmt.Errorf("write bundle %s: encode manifest: %w", dir, err)
	}
	if _, err := parseManifest(filepath.Join(dir, ManifestName), manifest.Bytes()); err != nil {
		return fmt.Errorf("write bundle: refusing to write an invalid manifest: %w", err)
	}

	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()
	for _, name := range names {
		if err := staging.WriteFileSync(filepath.Join(tmp, name), files[name], 0o644); err != nil {
			return fmt.Errorf("write bundle %s: %w", dir, err)
		}
	}
	if err := staging.WriteFileSync(filepath.Join(tmp, ManifestName), manifest.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if err := Replace(tmp, dir); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	committed = true
	if d, err := os.Open(parent); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ErrNotReplaceable is wrapped by CheckReplaceable and Replace when the
// destination holds something other than a model bundle.
var ErrNotReplaceable = errors.New("not a model bundle; refusing to replace it")

// CheckReplaceable reports whether dir may receive a bundle: it must not
// exist, be an empty directory, or be a directory holding a bundle (a
// manifest.toml). Anything else — a file, a symbolic link, a folder of
// images or configuration — is refused, so that a mistyped --out never
// deletes what inspectd did not write. Commands call it before long work.
func CheckReplaceable(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: %w (write the bundle to a new directory and point the link at it)", dir, ErrNotReplaceable)
	case !fi.IsDir():
		return fmt.Errorf("%s is %s: %w", dir, staging.FileKind(fi.Mode()), ErrNotReplaceable)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if m, err := os.Lstat(filepath.Join(dir, ManifestName)); err == nil && m.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%s is a non-empty directory without %s: %w", dir, ManifestName, ErrNotReplaceable)
}

// Replace moves the complete bundle directory src to dir. dir must pass
// CheckReplaceable. A bundle already at dir is moved aside first and
// removed only once src is in place; if the final rename fails it is put
// back, so dir always holds a whole bundle or nothing new.
func Replace(src, dir string) error {
	if err := CheckReplaceable(dir); err != nil {
		return err
	}
	old := ""
	if _, err := os.Lstat(dir); err == nil {
		old = src + ".old"
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("%s: move the previous bundle aside: %w", dir, err)
		}
	}
	if err := os.Rename(src, dir); err != nil {
		if old != "" {
			if rerr := os.Rename(old, dir); rerr != nil {
				return fmt.Errorf("%s: %w; and putting the previous bundle back from %s failed: %v", dir, err, old, rerr)
			}
		}
		return fmt.Errorf("%s: %w", dir, err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("%s is in place, but removing the previous bundle at %s failed: %w", dir, old, err)
		}
	}
	return nil
}

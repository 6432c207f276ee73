package bundle

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/tomlcheck"
)

// pngClaiming returns a small PNG (a few dozen bytes) whose header claims
// a w×h 8-bit grey image, followed by one short compressed row: decoding it
// would allocate w·h bytes before finding the data missing.
func pngClaiming(t *testing.T, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		buf.Write(n[:])
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		buf.WriteString(typ)
		buf.Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
		buf.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8 // bit depth; colour type 0 (grey), no interlace
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 64))
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return buf.Bytes()
}

// TestLoadRefusesOversizedTemplateWithoutDecoding (issue 24, finding 3): a
// SIGHUP with a bundle whose template.png claims 2,000,000² pixels (its
// checksum updated in the manifest) killed the daemon with out-of-memory.
// Load reads the size from the header and refuses the image, naming the
// file, the claimed size and the expected one, without decoding it.
func TestLoadRefusesOversizedTemplateWithoutDecoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		w, h uint32
	}{
		// 64 MB if decoded: a reverted fix fails here on memory and text.
		{"8000 squared", 8000, 8000},
		// 4 TB if decoded: a reverted fix dies of out-of-memory here.
		{"2000000 squared", 2_000_000, 2_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			writeValid(t, dir)
			data := pngClaiming(t, tc.w, tc.h)
			if len(data) > 200 {
				t.Fatalf("crafted PNG is %d bytes", len(data))
			}
			rewriteFile(t, dir, TemplateName, data)

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Load(dir)
			runtime.ReadMemStats(&after)

			want := "template.png: template is " + itoa(tc.w) + "x" + itoa(tc.h) + ", manifest align size is 32x16 (size read from the png header; refused without decoding it)"
			if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load = %v\nwant an ErrInvalid containing %q", err, want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("Load allocated %d MB refusing the template: it was decoded", alloc>>20)
			}
		})
	}
}

func itoa(n uint32) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

// loadWithin runs Load(dir) and fails the test if it has not returned
// within d (a named pipe blocks a plain read forever).
func loadWithin(t *testing.T, dir string, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(dir)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Load(%s) has not returned after %s: it blocks on a file", dir, d)
		return nil
	}
}

// TestLoadRefusesFilesThatAreNotRegular (issue 24, finding 13): bundle
// files that are symbolic links to devices, named pipes or directories
// are refused before anything is read — /dev/zero would be read until
// memory runs out and a named pipe would block the reload forever. A
// symbolic link to a regular file is followed, as it always was.
func TestLoadRefusesFilesThatAreNotRegular(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"graph is a named pipe", func(t *testing.T, dir string) {
			p := filepath.Join(dir, LocalizeGraphName)
			must(t, os.Remove(p))
			must(t, syscall.Mkfifo(p, 0o644))
		}, "localize.onnx: listed in the manifest but cannot be read: not a regular file: it is a named pipe (FIFO)"},
		{"manifest is a named pipe", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestName)
			must(t, os.Remove(p))
			must(t, syscall.Mkfifo(p, 0o644))
		}, "manifest.toml: not a regular file: it is a named pipe (FIFO)"},
		{"template links to /dev/zero", func(t *testing.T, dir string) {
			p := filepath.Join(dir, TemplateName)
			must(t, os.Remove(p))
			must(t, os.Symlink("/dev/zero", p))
		}, "template.png: listed in the manifest but cannot be read: not a regular file: it is a character device"},
		{"manifest links to /dev/zero", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestName)
			must(t, os.Remove(p))
			must(t, os.Symlink("/dev/zero", p))
		}, "manifest.toml: not a regular file: it is a character device"},
		{"graph is a directory", func(t *testing.T, dir string) {
			p := filepath.Join(dir, AlignGraphName)
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o755))
		}, "align.onnx: listed in the manifest but cannot be read: not a regular file: it is a directory"},
		{"manifest over 1 MiB", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestName)
			raw, err := os.ReadFile(p)
			must(t, err)
			must(t, os.WriteFile(p, append(raw, bytes.Repeat([]byte("# padding\n"), 110_000)...), 0o644))
		}, "manifest.toml: file too large: 1.1 MiB, the limit is 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat("/dev/zero"); err != nil && strings.Contains(tc.name, "/dev/zero") {
				t.Skip("no /dev/zero")
			}
			dir := filepath.Join(t.TempDir(), "bundle")
			writeValid(t, dir)
			tc.break_(t, dir)
			err := loadWithin(t, dir, 10*time.Second)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load = %v\nwant an ErrInvalid containing %q", err, tc.want)
			}
			if strings.Contains(tc.want, "not a regular file") && !errors.Is(err, tomlcheck.ErrNotRegular) {
				t.Errorf("%v does not wrap tomlcheck.ErrNotRegular", err)
			}
		})
	}

	t.Run("links to regular files are followed", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "bundle")
		writeValid(t, dir)
		elsewhere := filepath.Join(root, "elsewhere")
		must(t, os.Mkdir(elsewhere, 0o755))
		for _, name := range []string{ManifestName, LocalizeGraphName, TemplateName} {
			must(t, os.Rename(filepath.Join(dir, name), filepath.Join(elsewhere, name)))
			must(t, os.Symlink(filepath.Join(elsewhere, name), filepath.Join(dir, name)))
		}
		if err := loadWithin(t, dir, 10*time.Second); err != nil {
			t.Fatalf("a bundle of links to regular files: %v", err)
		}
	})
}

// TestLoadMessages (issue 24, finding 15): an empty path printed
// "model bundle: : no such file"; a missing listed file says it is
// missing.
func TestLoadMessages(t *testing.T) {
	_, err := Load("")
	if want := "model bundle: no bundle directory given (the path is empty)"; err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(\"\") = %v, want %q", err, want)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	writeValid(t, dir)
	must(t, os.Remove(filepath.Join(dir, TemplateName)))
	_, err = Load(dir)
	if want := "template.png: listed in the manifest but missing from the bundle directory"; err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load with the template missing = %v, want %q wrapping fs.ErrNotExist", err, want)
	}
}

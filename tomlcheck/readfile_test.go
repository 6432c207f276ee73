package tomlcheck

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadFile (issue 24, finding 13): `check-config -c /dev/zero` grew to
// 22.9 GB and a named pipe blocked it forever. ReadFile refuses anything
// but a regular file before reading, and a file over its limit, with a
// message naming the path, what it is and the limit.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ok.toml")
	if err := os.WriteFile(file, []byte("a = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.toml")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	zeroLink := filepath.Join(dir, "zero.toml")
	if err := os.Symlink("/dev/zero", zeroLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		is         error
	}{
		{file, "", nil},
		{link, "", nil},
		{"/dev/zero", "open /dev/zero: not a regular file: it is a character device", ErrNotRegular},
		{zeroLink, "zero.toml: not a regular file: it is a character device", ErrNotRegular},
		{fifo, "fifo.toml: not a regular file: it is a named pipe (FIFO)", ErrNotRegular},
		{dir, "not a regular file: it is a directory", ErrNotRegular},
		{big, "big.toml: file too large: 2 MiB, the limit is 1 MiB", ErrTooLarge},
		{filepath.Join(dir, "missing.toml"), "open " + filepath.Join(dir, "missing.toml") + ": no such file or directory", fs.ErrNotExist},
	} {
		done := make(chan struct{})
		var (
			data []byte
			err  error
		)
		go func() {
			defer close(done)
			data, err = ReadFile(tc.path, MaxFileBytes)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ReadFile(%s) has not returned after 10 s", tc.path)
		}
		if tc.want == "" {
			if err != nil || string(data) != "a = 1\n" {
				t.Errorf("ReadFile(%s) = %q, %v", tc.path, data, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
			t.Errorf("ReadFile(%s) = %v, want %q wrapping %v", tc.path, err, tc.want, tc.is)
		}
		var pe *fs.PathError
		if err != nil && (!errors.As(err, &pe) || pe.Path != tc.path) {
			t.Errorf("ReadFile(%s): %v is not a *fs.PathError naming the path", tc.path, err)
		}
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{900: "900 bytes", 1024: "1 KiB", 1536: "1.5 KiB", 1 << 20: "1 MiB", 2<<30 - 1: "2.0 GiB", 3 << 30: "3 GiB"} {
		if got := ByteSize(n); got != want {
			t.Errorf("ByteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestFileKindNames: every kind of file gets its own name, or the coarser
// kind's when its own is empty.
func TestFileKindNames(t *testing.T) {
	modes := []struct {
		m                fs.FileMode
		fileKind, coarse string
	}{
		{fs.ModeDir | 0o755, "a directory", "other"},
		{fs.ModeSymlink | 0o777, "a symbolic link", "other"},
		{fs.ModeNamedPipe | 0o644, "a named pipe (FIFO)", "a pipe"},
		{fs.ModeSocket | 0o755, "a socket", "other"},
		{fs.ModeDevice | fs.ModeCharDevice | 0o666, "a character device", "a device"},
		{fs.ModeDevice | 0o660, "a block device", "a device"},
		{0o644, "a regular file", "other"},
		{fs.ModeIrregular, "not a regular file", "other"},
	}
	coarse := FileKindNames{NamedPipe: "a pipe", Device: "a device", Other: "other"}
	for _, tc := range modes {
		if got := FileKind(tc.m); got != tc.fileKind {
			t.Errorf("FileKind(%v) = %q, want %q", tc.m, got, tc.fileKind)
		}
		if got := coarse.Name(tc.m); got != tc.coarse {
			t.Errorf("coarse.Name(%v) = %q, want %q", tc.m, got, tc.coarse)
		}
	}
}

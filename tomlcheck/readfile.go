package tomlcheck

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxFileBytes is the largest TOML file [ReadFile] reads for the files
// people edit by hand (the station configuration, the training recipe, a
// bundle manifest): 1 MiB, some hundred times the largest of them.
const MaxFileBytes = 1 << 20

// ErrNotRegular is wrapped by [ReadFile] when the path is not a regular file
// (a directory, a device such as /dev/zero, a named pipe, a socket).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by [ReadFile] when the file is larger than its limit.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads the regular file at path, of at most limit bytes. A
// symbolic link to a regular file is followed. Anything else is refused
// before a byte is read, naming what it is: /dev/zero would be read
// forever and a named pipe would block until a writer appears. The file is
// opened without blocking (O_NONBLOCK, so that a pipe swapped in after the
// check does not hang) and checked again on the open descriptor, and at
// most limit+1 bytes are read, so a file that grows meanwhile is refused
// too. Every error is an *fs.PathError naming path, wrapping ErrNotRegular,
// ErrTooLarge or the cause (fs.ErrNotExist, fs.ErrPermission).
func ReadFile(path string, limit int64) ([]byte, error) {
	if err := CheckFile(path, limit); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkRegular(path, st, limit); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: it grew past the limit of %s while being read", ErrTooLarge, ByteSize(limit))}
	}
	return data, nil
}

// CheckFile checks, without opening it, what ReadFile needs of path: a
// regular file (or a symbolic link to one) of at most limit bytes. Its
// errors are ReadFile's.
func CheckFile(path string, limit int64) error {
	st, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Op = "open"
		}
		return err
	}
	return checkRegular(path, st, limit)
}

// checkRegular refuses st unless it is a regular file of at most limit bytes.
func checkRegular(path string, st fs.FileInfo, limit int64) error {
	if !st.Mode().IsRegular() {
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: it is %s", ErrNotRegular, FileKind(st.Mode()))}
	}
	if st.Size() > limit {
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: %s, the limit is %s", ErrTooLarge, ByteSize(st.Size()), ByteSize(limit))}
	}
	return nil
}

// FileKind names what a file mode is, for messages: "a directory", "a
// character device", "a named pipe (FIFO)"…
func FileKind(m fs.FileMode) string { return fileKinds.Name(m) }

var fileKinds = FileKindNames{
	Directory: "a directory", Symlink: "a symbolic link", NamedPipe: "a named pipe (FIFO)", Socket: "a socket",
	CharDevice: "a character device", BlockDevice: "a block device", Regular: "a regular file", Other: "not a regular file",
}

// FileKindNames holds the words for each kind of file that
// [FileKindNames.Name] tells apart, so that a package keeps its own
// wording in its messages ([FileKind]'s, or "a device" for either kind of
// device) while the kinds are told apart in one place. A kind whose name
// is empty is named as the coarser kind: a character or block device as
// Device, and then any kind as Other.
type FileKindNames struct {
	Directory, Symlink, NamedPipe, Socket string
	CharDevice, BlockDevice, Device       string
	Regular, Other                        string
}

// Name names what a file of mode m is.
func (n FileKindNames) Name(m fs.FileMode) string {
	var name string
	switch {
	case m.IsDir():
		name = n.Directory
	case m&fs.ModeNamedPipe != 0:
		name = n.NamedPipe
	case m&fs.ModeSocket != 0:
		name = n.Socket
	case m&(fs.ModeCharDevice|fs.ModeDevice) != 0:
		name = n.BlockDevice
		if m&fs.ModeCharDevice != 0 {
			name = n.CharDevice
		}
		if name == "" {
			name = n.Device
		}
	case m&fs.ModeSymlink != 0:
		name = n.Symlink
	case m.IsRegular():
		name = n.Regular
	}
	if name == "" {
		return n.Other
	}
	return name
}

// ByteSize writes n bytes for a person: "1 MiB", "2.5 MiB", "900 bytes".
func ByteSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

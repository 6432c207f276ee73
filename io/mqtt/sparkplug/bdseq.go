package sparkplug

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BdSeqFile is the name of the file that holds the last bdSeq used.
const BdSeqFile = "sparkplug-bdseq"

// BdSeq is the birth/death sequence number, persisted in a directory so
// that it keeps counting across restarts: every MQTT CONNECT carries the
// next value (0–255, wrapping) in its Will (NDEATH), and the NBIRTH of that
// connection repeats it.
type BdSeq struct {
	path string
	last uint64
	have bool
}

// OpenBdSeq reads dir/sparkplug-bdseq (creating dir). A missing file
// starts at 0; an unreadable or corrupt one is an error naming the file.
func OpenBdSeq(dir string) (*BdSeq, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("sparkplug: bdSeq directory: %w", err)
	}
	b := &BdSeq{path: filepath.Join(dir, BdSeqFile)}
	data, err := os.ReadFile(b.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("sparkplug: read bdSeq: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || v > 255 {
		return nil, fmt.Errorf("sparkplug: %s holds %q, not a bdSeq (0..255); delete the file to start again at 0", b.path, truncate(strings.TrimSpace(string(data)), 20))
	}
	b.last, b.have = v, true
	return b, nil
}

// Path is the file's path.
func (b *BdSeq) Path() string { return b.path }

// Next returns the bdSeq for the next MQTT CONNECT (the last one plus 1,
// wrapping after 255; 0 the first time) and persists it (fsync'd) before
// returning. On a write error the value is still returned, with the error.
func (b *BdSeq) Next() (uint64, error) {
	v := uint64(0)
	if b.have {
		v = (b.last + 1) % 256
	}
	b.last, b.have = v, true
	return v, b.write(v)
}

func (b *BdSeq) write(v uint64) error {
	tmp := b.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("sparkplug: persist bdSeq: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(v, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, b.path)
	}
	if err != nil {
		return fmt.Errorf("sparkplug: persist bdSeq: %w", err)
	}
	if d, err := os.Open(filepath.Dir(b.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

package mqtt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"

	"github.com/inspectd/inspectd/tomlcheck"
)

// Outbox verification before bbolt opens the file.
//
// bbolt trusts its file: it memory-maps it and follows page numbers without
// bounds checks, from goroutines of its own. A damaged outbox.db therefore
// does not come back as an error but kills the process, at every start:
// a page whose header names another page panics ("Page expected to be …")
// inside the goroutine bbolt.Open starts to rebuild its freelist (no recover
// can reach it), and a file shorter than its meta page's high-water mark
// is mapped beyond its end, so the first access past the end raises SIGBUS.
//
// verifyOutboxFile reads the file with plain reads (no mmap) and checks
// everything bbolt relies on at open and when it walks the pages, with
// bounds checks of its own: both meta pages as bbolt chooses between them
// (magic, version, checksum, page size), the file size against the
// high-water mark, and every page reachable from the root bucket (page id,
// type, overflow and element bounds, key order, each page referenced once,
// nested and inline buckets) and the freelist page when there is one. It
// never panics on content and never blocks on a special file (the caller
// has checked that the path is a regular file). A file it accepts is one
// bbolt opens and walks without faulting.
//
// Why not bbolt's own Tx.Check: it runs after bbolt.Open, which has already
// walked the file in its goroutine, and Check itself walks it in another.
// Why not a child process that runs bbolt: a library cannot rely on
// re-executing the daemon's binary (tests, other main packages), and a
// child that dies for any other reason (memory limit, a signal during
// shutdown) would get a healthy outbox moved aside and its results lost.
//
// The layout mirrors go.etcd.io/bbolt v1.5.0's file format version 2
// (internal/common: page, meta, element and bucket headers, native byte
// order); TestVerifyOutbox* check it against files written by bbolt and
// against every single-page corruption of one.

// bbolt file format constants (format version 2).
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16 // id u64, flags u16, count u16, overflow u32
	boltElemSize    = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	boltBucketHdr   = 16 // root pgid u64, sequence u64
	boltMetaLen     = 64 // magic … txid (56 bytes), checksum u64
	boltNoFreelist  = math.MaxUint64
	flagBranch      = 0x01
	flagLeaf        = 0x02
	flagMeta        = 0x04
	flagFreelist    = 0x10
	leafFlagBucket  = 0x01
	minBoltPageSize = 1024
	maxBoltPageSize = 1 << 24 // bbolt looks for the second meta page up to 16 MiB
)

// boltMeta is a decoded meta page.
type boltMeta struct {
	pageSize uint32
	root     uint64 // root bucket's root page
	freelist uint64
	pgid     uint64 // high-water mark: pages in use
	txid     uint64
}

// parseMeta decodes and validates the meta page whose page starts at b, as
// bbolt's Meta.Validate does (magic, version, FNV-64a checksum).
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < boltPageHeader+boltMetaLen {
		return boltMeta{}, errors.New("shorter than a meta page")
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaLen]
	ne := binary.NativeEndian
	switch {
	case ne.Uint32(m[0:]) != boltMagic:
		return boltMeta{}, errors.New("not a bbolt meta page (magic)")
	case ne.Uint32(m[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", ne.Uint32(m[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:]) {
		return boltMeta{}, errors.New("meta page checksum mismatch")
	}
	return boltMeta{pageSize: ne.Uint32(m[8:]), root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]),
		pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, nil
}

// boltVerifier walks one bbolt file.
type boltVerifier struct {
	f        io.ReaderAt
	size     int64
	ps       int64 // page size
	hwm      uint64
	seen     []uint64 // bitmap of pages referenced so far
	freelist map[uint64]bool
}

// verifyOutboxFile checks the regular file f of size bytes as described
// above; an error says what is wrong.
func verifyOutboxFile(f io.ReaderAt, size int64) (err error) {
	defer func() {
		// Belt and braces: the checks are bounds-checked, but a panic on
		// this goroutine must still mean "damaged", not a crash.
		if p := recover(); p != nil {
			err = fmt.Errorf("verification failed: %v", p)
		}
	}()
	if size == 0 {
		return errors.New("the file is empty (0 bytes): it was truncated")
	}
	// The page size, as bbolt finds it: from the first meta page, else
	// from a second meta page at 1 KiB << i.
	first := make([]byte, 4096)
	n, _ := f.ReadAt(first, 0)
	m0, err0 := parseMeta(first[:n])
	var ps int64
	if err0 == nil {
		ps = int64(m0.pageSize)
	} else {
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= size-1024 {
				break
			}
			buf := make([]byte, 4096)
			n, _ := f.ReadAt(buf, pos)
			if m, err := parseMeta(buf[:n]); err == nil {
				ps = int64(m.pageSize)
				break
			}
		}
		if ps == 0 {
			return fmt.Errorf("no valid meta page (%v): not a bbolt database, or its header was overwritten", err0)
		}
	}
	if ps < minBoltPageSize || ps > maxBoltPageSize || ps&(ps-1) != 0 {
		return fmt.Errorf("page size %d in the meta page is not a power of two between %d and %d", ps, minBoltPageSize, maxBoltPageSize)
	}
	if size < 2*ps {
		return fmt.Errorf("the file has %d bytes, fewer than its two meta pages (%d bytes): it was truncated", size, 2*ps)
	}
	// Both meta pages at the page size found; bbolt uses the valid one
	// with the higher transaction id.
	metas := [2]boltMeta{}
	errs := [2]error{}
	for i := range 2 {
		buf := make([]byte, boltPageHeader+boltMetaLen)
		if _, err := f.ReadAt(buf, int64(i)*ps); err != nil {
			errs[i] = err
			continue
		}
		metas[i], errs[i] = parseMeta(buf)
	}
	a, b := 0, 1
	if metas[1].txid > metas[0].txid {
		a, b = 1, 0
	}
	var m boltMeta
	switch {
	case errs[a] == nil:
		m = metas[a]
	case errs[b] == nil:
		m = metas[b]
	default:
		return fmt.Errorf("both meta pages are invalid (%v; %v)", errs[0], errs[1])
	}
	if int64(m.pageSize) != ps {
		return fmt.Errorf("meta page says page size %d, but the file's first meta page says %d", m.pageSize, ps)
	}
	switch {
	case m.pgid < 2 || m.pgid > uint64(math.MaxInt64/ps):
		return fmt.Errorf("high-water mark %d pages is impossible", m.pgid)
	case int64(m.pgid)*ps > size:
		return fmt.Errorf("the file has %d bytes but its meta page says %d pages of %d bytes (%d bytes) are in use: it was truncated",
			size, m.pgid, ps, int64(m.pgid)*ps)
	case m.root < 2 || m.root >= m.pgid:
		return fmt.Errorf("root bucket page %d is outside the pages in use (2 to %d)", m.root, m.pgid-1)
	case m.freelist != boltNoFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
		return fmt.Errorf("freelist page %d is outside the pages in use (2 to %d)", m.freelist, m.pgid-1)
	}
	v := &boltVerifier{f: f, size: size, ps: ps, hwm: m.pgid, seen: make([]uint64, (m.pgid+63)/64)}
	v.mark(0)
	v.mark(1)
	if m.freelist != boltNoFreelist {
		if err := v.readFreelist(m.freelist); err != nil {
			return err
		}
	}
	if err := v.tree(m.root, nil, nil, 0); err != nil {
		return err
	}
	for id := range v.freelist {
		if v.marked(id) {
			return fmt.Errorf("page %d is both in use and on the freelist", id)
		}
	}
	return nil
}

func (v *boltVerifier) marked(id uint64) bool { return v.seen[id/64]&(1<<(id%64)) != 0 }
func (v *boltVerifier) mark(id uint64)        { v.seen[id/64] |= 1 << (id % 64) }

// page reads page id with its overflow pages after checking its header:
// the id it names, and that it and its overflow lie below the high-water
// mark. It marks the pages as referenced (an error when one already was).
func (v *boltVerifier) page(id uint64, want ...uint16) ([]byte, error) {
	if id < 2 || id >= v.hwm {
		return nil, fmt.Errorf("a reference to page %d, outside the pages in use (2 to %d)", id, v.hwm-1)
	}
	hdr := make([]byte, boltPageHeader)
	if _, err := v.f.ReadAt(hdr, int64(id)*v.ps); err != nil {
		return nil, fmt.Errorf("page %d: read: %v", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(hdr[0:]); got != id {
		return nil, fmt.Errorf("page %d identifies itself as page %d (overwritten)", id, got)
	}
	flags, overflow := ne.Uint16(hdr[8:]), uint64(ne.Uint32(hdr[12:]))
	ok := false
	for _, w := range want {
		ok = ok || flags == w
	}
	if !ok {
		return nil, fmt.Errorf("page %d has type flags %#x, not those of a %s", id, flags, pageKinds(want))
	}
	if id+overflow >= v.hwm {
		return nil, fmt.Errorf("page %d with %d overflow pages extends beyond the pages in use (%d)", id, overflow, v.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if v.marked(i) {
			return nil, fmt.Errorf("page %d is referenced twice", i)
		}
		v.mark(i)
	}
	buf := make([]byte, int64(overflow+1)*v.ps)
	if _, err := v.f.ReadAt(buf, int64(id)*v.ps); err != nil {
		return nil, fmt.Errorf("page %d: read %d bytes: %v", id, len(buf), err)
	}
	return buf, nil
}

func pageKinds(flags []uint16) string {
	if len(flags) == 1 && flags[0] == flagFreelist {
		return "freelist page"
	}
	return "branch or leaf page"
}

// readFreelist checks a persisted freelist page: its count fits the page,
// every free page lies in use range and appears once.
func (v *boltVerifier) readFreelist(id uint64) error {
	buf, err := v.page(id, flagFreelist)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	ne := binary.NativeEndian
	count, start := uint64(ne.Uint16(buf[10:])), uint64(boltPageHeader)
	if count == 0xFFFF {
		if len(buf) < boltPageHeader+8 {
			return fmt.Errorf("freelist page %d is too short for its count", id)
		}
		count, start = ne.Uint64(buf[boltPageHeader:]), boltPageHeader+8
	}
	if count > (uint64(len(buf))-start)/8 {
		return fmt.Errorf("freelist page %d claims %d free pages, more than it can hold", id, count)
	}
	v.freelist = make(map[uint64]bool, count)
	for i := range count {
		p := ne.Uint64(buf[start+8*i:])
		switch {
		case p < 2 || p >= v.hwm:
			return fmt.Errorf("freelist page %d lists page %d, outside the pages in use (2 to %d)", id, p, v.hwm-1)
		case v.freelist[p]:
			return fmt.Errorf("freelist page %d lists page %d twice", id, p)
		}
		v.freelist[p] = true
	}
	return nil
}

// maxTreeDepth bounds the recursion (B+tree levels and nested buckets
// together); bbolt's trees are a few levels deep.
const maxTreeDepth = 64

// tree checks the subtree rooted at page id: every key in [lo, hi) (nil:
// unbounded), in order, and recurses into child pages and buckets.
func (v *boltVerifier) tree(id uint64, lo, hi []byte, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: the tree is more than %d levels deep", id, maxTreeDepth)
	}
	buf, err := v.page(id, flagBranch, flagLeaf)
	if err != nil {
		return err
	}
	return v.nodes(buf, id, lo, hi, depth)
}

// nodes checks the branch or leaf page in buf (page id, or 0 for an inline
// bucket's page).
func (v *boltVerifier) nodes(buf []byte, id uint64, lo, hi []byte, depth int) error {
	ne := binary.NativeEndian
	where := fmt.Sprintf("page %d", id)
	if id == 0 {
		where = "inline bucket page"
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if boltPageHeader+count*boltElemSize > len(buf) {
		return fmt.Errorf("%s claims %d elements, more than it can hold", where, count)
	}
	branch := flags == flagBranch
	if branch && count == 0 {
		return fmt.Errorf("%s is an empty branch page", where)
	}
	var prev []byte
	for i := range count {
		e := boltPageHeader + i*boltElemSize
		var pos, ksize, vsize uint64
		var eflags uint32
		var child uint64
		if branch {
			pos, ksize, child = uint64(ne.Uint32(buf[e:])), uint64(ne.Uint32(buf[e+4:])), ne.Uint64(buf[e+8:])
		} else {
			eflags = ne.Uint32(buf[e:])
			pos, ksize, vsize = uint64(ne.Uint32(buf[e+4:])), uint64(ne.Uint32(buf[e+8:])), uint64(ne.Uint32(buf[e+12:]))
		}
		start := uint64(e) + pos
		if start+ksize+vsize > uint64(len(buf)) {
			return fmt.Errorf("%s: element %d points beyond the page", where, i)
		}
		key := buf[start : start+ksize]
		switch {
		case i == 0 && lo != nil && bytes.Compare(key, lo) < 0,
			i > 0 && bytes.Compare(key, prev) <= 0,
			hi != nil && bytes.Compare(key, hi) >= 0:
			return fmt.Errorf("%s: keys out of order at element %d", where, i)
		}
		prev = key
		if branch {
			next := hi
			if i+1 < count {
				ne2 := boltPageHeader + (i+1)*boltElemSize
				p2, k2 := uint64(ne.Uint32(buf[ne2:])), uint64(ne.Uint32(buf[ne2+4:]))
				s2 := uint64(ne2) + p2
				if s2+k2 > uint64(len(buf)) {
					return fmt.Errorf("%s: element %d points beyond the page", where, i+1)
				}
				next = buf[s2 : s2+k2]
			}
			if err := v.tree(child, key, next, depth+1); err != nil {
				return err
			}
			continue
		}
		if eflags&leafFlagBucket == 0 {
			continue
		}
		val := buf[start+ksize : start+ksize+vsize]
		if len(val) < boltBucketHdr {
			return fmt.Errorf("%s: bucket %q has a header of %d bytes", where, key, len(val))
		}
		if root := ne.Uint64(val); root != 0 {
			if err := v.tree(root, nil, nil, depth+1); err != nil {
				return fmt.Errorf("bucket %q: %w", key, err)
			}
			continue
		}
		inline := val[boltBucketHdr:]
		if len(inline) < boltPageHeader {
			return fmt.Errorf("%s: inline bucket %q is shorter than a page header", where, key)
		}
		if f := ne.Uint16(inline[8:]); f != flagLeaf {
			return fmt.Errorf("%s: inline bucket %q has page flags %#x, not a leaf's", where, key, f)
		}
		if depth+1 > maxTreeDepth {
			return fmt.Errorf("%s: buckets nested more than %d deep", where, maxTreeDepth)
		}
		if err := v.nodes(inline, 0, nil, nil, depth+1); err != nil {
			return fmt.Errorf("bucket %q: %w", key, err)
		}
	}
	return nil
}

// checkOutboxPath looks at what is at path before bbolt opens it: nothing
// (ok: bbolt creates it), a regular file (verified), or anything else (a
// directory, a link, a device, a FIFO: damaged). It opens the file without
// following a link and without blocking.
func checkOutboxPath(path string) (exists bool, err error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return true, &damageError{fmt.Errorf("it is %s, not a regular file", fileKind(fi.Mode()))}
	}
	return true, nil
}

// damageError marks a verification failure (the file is damaged), as
// opposed to an I/O error reaching it.
type damageError struct{ err error }

func (e *damageError) Error() string { return e.err.Error() }
func (e *damageError) Unwrap() error { return e.err }

// fileKind names what a file that is not the outbox's regular file is.
func fileKind(m os.FileMode) string { return fileKinds.Name(m) }

var fileKinds = tomlcheck.FileKindNames{
	Directory: "a directory", Symlink: "a symbolic link", NamedPipe: "a named pipe", Socket: "a socket",
	Device: "a device", Other: "not a regular file",
}

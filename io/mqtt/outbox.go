package mqtt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OutboxFile is the name of the bbolt database inside the outbox directory.
const OutboxFile = "outbox.db"

// lockTimeout bounds the wait for the outbox's file lock: a second daemon on
// the same outbox fails fast instead of hanging.
const lockTimeout = time.Second

// maxQuarantined bounds the quarantine bucket; the oldest quarantined
// records are removed beyond it.
const maxQuarantined = 1000

var (
	bucketOutbox     = []byte("outbox")
	bucketQuarantine = []byte("quarantine")
)

// kind says which topic an outbox record goes to.
type kind byte

const (
	kindResult kind = 1
	kindEvent  kind = 2
)

func (k kind) String() string {
	switch k {
	case kindResult:
		return "result"
	case kindEvent:
		return "event"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Record encoding: version byte, kind byte, CRC-32 (IEEE, big endian) of the
// payload, payload (JSON).
const (
	recordVersion = 1
	headerLen     = 6
)

func encodeRecord(k kind, payload []byte) []byte {
	b := make([]byte, headerLen+len(payload))
	b[0] = recordVersion
	b[1] = byte(k)
	binary.BigEndian.PutUint32(b[2:6], crc32.ChecksumIEEE(payload))
	copy(b[headerLen:], payload)
	return b
}

func decodeRecord(b []byte) (kind, []byte, error) {
	switch {
	case len(b) < headerLen:
		return 0, nil, fmt.Errorf("record of %d bytes is shorter than its header", len(b))
	case b[0] != recordVersion:
		return 0, nil, fmt.Errorf("unknown record version %d", b[0])
	case kind(b[1]) != kindResult && kind(b[1]) != kindEvent:
		return 0, nil, fmt.Errorf("unknown record kind %d", b[1])
	}
	payload := b[headerLen:]
	if got, want := crc32.ChecksumIEEE(payload), binary.BigEndian.Uint32(b[2:6]); got != want {
		return 0, nil, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return kind(b[1]), payload, nil
}

// record is one decoded outbox entry.
type record struct {
	key     uint64
	kind    kind
	payload []byte
}

// quarantined describes a record moved aside because it could not be
// decoded.
type quarantined struct {
	key    uint64
	reason error
}

// outbox is the durable, bounded, ordered queue of messages not yet
// acknowledged by the broker. Keys are the bucket's persistent sequence
// numbers, so iteration order is append order, also across restarts.
//
// newOutbox allocates it without touching the disk; open opens (and
// locks) the file, close releases it. The counters can be read at any time.
type outbox struct {
	db   *bolt.DB // set by open
	path string
	max  int

	mu sync.Mutex // serialises count updates with their transactions

	// count is the number of records, stored with mu held and read
	// without it (metrics must not wait for a transaction). empty is
	// closed when count reaches 0 (nil while nobody waits).
	sigMu sync.Mutex
	count atomic.Int64
	empty chan struct{}

	dropped     atomic.Uint64 // records removed because the outbox was full
	quarantined atomic.Uint64 // corrupt records moved to the quarantine bucket

	// onCommit, when set (tests), runs inside every transaction that
	// appends records, just before it commits; an error fails the commit
	// (rolled back), as a write error of the disk would.
	onCommit func(tx *bolt.Tx) error
}

// closedChan is a channel that is always closed.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// newOutbox describes the outbox dir/outbox.db holding at most max
// messages; it opens nothing.
func newOutbox(dir string, max int) *outbox {
	return &outbox{path: filepath.Join(dir, OutboxFile), max: max}
}

// openOutbox is newOutbox followed by open.
func openOutbox(dir string, max int) (*outbox, outboxDamage, error) {
	o := newOutbox(dir, max)
	dmg, err := o.open()
	if err != nil {
		return nil, outboxDamage{}, err
	}
	return o, dmg, nil
}

// outboxDamage describes a damaged outbox file that open moved aside; the
// zero value means none was.
type outboxDamage struct {
	// Aside is where the damaged file went (kept for a post-mortem).
	Aside string
	// Reason says what was wrong with it.
	Reason error
}

// errLocked: another process holds the outbox file's lock.
var errLocked = errors.New("locked by another process")

// open opens (creating) the database file. What is at the path is checked
// first, without bbolt and without mapping it (verify.go): a file bbolt
// would crash on (truncated, a page overwritten, empty) or something that
// is not a regular file (a directory, a link, a device) is renamed to
// outbox.db.corrupt-<time> (kept for a post-mortem) and replaced by an
// empty database, so that a damaged file never turns into a crash loop;
// the returned damage says where it went and why. A database locked by
// another process is an error naming the file, and is never touched.
func (o *outbox) open() (outboxDamage, error) {
	dir := filepath.Dir(o.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return outboxDamage{}, fmt.Errorf("outbox: create directory %s: %w", dir, err)
	}
	dmg, err := o.verify()
	if err != nil {
		return outboxDamage{}, err
	}
	if dmg.Aside == "" {
		err = o.openDB()
		var corrupt *corruptError
		if !errors.As(err, &corrupt) {
			return outboxDamage{}, err
		}
		// bbolt refused a file the verification accepted (an error, not
		// a crash): damaged all the same.
		if dmg, err = o.moveAside(corrupt.err); err != nil {
			return outboxDamage{}, err
		}
	}
	if err := o.openDB(); err != nil {
		return outboxDamage{}, err
	}
	return dmg, nil
}

// verify checks what is at the outbox path (see open). It returns the zero
// outboxDamage when there is nothing or a sound database, the damage when
// the file was damaged and has been moved aside, and an error when the
// path cannot be examined or the file is locked by another process.
func (o *outbox) verify() (outboxDamage, error) {
	exists, err := checkOutboxPath(o.path)
	var dmg *damageError
	switch {
	case errors.As(err, &dmg):
		return o.moveAside(dmg)
	case err != nil:
		return outboxDamage{}, fmt.Errorf("outbox %s: %w", o.path, err)
	case !exists:
		return outboxDamage{}, nil
	}
	f, err := openNoFollow(o.path)
	if err != nil {
		return outboxDamage{}, fmt.Errorf("outbox %s: open to verify: %w", o.path, err)
	}
	defer f.Close() // releases the lock
	// The lock bbolt takes: a second daemon must not verify (or move) the
	// file the first one is writing.
	if err := lockFile(f, lockTimeout); err != nil {
		if errors.Is(err, errLocked) {
			return outboxDamage{}, o.inUse()
		}
		return outboxDamage{}, fmt.Errorf("outbox %s: lock: %w", o.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return outboxDamage{}, fmt.Errorf("outbox %s: %w", o.path, err)
	}
	if cur, err := os.Lstat(o.path); err != nil || !os.SameFile(fi, cur) {
		return outboxDamage{}, fmt.Errorf("outbox %s was replaced while it was being verified (by another process?)", o.path)
	}
	if !fi.Mode().IsRegular() {
		return o.moveAside(fmt.Errorf("it is %s, not a regular file", fileKind(fi.Mode())))
	}
	if err := verifyOutboxFile(f, fi.Size()); err != nil {
		return o.moveAside(err)
	}
	return outboxDamage{}, nil
}

// moveAside renames the damaged outbox (damaged because of why) to
// outbox.db.corrupt-<time>.
func (o *outbox) moveAside(why error) (outboxDamage, error) {
	aside := fmt.Sprintf("%s.corrupt-%s", o.path, time.Now().UTC().Format("20060102T150405.000Z"))
	if err := os.Rename(o.path, aside); err != nil {
		return outboxDamage{}, fmt.Errorf("outbox %s is damaged (%v) and could not be moved aside: %w", o.path, why, err)
	}
	return outboxDamage{Aside: aside, Reason: why}, nil
}

func (o *outbox) inUse() error {
	return fmt.Errorf("outbox %s is in use by another process (is a second inspectd running with the same outbox_dir?)", o.path)
}

// corruptError marks a database file bbolt refuses as invalid.
type corruptError struct {
	path string
	err  error
}

func (e *corruptError) Error() string { return fmt.Sprintf("outbox %s is corrupt: %v", e.path, e.err) }

// boltOptions are the options the outbox opens its database with. Every
// commit is fsync'd (NoSync false, the default): a result counts as
// persisted only once it would survive a power cut; outbox_test checks it.
func boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout: lockTimeout,
		// The freelist is rebuilt at open instead of being written on
		// every commit: cheaper commits, same durability of the data.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
}

// openDB opens the database (verified by verify) and makes sure its
// buckets exist.
func (o *outbox) openDB() (err error) {
	path := o.path
	db, err := bolt.Open(path, 0o640, boltOptions())
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return o.inUse()
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return &corruptError{path, err}
	case err != nil:
		return fmt.Errorf("outbox %s: open: %w", path, err)
	}
	defer func() {
		// Our own transaction below runs on this goroutine: a panic in
		// it means the file is unusable, not that the daemon must die.
		if p := recover(); p != nil {
			db.Close()
			err = &corruptError{path, fmt.Errorf("%v", p)}
		}
	}()
	var n int
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOutbox)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketQuarantine); err != nil {
			return err
		}
		n = b.Stats().KeyN
		return nil
	})
	switch {
	case errors.Is(err, bolt.ErrIncompatibleValue):
		// A plain value where a bucket belongs: not our database.
		db.Close()
		return &corruptError{path, err}
	case err != nil:
		db.Close()
		return fmt.Errorf("outbox %s: initialise: %w", path, err)
	}
	o.mu.Lock()
	o.db = db
	o.setCount(n)
	o.mu.Unlock()
	return nil
}

// setCount records the number of records; o.mu is held.
func (o *outbox) setCount(n int) {
	o.sigMu.Lock()
	defer o.sigMu.Unlock()
	o.count.Store(int64(n))
	if n == 0 && o.empty != nil {
		close(o.empty)
		o.empty = nil
	}
}

// whenEmpty returns a channel that is closed once the outbox holds no
// record (already closed when it holds none now).
func (o *outbox) whenEmpty() <-chan struct{} {
	o.sigMu.Lock()
	defer o.sigMu.Unlock()
	if o.count.Load() == 0 {
		return closedChan
	}
	if o.empty == nil {
		o.empty = make(chan struct{})
	}
	return o.empty
}

// item is a message on its way into the outbox.
type item struct {
	kind    kind
	payload []byte
	// done, when not nil (buffered, capacity 1), receives the item's fate
	// from the writer: nil once it is persisted or published, else why it
	// was lost. Deliver sets it while the outbox cannot be written.
	done chan<- error
}

// append stores messages at the end of the outbox in one transaction,
// dropping the oldest records while the outbox holds max messages. It
// returns how many were dropped. The records are durable (fsync'd) when
// append returns.
func (o *outbox) append(items ...item) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := int(o.count.Load())
	dropped := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		n, dropped = int(o.count.Load()), 0
		for _, it := range items {
			for n >= o.max {
				c := b.Cursor()
				key, _ := c.First()
				if key == nil {
					break
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n--
				dropped++
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := b.Put(itob(seq), encodeRecord(it.kind, it.payload)); err != nil {
				return err
			}
			n++
		}
		if o.onCommit != nil {
			return o.onCommit(tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox %s: append: %w", o.path, err)
	}
	o.setCount(n)
	o.dropped.Add(uint64(dropped))
	return dropped, nil
}

// next returns up to n decodable records with keys greater than after, in
// order. Records that cannot be decoded are moved to the quarantine bucket
// and reported in bad.
func (o *outbox) next(after uint64, n int) (recs []record, bad []quarantined, err error) {
	var badRaw [][2][]byte
	err = o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(itob(after + 1)); k != nil && len(recs) < n; k, v = c.Next() {
			if len(k) != 8 {
				badRaw = append(badRaw, [2][]byte{clone(k), clone(v)})
				bad = append(bad, quarantined{reason: fmt.Errorf("key of %d bytes", len(k))})
				continue
			}
			kd, p, derr := decodeRecord(v)
			if derr != nil {
				badRaw = append(badRaw, [2][]byte{clone(k), clone(v)})
				bad = append(bad, quarantined{key: btoi(k), reason: derr})
				continue
			}
			recs = append(recs, record{key: btoi(k), kind: kd, payload: clone(p)})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("outbox %s: read: %w", o.path, err)
	}
	if len(badRaw) > 0 {
		if err := o.quarantine(badRaw); err != nil {
			return recs, bad, err
		}
	}
	return recs, bad, nil
}

// quarantine moves undecodable records out of the outbox so that the
// publisher does not trip over them again after a restart.
func (o *outbox) quarantine(kvs [][2][]byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	removed := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		b, q := tx.Bucket(bucketOutbox), tx.Bucket(bucketQuarantine)
		removed = 0
		for _, kv := range kvs {
			if b.Get(kv[0]) == nil {
				continue
			}
			if err := b.Delete(kv[0]); err != nil {
				return err
			}
			removed++
			seq, err := q.NextSequence()
			if err != nil {
				return err
			}
			// The quarantine key is its own sequence; the value keeps the
			// original key in front of the raw record for a post-mortem.
			if err := q.Put(itob(seq), append(append([]byte{}, kv[0]...), kv[1]...)); err != nil {
				return err
			}
		}
		for q.Stats().KeyN > maxQuarantined {
			c := q.Cursor()
			if k, _ := c.First(); k == nil {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox %s: quarantine: %w", o.path, err)
	}
	o.setCount(int(o.count.Load()) - removed)
	o.quarantined.Add(uint64(removed))
	return nil
}

// remove deletes acknowledged records; keys already gone (dropped while in
// flight) are ignored.
func (o *outbox) remove(keys []uint64) error {
	if len(keys) == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	removed := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		removed = 0
		for _, k := range keys {
			kb := itob(k)
			if b.Get(kb) == nil {
				continue
			}
			if err := b.Delete(kb); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox %s: remove acknowledged: %w", o.path, err)
	}
	o.setCount(int(o.count.Load()) - removed)
	return nil
}

// depth returns the number of messages waiting. It does not wait for a
// transaction.
func (o *outbox) depth() int { return int(o.count.Load()) }

// close closes the database (releasing its file lock); it does nothing
// when open never succeeded.
func (o *outbox) close() error {
	if o.db == nil {
		return nil
	}
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("outbox %s: close: %w", o.path, err)
	}
	return nil
}

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func btoi(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func clone(b []byte) []byte { return append([]byte(nil), b...) }

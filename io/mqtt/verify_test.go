package mqtt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging/logtest"
)

// isolatedEnv names the test a child process runs (see isolated).
const isolatedEnv = "INSPECTD_MQTT_ISOLATED_TEST"

// isolated runs the calling top-level test in a child process (this test
// binary) and reports whether the caller is that child and should run the
// test's body. A damaged outbox used to kill the process — a panic in a
// goroutine bbolt starts, or SIGBUS — which in-process would kill the
// whole test binary; in a child it fails this test with the crash output.
func isolated(t *testing.T) bool {
	t.Helper()
	if os.Getenv(isolatedEnv) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), isolatedEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a child process: %v (a crash fails it too)\n%s", t.Name(), err, tailBytes(out, 6000))
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s did not run in the child process:\n%s", t.Name(), tailBytes(out, 3000))
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "[child] ") {
			t.Log(strings.TrimSpace(line))
		}
	}
	return false
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// writeOutbox writes an outbox with n records of about size bytes each
// (records 1..n), removes the keys in remove, and closes it. It returns the
// database file.
func writeOutbox(t testing.TB, dir string, n, size int, remove ...uint64) string {
	t.Helper()
	o, _, err := openOutbox(dir, n+10)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", max(size-20, 0))
	for i := 0; i < n; i += 100 {
		var items []item
		for j := i; j < min(i+100, n); j++ {
			items = append(items, item{kind: kindResult, payload: fmt.Appendf(nil, `{"i":%d,"p":%q}`, j, pad)})
		}
		if _, err := o.append(items...); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.remove(remove); err != nil {
		t.Fatal(err)
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, OutboxFile)
}

// verifyPath runs verifyOutboxFile on the file at path.
func verifyPath(t testing.TB, path string) error {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return verifyOutboxFile(f, fi.Size())
}

// boltCheck runs bbolt's own consistency check (the reference).
func boltCheck(t testing.TB, path string) error {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

// TestVerifyOutboxAcceptsBboltFiles: every shape of file bbolt writes for
// the outbox passes (and bbolt's own check agrees): new and empty, an
// inline bucket, a multi-level tree, free pages, overflow pages, a
// quarantine bucket, and a persisted freelist (a file written without
// NoFreelistSync).
func TestVerifyOutboxAcceptsBboltFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, dir string) string
	}{
		{"new", func(t *testing.T, dir string) string { return writeOutbox(t, dir, 0, 0) }},
		{"inline bucket", func(t *testing.T, dir string) string { return writeOutbox(t, dir, 3, 50) }},
		{"tree", func(t *testing.T, dir string) string { return writeOutbox(t, dir, 5000, 300) }},
		{"free pages", func(t *testing.T, dir string) string {
			var rm []uint64
			for k := uint64(1); k <= 4000; k++ {
				rm = append(rm, k)
			}
			return writeOutbox(t, dir, 5000, 300, rm...)
		}},
		{"overflow", func(t *testing.T, dir string) string { return writeOutbox(t, dir, 20, 30000) }},
		{"quarantine", func(t *testing.T, dir string) string {
			o, _, err := openOutbox(dir, 100)
			if err != nil {
				t.Fatal(err)
			}
			o.append(payloads(50, 1)...)
			var kvs [][2][]byte
			for k := uint64(1); k <= 20; k++ {
				kvs = append(kvs, [2][]byte{itob(k), []byte("bad record")})
			}
			if err := o.quarantine(kvs); err != nil {
				t.Fatal(err)
			}
			o.close()
			return filepath.Join(dir, OutboxFile)
		}},
		{"persisted freelist", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, OutboxFile)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			for round := range 3 {
				err := db.Update(func(tx *bolt.Tx) error {
					b, err := tx.CreateBucketIfNotExists(bucketOutbox)
					if err != nil {
						return err
					}
					for i := range 500 {
						if err := b.Put(itob(uint64(round*1000+i)), bytes.Repeat([]byte{'v'}, 200)); err != nil {
							return err
						}
					}
					c := b.Cursor()
					for k, _ := c.First(); k != nil && btoi(k) < uint64(round*1000+300); k, _ = c.Next() {
						if err := c.Delete(); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			return path
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.write(t, t.TempDir())
			if err := boltCheck(t, path); err != nil {
				t.Fatalf("bbolt's check: %v", err)
			}
			if err := verifyPath(t, path); err != nil {
				t.Fatalf("a sound file refused: %v", err)
			}
		})
	}
}

// page layout helpers (bbolt format 2, native byte order)
var ne = binary.NativeEndian

// outboxRoot returns the page size and the root page of the outbox bucket
// (0 when the bucket is inline).
func outboxRoot(t testing.TB, path string) (int64, uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var root uint64
	db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket(bucketOutbox).Root())
		return nil
	})
	return int64(db.Info().PageSize), root
}

// patch overwrites len(b) bytes of the file at off.
func patch(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// firstLeaf returns the first leaf page below the branch page root.
func firstLeaf(t testing.TB, path string, ps int64, root uint64) uint64 {
	t.Helper()
	id := root
	for range 10 {
		hdr := readAt(t, path, int64(id)*ps, 32)
		if ne.Uint16(hdr[8:]) == flagLeaf {
			return id
		}
		id = ne.Uint64(hdr[16+8:]) // first branch element's pgid
	}
	t.Fatal("no leaf found")
	return 0
}

// TestVerifyOutboxRefuses: what the verification refuses, with the text
// that says why.
func TestVerifyOutboxRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"empty", func(t *testing.T, path string) { os.Truncate(path, 0) }, "the file is empty (0 bytes): it was truncated"},
		{"truncated to 64 KiB", func(t *testing.T, path string) { os.Truncate(path, 64<<10) }, "bytes) are in use: it was truncated"},
		{"truncated to 68 KiB", func(t *testing.T, path string) { os.Truncate(path, 68<<10) }, "bytes) are in use: it was truncated"},
		{"shorter than two pages", func(t *testing.T, path string) { os.Truncate(path, 5000) }, "fewer than its two meta pages"},
		{"header overwritten", func(t *testing.T, path string) { patch(t, path, 0, bytes.Repeat([]byte("garbage!"), 2048)) }, "no valid meta page"},
		{"root page id", func(t *testing.T, path string) {
			ps, root := outboxRoot(t, path)
			patch(t, path, int64(root)*ps, itob(999999))
		}, "identifies itself as page"},
		{"page type", func(t *testing.T, path string) {
			ps, root := outboxRoot(t, path)
			patch(t, path, int64(root)*ps+8, []byte{0x40, 0})
		}, "has type flags 0x40"},
		{"element count", func(t *testing.T, path string) {
			ps, root := outboxRoot(t, path)
			leaf := firstLeaf(t, path, ps, root)
			patch(t, path, int64(leaf)*ps+10, []byte{0xff, 0x7f})
		}, "elements, more than it can hold"},
		{"element position", func(t *testing.T, path string) {
			ps, root := outboxRoot(t, path)
			leaf := firstLeaf(t, path, ps, root)
			patch(t, path, int64(leaf)*ps+16+4, []byte{0xff, 0xff, 0xff, 0x00})
		}, "points beyond the page"},
		{"key order", func(t *testing.T, path string) {
			ps, root := outboxRoot(t, path)
			leaf := firstLeaf(t, path, ps, root)
			e := readAt(t, path, int64(leaf)*ps+16, 16)
			patch(t, path, int64(leaf)*ps+16+int64(ne.Uint32(e[4:])), []byte{0xff})
		}, "keys out of order"},
		{"child out of range", func(t *testing.T, path string) {
			ps, root := outboxRoot(t, path)
			b := make([]byte, 8)
			ne.PutUint64(b, 1<<40)
			patch(t, path, int64(root)*ps+16+8, b)
		}, "outside the pages in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeOutbox(t, t.TempDir(), 2000, 300)
			tc.damage(t, path)
			err := verifyPath(t, path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestOutboxDamageSweep damages a realistic outbox in every way a page can
// be damaged — each page overwritten with random bytes, with zeros, its
// header flipped; random 4 KiB at unaligned offsets; truncated at every
// page boundary and in the middle of pages — and opens it each time. The
// process must survive every one (it runs in a child process, so a crash
// fails the test): either the outbox opens and every record reads back, or
// the file is moved aside and an empty outbox is opened. A file the
// verification accepts is opened by bbolt itself, so a check it lacks shows
// up here as a crash.
func TestOutboxDamageSweep(t *testing.T) {
	if !isolated(t) {
		return
	}
	master := writeOutbox(t, t.TempDir(), 600, 200, 1, 2, 3, 300, 301)
	orig, err := os.ReadFile(master)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := outboxRoot(t, master)
	// The pages in use and two beyond (the file's tail past the
	// high-water mark is slack bbolt does not read).
	db, err := bolt.Open(master, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var inUse int64
	db.View(func(tx *bolt.Tx) error { inUse = tx.Size(); return nil })
	db.Close()
	pages := min(int64(len(orig))/ps, inUse/ps+2)
	rng := rand.New(rand.NewPCG(1, 2))
	type damage struct {
		name  string
		apply func(b []byte) []byte
	}
	var cases []damage
	for p := int64(0); p < pages; p++ {
		off := p * ps
		cases = append(cases,
			damage{fmt.Sprintf("page %d random", p), func(b []byte) []byte {
				for i := off; i < off+ps; i++ {
					b[i] = byte(rng.Uint32())
				}
				return b
			}},
			damage{fmt.Sprintf("page %d zero", p), func(b []byte) []byte { clear(b[off : off+ps]); return b }},
			damage{fmt.Sprintf("page %d header", p), func(b []byte) []byte {
				for i := off; i < off+16; i++ {
					b[i] ^= 0x5a
				}
				return b
			}},
			damage{fmt.Sprintf("truncated at page %d", p), func(b []byte) []byte { return b[:off] }},
			damage{fmt.Sprintf("truncated in page %d", p), func(b []byte) []byte { return b[:off+ps/2+3] }},
		)
	}
	for i := range 40 {
		off := 2*ps + rng.Int64N(int64(len(orig))-3*ps)
		cases = append(cases, damage{fmt.Sprintf("random 4 KiB at %d (%d)", off, i), func(b []byte) []byte {
			for j := off; j < off+4096 && j < int64(len(b)); j++ {
				b[j] = byte(rng.Uint32())
			}
			return b
		}})
	}
	moved, opened := 0, 0
	for _, tc := range cases {
		dir := t.TempDir()
		path := filepath.Join(dir, OutboxFile)
		if err := os.WriteFile(path, tc.apply(bytes.Clone(orig)), 0o600); err != nil {
			t.Fatal(err)
		}
		o, dmg, err := openOutbox(dir, 10000)
		if err != nil {
			t.Fatalf("%s: open failed (the daemon would not start): %v", tc.name, err)
		}
		if dmg.Aside != "" {
			moved++
			if o.depth() != 0 {
				t.Errorf("%s: moved aside, but the new outbox holds %d records", tc.name, o.depth())
			}
		} else {
			opened++
			// Read everything back through bbolt, as the publisher does.
			var after uint64
			for {
				recs, _, err := o.next(after, 500)
				if err != nil {
					t.Fatalf("%s: read: %v", tc.name, err)
				}
				if len(recs) == 0 {
					break
				}
				after = recs[len(recs)-1].key
			}
			if _, err := o.append(payloads(5, 1)...); err != nil {
				t.Fatalf("%s: append after open: %v", tc.name, err)
			}
		}
		o.close()
	}
	t.Logf("[child] %d damaged files: %d moved aside, %d opened (damage that bbolt does not depend on: a free page, a record's bytes)", len(cases), moved, opened)
	if moved < len(cases)/2 {
		t.Errorf("only %d of %d damaged files were moved aside", moved, len(cases))
	}
}

// TestStartWithDamagedOutbox (issue 24 #1): an outbox truncated to 64 KiB
// (and to 68 KiB, where bbolt's mapping reaches past the end: SIGBUS),
// with 4 KiB of random bytes over a page in use past the header,
// zero-length, or a directory in its place: Start starts with an empty
// outbox, keeps the damaged file aside under a timestamped name, logs and
// queues a critical event naming it, and Problems reports it until an
// operator clears it. Runs in a child process: before the fix the first
// two killed the process.
func TestStartWithDamagedOutbox(t *testing.T) {
	if !isolated(t) {
		return
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		reason string
	}{
		{"truncated to 64 KiB", func(t *testing.T, path string) { os.Truncate(path, 64<<10) }, "it was truncated"},
		{"truncated to 68 KiB", func(t *testing.T, path string) { os.Truncate(path, 68<<10) }, "it was truncated"},
		{"random 4 KiB past the header", func(t *testing.T, path string) {
			ps, root := outboxRoot(t, path)
			leaf := firstLeaf(t, path, ps, root)
			junk := make([]byte, 4096)
			rng := rand.New(rand.NewPCG(7, 7))
			for i := range junk {
				junk[i] = byte(rng.Uint32())
			}
			patch(t, path, int64(leaf)*ps, junk)
		}, "page"},
		{"zero-length", func(t *testing.T, path string) { os.Truncate(path, 0) }, "the file is empty"},
		{"directory", func(t *testing.T, path string) {
			os.Remove(path)
			os.Mkdir(path, 0o750)
		}, "it is a directory, not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeOutbox(t, dir, 2000, 300)
			tc.damage(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			var logs logtest.Buffer
			c, err := New(Options{Config: testConfig(dir), Station: "s1", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			if err := c.Start(context.Background(), nil); err != nil {
				t.Fatalf("a damaged outbox must not stop the daemon: %v", err)
			}
			aside, _ := filepath.Glob(filepath.Join(dir, OutboxFile+".corrupt-*"))
			if len(aside) != 1 {
				t.Fatalf("damaged file not kept aside: %v", aside)
			}
			if fi, err := os.Lstat(aside[0]); err != nil || fi.Size() != before.Size() || fi.IsDir() != before.IsDir() {
				t.Fatalf("the file kept aside is not the damaged one: %v %v", fi, err)
			}
			if !strings.Contains(logs.String(), "outbox was damaged") || !strings.Contains(logs.String(), aside[0]) || !strings.Contains(logs.String(), tc.reason) {
				t.Fatalf("no log line naming the file and why: %s", logs.String())
			}
			if err := c.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			recs, _, _ := c.box.next(0, 10)
			if len(recs) != 1 || recs[0].kind != kindEvent || !bytes.Contains(recs[0].payload, []byte(`"outbox_drop"`)) ||
				!bytes.Contains(recs[0].payload, []byte(`"critical"`)) || !bytes.Contains(recs[0].payload, []byte(filepath.Base(aside[0]))) {
				t.Fatalf("want the one critical outbox_drop event naming the file in the new outbox, got %d records: %v", len(recs), recs)
			}
			if p := c.Problems(); len(p) != 1 || !strings.Contains(p[0], "was damaged") || !strings.Contains(p[0], aside[0]) {
				t.Fatalf("Problems %q, want the damaged outbox", p)
			}
			c.ClearFault()
			if p := c.Problems(); len(p) != 0 {
				t.Fatalf("Problems after ClearFault: %q", p)
			}
			if err := c.Deliver(context.Background(), &inspection.Result{ID: "after"}); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d := c.box.depth(); d != 2 {
				t.Fatalf("new outbox depth %d, want the event and the result", d)
			}
		})
	}
}

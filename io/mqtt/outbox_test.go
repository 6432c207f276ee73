package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging/logtest"
)

func payloads(n int, from int) []item {
	var items []item
	for i := from; i < from+n; i++ {
		items = append(items, item{kind: kindResult, payload: fmt.Appendf(nil, `{"i":%d}`, i)})
	}
	return items
}

func TestOutboxOrderBoundAndReopen(t *testing.T) {
	dir := t.TempDir()
	o, _, err := openOutbox(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := o.append(payloads(3, 1)...)
	if err != nil || dropped != 0 {
		t.Fatalf("append: dropped %d, %v", dropped, err)
	}
	if dropped, err = o.append(payloads(4, 4)...); err != nil || dropped != 2 {
		t.Fatalf("append over the bound: dropped %d (want 2), %v", dropped, err)
	}
	if d := o.depth(); d != 5 {
		t.Fatalf("depth %d, want 5", d)
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	o, _, err = openOutbox(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if d := o.depth(); d != 5 {
		t.Fatalf("depth after reopen %d, want 5", d)
	}
	recs, bad, err := o.next(0, 10)
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	var got []string
	for _, r := range recs {
		got = append(got, string(r.payload))
	}
	want := []string{`{"i":3}`, `{"i":4}`, `{"i":5}`, `{"i":6}`, `{"i":7}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records %v, want %v (oldest dropped, order kept)", got, want)
	}
	if err := o.remove([]uint64{recs[0].key, recs[1].key, 9999}); err != nil {
		t.Fatal(err)
	}
	if d := o.depth(); d != 3 {
		t.Fatalf("depth after remove %d, want 3", d)
	}
	// Sequence numbers keep growing after deletes and reopen: order holds.
	o.append(payloads(1, 8)...)
	recs, _, _ = o.next(recs[1].key, 10)
	if len(recs) != 4 || string(recs[3].payload) != `{"i":8}` {
		t.Fatalf("after remove+append: %d records, last %s", len(recs), recs[len(recs)-1].payload)
	}
}

func TestOutboxCorruptRecordIsQuarantined(t *testing.T) {
	dir := t.TempDir()
	o, _, err := openOutbox(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	o.append(payloads(3, 1)...)
	// Flip a payload byte of the second record behind the outbox's back.
	err = o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		v := clone(b.Get(itob(2)))
		v[len(v)-2] ^= 0xff
		return b.Put(itob(2), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, bad, err := o.next(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || len(bad) != 1 || bad[0].key != 2 || !strings.Contains(bad[0].reason.Error(), "checksum mismatch") {
		t.Fatalf("recs %d, bad %+v", len(recs), bad)
	}
	if o.depth() != 2 || o.quarantined.Load() != 1 {
		t.Fatalf("depth %d quarantined %d", o.depth(), o.quarantined.Load())
	}
	// Gone for good: a restart does not trip over it again.
	o.close()
	o, _, err = openOutbox(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if recs, bad, _ := o.next(0, 10); len(recs) != 2 || len(bad) != 0 {
		t.Fatalf("after reopen: %d records, %d bad", len(recs), len(bad))
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	good := encodeRecord(kindEvent, []byte(`{}`))
	for _, tc := range []struct {
		name string
		rec  []byte
		want string
	}{
		{"short", []byte{1, 1}, "shorter than its header"},
		{"version", append([]byte{9}, good[1:]...), "unknown record version 9"},
		{"kind", append([]byte{1, 7}, good[2:]...), "unknown record kind 7"},
		{"crc", append(clone(good[:headerLen]), '['), "checksum mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeRecord(tc.rec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if k, p, err := decodeRecord(good); err != nil || k != kindEvent || string(p) != "{}" {
		t.Fatal(k, p, err)
	}
}

func testConfig(dir string) config.MQTT {
	cfg := config.Default().MQTT
	cfg.Broker = "tcp://127.0.0.1:1" // nothing listens: Start logs and retries
	cfg.KeepAlive, cfg.ConnectTimeout = config.Dur(time.Second), config.Dur(time.Second)
	cfg.OutboxDir, cfg.OutboxMaxMessages = dir, 100
	return cfg
}

// TestStartRefusesLockedOutbox: New opens nothing, so a second client on
// the same outbox is refused by Start, quickly and naming the file.
func TestStartRefusesLockedOutbox(t *testing.T) {
	dir := t.TempDir()
	c1, err := New(Options{Config: testConfig(dir), Station: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close(context.Background())
	c2, err := New(Options{Config: testConfig(dir), Station: "s1"})
	if err != nil {
		t.Fatalf("a second New on the same outbox: %v (New must not open it)", err)
	}
	defer c2.Close(context.Background())
	if err := c1.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c2.Start(context.Background(), nil)
	want := fmt.Sprintf("outbox %s is in use by another process", filepath.Join(dir, OutboxFile))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s to fail", d)
	}
	if err := c2.Deliver(context.Background(), &inspection.Result{ID: "r1"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Deliver after a failed Start: %v, want ErrClosed", err)
	}
}

func TestStartMovesCorruptOutboxAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, OutboxFile), bytes.Repeat([]byte("garbage!"), 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	c, err := New(Options{Config: testConfig(dir), Station: "s1", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatalf("a corrupt outbox must not stop the daemon (crash loop): %v", err)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, OutboxFile+".corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("corrupt file not kept aside: %v", aside)
	}
	if !strings.Contains(logs.String(), "outbox was damaged") || !strings.Contains(logs.String(), aside[0]) {
		t.Fatalf("no log line naming the file: %s", logs.String())
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The outbox_drop event saying so is queued for the broker.
	recs, _, _ := c.box.next(0, 10)
	if len(recs) != 1 || recs[0].kind != kindEvent || !bytes.Contains(recs[0].payload, []byte(`"outbox_drop"`)) {
		t.Fatalf("want one outbox_drop event queued, got %d records", len(recs))
	}
}

// TestOutboxCommitsAreSynced: every transaction that appends records
// commits with fsync (bbolt's NoSync and NoGrowSync off), so a result
// counted as persisted survives a power cut.
func TestOutboxCommitsAreSynced(t *testing.T) {
	o, _, err := openOutbox(t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	commits := 0
	o.onCommit = func(tx *bolt.Tx) error {
		commits++
		if db := tx.DB(); db.NoSync || db.NoGrowSync {
			t.Errorf("commit %d: NoSync=%v NoGrowSync=%v: records would be committed without fsync", commits, db.NoSync, db.NoGrowSync)
		}
		return nil
	}
	for i := range 3 {
		if _, err := o.append(payloads(2, 2*i)...); err != nil {
			t.Fatal(err)
		}
	}
	if commits != 3 {
		t.Fatalf("%d commits observed for 3 appends", commits)
	}
}

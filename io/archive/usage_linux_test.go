//go:build linux

package archive

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// blocks returns what du counts for the file at p: its allocated
// 512-byte blocks, read here straight from stat(2).
func blocks(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * 512
}

// duTree sums blocks over the regular files under dir.
func duTree(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, f := range files(t, dir) {
		n += blocks(t, filepath.Join(dir, f))
	}
	return n
}

// Issue 24 #15: the budget counts the disk space the files take, as du
// does, not their sizes: on a 4 KiB-block file system a 1-byte file costs
// 4096 bytes and a sparse file only the blocks it holds.
func TestBudgetCountsDiskBlocks(t *testing.T) {
	t.Run("scan", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "archive")
		day := filepath.Join(root, "2026-04-30")
		must(t, os.MkdirAll(day, 0o750))
		tiny := filepath.Join(day, "100000.000_NG_a.json")
		must(t, os.WriteFile(tiny, []byte("x"), 0o640))
		must(t, os.WriteFile(filepath.Join(day, "100001.000_NG_b.json"), []byte("y"), 0o640))
		sparse := filepath.Join(day, "100001.000_NG_b.jpg")
		f, err := os.Create(sparse)
		must(t, err)
		must(t, f.Truncate(8<<20)) // 8 MiB of nothing
		must(t, f.Close())

		e := newEnv(t, func(c *config.Archive) { c.Dir = root })
		want := duTree(t, root)
		if s := e.a.Stats(); s.Bytes != want || s.Deleted != 0 {
			t.Errorf("Stats after the scan = %+v; want %d bytes, what du counts (apparent: %d)", s, want, 2+8<<20)
		}
		if unit := allocUnit(root); unit == 4096 && blocks(t, tiny) == 4096 {
			// The file system of the note: each 1-byte file
			// costs a block, the sparse file none.
			if s := e.a.Stats(); s.Bytes != 2*4096+blocks(t, sparse) {
				t.Errorf("Stats.Bytes = %d on a 4 KiB-block file system; want 8192 for two 1-byte files + %d for the sparse one", s.Bytes, blocks(t, sparse))
			}
		} else {
			t.Logf("file system allocation unit %d, a 1-byte file takes %d: the exact 4096 check is skipped", unit, blocks(t, tiny))
		}
	})
	t.Run("budget", func(t *testing.T) {
		// 300 JSON-only sets of about 800 bytes each are 240 kB of
		// contents but 1.2 MiB of 4 KiB blocks: the 1 MiB budget must
		// hold what du counts.
		e := newEnv(t, func(c *config.Archive) { c.MaxSizeMB = 1 })
		for i := 1; i <= 300; i++ {
			if err := e.a.Deliver(t.Context(), result(i, inspection.Error)); err != nil {
				t.Fatal(err)
			}
		}
		used := duTree(t, e.dir)
		s := e.a.Stats()
		if used > 1<<20 {
			t.Errorf("du of the archive = %d bytes, over the 1 MiB budget (%d sets kept, %d deleted)", used, e.a.idx.len(), s.Deleted)
		}
		if s.Bytes != used {
			t.Errorf("Stats.Bytes = %d; du counts %d", s.Bytes, used)
		}
		if s.Written != 300 || s.Errors != 0 {
			t.Errorf("Stats = %+v; want 300 written, no errors", s)
		}
	})
}

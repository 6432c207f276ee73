//go:build linux

package mqtt

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// TestOutboxFileSizeLimit (issue 24 #7, the kernel's own write error): the
// process's file size limit (RLIMIT_FSIZE, which binds root too) is set to
// the outbox's size, so bbolt's next growth of the file fails with EFBIG
// as a full disk fails a write. With no broker to publish to, every result
// is either persisted or counted as lost, Deliver returns an error for the
// lost ones once the failure is known, and Close reports them. Runs in a
// child process: the limit is process-wide.
func TestOutboxFileSizeLimit(t *testing.T) {
	if !isolated(t) {
		return
	}
	signal.Ignore(syscall.SIGXFSZ) // EFBIG instead of being killed
	c, dir := newTestClient(t)
	c.hooks.retryDelay = time.Millisecond
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, OutboxFile))
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	saved := lim
	lim.Cur = uint64(fi.Size())
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_FSIZE, &saved)
	detail := strings.Repeat("d", 2000)
	deliver := func(i int) error {
		return c.Deliver(context.Background(), &inspection.Result{ID: fmt.Sprint("r", i), Detail: detail})
	}
	// Results accepted before the writer finds the failure are counted,
	// not returned; once it is known, Deliver says so for each result it
	// loses.
	first := -1
	for i := range 1000 {
		if err := deliver(i); err != nil {
			first = i
			break
		}
		if i%10 == 9 {
			// Let the writer reach the disk: without a pause a fast loop
			// only fills the in-memory queue before the first commit.
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.Flush(fctx)
			cancel()
		}
	}
	if first < 0 {
		t.Fatal("1000 results of 2 KB were delivered within the file size limit")
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := c.Stats()
	var errs []error
	for i := first + 1; i < first+11; i++ {
		if err := deliver(i); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	t.Logf("accepted %d, persisted %d, lost %d; of the last 10, %d lost, %d Deliver errors", st.Accepted, st.Persisted, st.ResultsLost,
		st.ResultsLost-before.ResultsLost, len(errs))
	if st.ResultsLost == 0 || st.Persisted+st.ResultsLost != st.Accepted {
		t.Fatalf("accepted %d = persisted %d + lost %d does not hold", st.Accepted, st.Persisted, st.ResultsLost)
	}
	// A nearly full disk may still take a small batch: every result
	// that was lost after the failure became known was an error.
	if n := st.ResultsLost - before.ResultsLost; n == 0 || uint64(len(errs)) != n {
		t.Fatalf("%d results lost after the failure was known, %d Deliver errors: %v", n, len(errs), errs)
	}
	if !strings.Contains(errs[0].Error(), "file too large") || !strings.Contains(errs[0].Error(), "the broker is not connected") {
		t.Fatalf("Deliver error %v: want the kernel's EFBIG", errs[0])
	}
	if !hasProblem(c, "cannot be written since") {
		t.Fatalf("Problems %q", c.Problems())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d results and", st.ResultsLost)) {
		t.Fatalf("Close: %v; want the lost results counted", err)
	}
}

package archive

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/web"
)

// freeze makes the archive's next file write block, as on a frozen
// (fsfreeze) or dead state disk, until the test ends. It returns once a
// Deliver of r is stuck in that write.
func freeze(t *testing.T, e *env, r *inspection.Result) {
	t.Helper()
	inWrite, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.a.writeHook = func(string) error {
		once.Do(func() { close(inWrite) })
		<-release
		return nil
	}
	delivered := make(chan error, 1)
	go func() { delivered <- e.a.Deliver(context.Background(), r) }()
	// Cleanups run last-registered first: the disk thaws before the
	// archive is closed.
	t.Cleanup(func() {
		close(release)
		if err := <-delivered; err != nil {
			t.Errorf("Deliver after the thaw: %v", err)
		}
	})
	<-inWrite
}

// webHost is a healthy daemon for the web server.
type webHost struct{}

func (webHost) Trigger(string, string) error { return nil }
func (webHost) ClearFaults() error           { return errors.New("no output of this station latches faults") }
func (webHost) Status() inspection.Status {
	return inspection.Status{Station: inspection.Station{ID: "st1"}, Healthy: true, Problems: []string{}, Trigger: inspection.TriggerSoftware}
}

// Issue 24 #8: /metrics hung while the state disk was frozen. With the
// archive stuck in a write, every route of the web server — /metrics
// (which collects the archive's series), the status page, the latest
// image, health and the JSON API — still answers, and so do the
// archive's own non-writing methods.
func TestHandlersDoNotWaitForArchiveDisk(t *testing.T) {
	e := newEnv(t, nil)
	r := result(1, inspection.NG)
	r.Snapshot = snapshot()

	reg := prometheus.NewRegistry()
	reg.MustRegister(e.a)
	w, err := web.New(web.Options{Listen: "127.0.0.1:0", History: 10, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context(), webHost{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) }) // after the thaw
	freeze(t, e, r)
	// The daemon delivers the same result, with its snapshot, to every
	// output: the web server renders the latest image from memory.
	if err := w.Deliver(t.Context(), r); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	for _, c := range []struct{ path, want string }{
		{"/metrics", "inspectd_archive_written_total 0"},
		{"/", "st1"},
		{"/healthz", `"status":"ok"`},
		{"/api/status", `"station"`},
		{"/api/results", r.ID},
		{"/api/events", `"count":0`},
		{"/api/latest.jpg", "\xff\xd8"}, // a JPEG
	} {
		resp, err := client.Get("http://" + w.Addr() + c.path)
		if err != nil {
			t.Errorf("GET %s while the archive's disk is frozen: %v", c.path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s: %d, body lacks %q", c.path, resp.StatusCode, c.want)
		}
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.a.Stats()
		_ = e.a.WantsImage(r)
		_ = e.a.Name()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("Stats, WantsImage or Name waited for the frozen write")
	}
}

// Close waits for a write stuck on a frozen disk only as long as its
// ctx allows, then says why; the archive closes once the write returns.
func TestCloseGivesUpOnFrozenDisk(t *testing.T) {
	e := newEnv(t, nil)
	freeze(t, e, result(1, inspection.NG))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- e.a.Close(ctx) }()
	select {
	case err := <-closed:
		want := "archive: close: a write to " + e.dir + " is still blocked: context deadline exceeded"
		if err == nil || err.Error() != want {
			t.Errorf("Close = %v\nwant %s", err, want)
		}
	case <-time.After(5 * time.Second):
		t.Error("Close waited past its ctx for a write blocked on the disk")
	}
}

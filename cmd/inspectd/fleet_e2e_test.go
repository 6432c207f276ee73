package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/rollout"
)

// syncBuffer is a station's log, written by its goroutines and read by
// the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFleetOnRealStation: `inspectd fleet` against a real station (the
// daemon with its MQTT client and rollout store, in this process) on a
// real mosquitto: an install with --activate, a rollback refused with its
// reason, a second install and a rollback to the first — each a table
// line, the station running what the fleet command reported.
func TestFleetOnRealStation(t *testing.T) {
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, aSHA, aSig := signedArchive(t, priv, 2)
	b, bSHA, bSig := signedArchive(t, priv, 3)
	files := map[string][]byte{"/a.tar.gz": a, "/b.tar.gz": b}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()

	dir := t.TempDir()
	if _, err := netdef.WriteRandomBundle(filepath.Join(dir, "bundle"), netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	frames := filepath.Join(dir, "frames")
	os.Mkdir(frames, 0o755)
	var img bytes.Buffer
	png.Encode(&img, image.NewGray(image.Rect(0, 0, 64, 64)))
	os.WriteFile(filepath.Join(frames, "00.png"), img.Bytes(), 0o644)
	cfg := filepath.Join(dir, "inspectd.toml")
	os.WriteFile(cfg, fmt.Appendf(nil, `config_version = 1
state_dir = %q
[station]
id = "fleet-e2e"
[camera]
source = "images"
path = %q
loop = true
fps = 20.0
[trigger]
mode = "software"
[model]
bundle = %q
threads = 1
[mqtt]
enabled = true
broker = %q
stats_interval = "1h"
[archive]
save = "none"
[http]
enabled = false
[rollout]
enabled = true
allow_http = true
trusted_keys = [%q]
`, filepath.Join(dir, "state"), frames, filepath.Join(dir, "bundle"), broker.URL, rollout.FormatPublicKey(priv.Public().(ed25519.PublicKey))), 0o644)

	status := mqtttest.Subscribe(t, broker, mqtttest.SubscriberOptions{Topics: []string{"inspectd/fleet-e2e/status"}})
	ctx, cancel := context.WithCancel(context.Background())
	var out, logs syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "-c", cfg}, &out, &logs) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("station: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the station did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("station log:\n%s", logs.String())
		}
	}()
	status.WaitFor(30*time.Second, "the station online", func(ms []mqtttest.Message) bool {
		return len(ms) > 0 && strings.Contains(string(ms[len(ms)-1].Payload), `"online"`)
	})

	fleet := func(wantCode int, args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI(t, append([]string{"fleet", args[0], "--broker", broker.URL, "--stations", "fleet-e2e", "--timeout", "60s"}, args[1:]...)...)
		if code != wantCode {
			t.Fatalf("fleet %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args[0], code, wantCode, stdout, stderr)
		}
		return stdout
	}
	got := fleet(0, "install", "--url", srv.URL+"/a.tar.gz", "--sha256", aSHA, "--signature", aSig, "--activate", "-v")
	if !strings.Contains(got, "fleet-e2e    ok ") || !strings.Contains(got, "active product random-weights-benchmark") || !strings.Contains(got, "archive "+aSHA[:12]) {
		t.Fatalf("install a:\n%s", got)
	}
	got = fleet(1, "rollback")
	if !strings.Contains(got, "fleet-e2e    FAILED") || !strings.Contains(got, "no previous bundle") {
		t.Fatalf("rollback after the first install:\n%s", got)
	}
	got = fleet(0, "install", "--url", srv.URL+"/b.tar.gz", "--sha256", bSHA, "--signature", bSig)
	if !strings.Contains(got, "ok ") || !strings.Contains(got, "available product") {
		t.Fatalf("install b:\n%s", got)
	}
	got = fleet(0, "activate", "--sha256", bSHA)
	if !strings.Contains(got, "active product") || !strings.Contains(got, "(previous "+aSHA[:12]+")") {
		t.Fatalf("activate b:\n%s", got)
	}
	got = fleet(0, "rollback")
	if !strings.Contains(got, "rolled_back product") || !strings.Contains(got, "archive "+aSHA[:12]) || !strings.Contains(got, "(previous "+bSHA[:12]+")") {
		t.Fatalf("rollback to a:\n%s", got)
	}
	// A signature by a key the station does not trust.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	got = fleet(1, "install", "--url", srv.URL+"/b.tar.gz", "--sha256", bSHA, "--signature", rollout.Sign(other, bSHA))
	if !strings.Contains(got, "FAILED") || !strings.Contains(got, "signature") {
		t.Fatalf("install with an untrusted signature:\n%s", got)
	}
}

package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
)

// notifySocket listens on a unixgram socket like systemd's and records
// every datagram.
type notifySocket struct {
	conn  *net.UnixConn
	mu    sync.Mutex
	lines []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.lines = append(n.lines, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) seen(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, l := range n.lines {
		if strings.HasPrefix(l, prefix) {
			c++
		}
	}
	return c
}

// TestSystemdNotifyProtocol runs the daemon with the real sd_notify client
// against a NOTIFY_SOCKET listener and a 300 ms watchdog: READY=1 after
// start-up, WATCHDOG=1 while frames flow, STOPPING=1 on shutdown.
func TestSystemdNotifyProtocol(t *testing.T) {
	sock := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "300000")
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	if got := (Systemd{}).WatchdogInterval(); got != 300*time.Millisecond {
		t.Fatalf("WatchdogInterval = %s, want 300ms", got)
	}
	cfg := testConfig(t, writeBundle(t, filepath.Join(t.TempDir(), "bundle"), 1), config.TriggerSoftware)
	cam := newFakeCamera(scene(64, 64, 0, 0, 0, 0), 5*time.Millisecond)
	d, err := New(Deps{Config: cfg, Camera: cam, NewEngine: engineFactory(nil), Notifier: Systemd{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for sock.seen("WATCHDOG=1") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if sock.seen("READY=1") != 1 || sock.seen("WATCHDOG=1") < 2 {
		t.Fatalf("after start: %q", sock.lines)
	}
	// A pipeline that stops receiving frames stops petting.
	cam.freeze(true)
	time.Sleep(500 * time.Millisecond) // the period that still saw frames ends
	before := sock.seen("WATCHDOG=1")
	time.Sleep(700 * time.Millisecond)
	if after := sock.seen("WATCHDOG=1"); after != before {
		t.Errorf("%d WATCHDOG=1 while no frame arrived", after-before)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && sock.seen("STOPPING=1") == 0; i++ {
		time.Sleep(10 * time.Millisecond) // the datagram is read asynchronously
	}
	if sock.seen("STOPPING=1") != 1 {
		t.Errorf("no STOPPING=1: %q", sock.lines)
	}
	if sock.seen("STATUS=") == 0 {
		t.Errorf("no STATUS= line: %q", sock.lines)
	}
}

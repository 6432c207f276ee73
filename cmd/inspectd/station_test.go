package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/logging/logtest"
	"github.com/inspectd/inspectd/models/netdef"
)

// stationConfig writes a station with every output that holds something
// (GPIO lines on the simulated chip, the MQTT outbox and its file lock, the
// archive, the HTTP port) over an images replay and a random-weight
// bundle, and returns its path. extra is appended (later tables win).
func stationConfig(t *testing.T, listen string, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := netdef.WriteRandomBundle(filepath.Join(dir, "bundle"), netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	frames := filepath.Join(dir, "frames")
	if err := os.Mkdir(frames, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		img := image.NewRGBA(image.Rect(0, 0, 64, 64))
		for p := range img.Pix {
			img.Pix[p] = uint8(60 + 10*i)
		}
		img.Set(1, 1, color.RGBA{R: 255, A: 255})
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(frames, fmt.Sprintf("%02d.png", i)), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A broker port that refuses connections: the client retries in the
	// background, which its Close must stop.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadBroker := ln.Addr().String()
	ln.Close()
	text := fmt.Sprintf(`config_version = 1
state_dir = %q
[station]
id = "station-test"
[camera]
source = "images"
path = %q
loop = true
[trigger]
mode = "free_run"
[model]
bundle = %q
threads = 1
[gpio]
enabled = true
chip = "sim"
reject_line = "reject"
ready_line = "ready"
reject_polarity = "energise_to_reject"
reject_delay = "50ms"
[mqtt]
enabled = true
broker = "tcp://%s"
[archive]
save = "all"
[http]
enabled = true
listen = %q
`, filepath.Join(dir, "state"), frames, filepath.Join(dir, "bundle"), deadBroker, listen)
	path := filepath.Join(dir, "inspectd.toml")
	if err := os.WriteFile(path, []byte(text+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// settledGoroutines waits up to 5 s for the goroutine count to fall to at
// most n and returns the last count.
func settledGoroutines(n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStartFailureLeavesNothing: when an output cannot start (the HTTP port
// is taken), run fails naming the file, line and key, and everything the
// outputs had started (MQTT's reconnect loop and outbox, the archive, the
// GPIO scheduler) is stopped and released: no goroutine is left, and the
// same configuration then runs (the outbox's file lock was released).
func TestStartFailureLeavesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := stationConfig(t, busy.Addr().String(), "")
	before := runtime.NumGoroutine()
	code, _, stderr := runCLI(t, "run", "-c", cfg)
	if code != 1 || !strings.Contains(stderr, cfg+":") || !strings.Contains(stderr, "http.listen") || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 naming %s:<line>: http.listen and the busy address", code, stderr, cfg)
	}
	if got := settledGoroutines(before + 1); got > before+1 {
		var dump bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Fatalf("%d goroutines before the run, %d after it failed: the outputs were not all stopped\n%s", before, got, dump.String())
	}
	busy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err = run(ctx, []string{"run", "-c", cfg, "--max-parts", "3"}, &out, &errb)
	if code := exitCode(err, &errb); code != 0 {
		t.Fatalf("the same configuration after the failure: exit %d\n%s", code, errb.String())
	}
}

// TestModelVerifiedBeforeOutputs: a corrupt bundle fails the start before
// any output is opened — with energise_to_reject, the GPIO reject line is
// never driven (the simulated chip records no output change at all).
func TestModelVerifiedBeforeOutputs(t *testing.T) {
	cfg := stationConfig(t, "127.0.0.1:0", "")
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "bundle", "localize.onnx"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "run", "-c", cfg, "--print")
	if code != 1 || !strings.Contains(stderr, "localize.onnx") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 naming localize.onnx", code, stderr)
	}
	if strings.Contains(stdout, "gpio") {
		t.Errorf("GPIO lines were driven before the model was verified:\n%s", stdout)
	}
}

// TestStateDirLocked: a second daemon on the same state_dir is refused,
// naming the key and the running daemon's PID — also with MQTT (whose
// outbox has a lock of its own) off.
func TestStateDirLocked(t *testing.T) {
	cfg := stationConfig(t, "127.0.0.1:0", "")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "[mqtt]\nenabled = true", "[mqtt]\nenabled = false", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	errb := &logtest.Buffer{}
	go func() { done <- run(ctx, []string{"run", "-c", cfg}, &out, errb) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(errb.String(), "inspection started") {
		if time.Now().After(deadline) {
			t.Fatalf("the first daemon did not start:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, _, stderr := runCLI(t, "run", "-c", cfg)
	want := fmt.Sprintf("state_dir: %s is in use by another inspectd (pid %d)", filepath.Join(filepath.Dir(cfg), "state"), os.Getpid())
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("second daemon: exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first daemon: %v\n%s", err, errb.String())
	}
}

// TestRunRefusesWhatCheckConfigRefuses: run verifies this machine as
// check-config does, before it opens anything: a GPIO chip that is not one
// is refused with file:line and key, and no GPIO line is driven.
func TestRunRefusesWhatCheckConfigRefuses(t *testing.T) {
	cfg := stationConfig(t, "127.0.0.1:0", "")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), `chip = "sim"`, `chip = "/dev/null"`, 1)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "run", "-c", cfg, "--print")
	if code != 1 || !strings.Contains(stderr, cfg+":") || !strings.Contains(stderr, `gpio.chip: "/dev/null"`) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 naming %s:<line>: gpio.chip", code, stderr, cfg)
	}
	if strings.Contains(stdout, "gpio") {
		t.Errorf("GPIO lines were driven:\n%s", stdout)
	}
}

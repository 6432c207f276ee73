//go:build matprofile

package camera

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/inspectd/inspectd/inspection"
)

// TestNoMatLeaks runs every source kind through many frames, replay ends,
// loops, a killed and a frozen RTSP server, then checks that no gocv.Mat
// is left open. Run with: go test -tags matprofile -run TestNoMatLeaks ./camera
func TestNoMatLeaks(t *testing.T) {
	base := gocv.MatProfile.Count()
	dir := t.TempDir()
	writePNGs(t, dir, 5, 32, 24)
	avi := filepath.Join(t.TempDir(), "clip.avi")
	writeAVI(t, avi, 10, 64, 48, 50)
	if n := gocv.MatProfile.Count(); n != base {
		t.Fatalf("fixtures left %d Mats", n-base)
	}

	drain := func(cam *Camera, frames int) {
		var last time.Time
		for range frames {
			f := next(t, cam, last, 3*time.Second)
			last = f.Time
			f.Release()
		}
	}
	{
		cfg := testConfig("images")
		cfg.Path, cfg.Loop = dir, true
		cam, _ := startCamera(t, cfg)
		drain(cam, 50)
		cam.Close()
	}
	{
		// Hostile files: refused from their header, undecodable, or past
		// max_pixels; none may leave the Mat of a failed decode open.
		hostile := t.TempDir()
		writePNGs(t, hostile, 2, 16, 16)
		truncated := encodePNG(t, 64, 64, 3, true)
		writeFile(t, filepath.Join(hostile, "000a.png"), truncated[:len(truncated)/2])
		writeFile(t, filepath.Join(hostile, "000b.png"), pngClaiming(t, 100000, 100000))
		writeFile(t, filepath.Join(hostile, "000c.bmp"), bmpClaiming(1, -2_000_000_000))
		writeFile(t, filepath.Join(hostile, "000d.png"), nil)
		cfg := testConfig("images")
		cfg.Path, cfg.Loop = hostile, true
		cam, _ := startCamera(t, cfg)
		drain(cam, 20)
		if n := cam.Skipped(); n < 4*9 {
			t.Errorf("skipped %d files in 10 passes, want ≥36", n)
		}
		cam.Close()
	}
	{
		cfg := testConfig("file")
		cfg.Path, cfg.Loop, cfg.FPS = avi, true, 500
		cam, _ := startCamera(t, cfg)
		drain(cam, 40) // several loops, each reopening the file
		cam.Close()
	}
	{
		cfg := testConfig("gstreamer")
		cfg.Pipeline = testPattern
		cam, _ := startCamera(t, cfg)
		drain(cam, 30)
		cam.Close()
	}
	{
		srv := startRTSPServer(t, freePort(t))
		cfg := testConfig("rtsp")
		cfg.URL = srv.url()
		cfg.OpenTimeout.D = 2 * time.Second
		cam, _ := startCamera(t, cfg)
		drain(cam, 10)
		srv.kill()
		waitState(t, cam, inspection.CameraReconnecting, 3*time.Second)
		srv.start()
		waitState(t, cam, inspection.CameraOnline, 15*time.Second)
		drain(cam, 10)
		srv.signal(syscall.SIGSTOP)
		waitState(t, cam, inspection.CameraReconnecting, 3*time.Second)
		srv.signal(syscall.SIGCONT)
		waitState(t, cam, inspection.CameraOnline, 15*time.Second)
		drain(cam, 10)
		if st := cam.Stats(); st.Reconnects < 2 {
			t.Errorf("stats %+v, want ≥2 reconnects", st)
		}
		cam.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for gocv.MatProfile.Count() != base && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // abandoned reads finish late
	}
	if n := gocv.MatProfile.Count() - base; n != 0 {
		var b bytes.Buffer
		_ = gocv.MatProfile.WriteTo(&b, 1)
		t.Fatalf("%d Mats left open:\n%s", n, b.String())
	}
}

//go:build unix

package web

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "write the status page screenshot to docs/status-page.png")

// screenshotPath is where -update writes the screenshot, for the README.
const screenshotPath = "../../docs/status-page.png"

// findChromium returns the first headless-capable browser on PATH.
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// requireChromium returns the headless browser to drive: the test is
// skipped under INSPECTD_SKIP_BROWSER=1 and fails when none is installed
// (CI installs one). what names the check in the skip message.
func requireChromium(t *testing.T, what string) string {
	t.Helper()
	if os.Getenv("INSPECTD_SKIP_BROWSER") == "1" {
		t.Skip("INSPECTD_SKIP_BROWSER=1: skipping the headless-browser check of " + what)
	}
	bin := findChromium()
	if bin == "" {
		t.Fatal("chromium is not installed (no chromium, chromium-browser or google-chrome on PATH): " +
			"`make deps` installs it (CI installs it); set INSPECTD_SKIP_BROWSER=1 to skip this check")
	}
	return bin
}

// TestStatusPageInBrowser loads the status page with realistic fake data
// in headless Chromium: the screenshot must be a non-blank page in the
// page's colours (so the inline stylesheet passed the CSP), and the DOM
// after the script ran must hold the station and the results (so the
// script passed the CSP and the JSON API feeds it).
func TestStatusPageInBrowser(t *testing.T) {
	bin := requireChromium(t, "the status page")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s, _ := newTestServer(t, Options{}, nil)
	feedStation(t, s, time.Now())
	url := "http://" + s.Addr() + "/"
	dir := t.TempDir()

	// run starts the browser in its own process group with its own
	// profile and kills the whole group when ctx ends (Chromium can hang,
	// and leaves helpers behind when only its main process dies).
	nrun := 0
	run := func(args ...string) []byte {
		t.Helper()
		nrun++
		base := []string{
			"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--no-default-browser-check", "--disable-extensions",
			"--hide-scrollbars", "--mute-audio", "--virtual-time-budget=3000",
			fmt.Sprintf("--user-data-dir=%s", filepath.Join(dir, fmt.Sprintf("profile%d", nrun))),
		}
		cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stray helpers
		}
		if ctx.Err() != nil {
			t.Fatalf("%s did not finish within 60 s: %v\nstderr:\n%s", bin, ctx.Err(), tail(stderr.String()))
		}
		if err != nil {
			t.Fatalf("%s %s: %v\nstderr:\n%s", bin, strings.Join(args, " "), err, tail(stderr.String()))
		}
		return stdout.Bytes()
	}

	// The DOM after the script has polled the API.
	dom := string(run("--dump-dom", url))
	for _, want := range []string{
		`<span id="st-id" class="st-id">st-042</span>`,
		`<td>P4421890</td>`,                 // newest result row
		`<span class="vtag v-NG">NG</span>`, // an NG row
		`<span class="vtag v-ERROR">ERROR</span>`,
		`camera_timeout: no frame within 2s`,
		`disk budget reached`,
		`archive over budget`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %s", want)
		}
	}
	if strings.Contains(dom, `<span id="updated">at load</span>`) {
		t.Error("the page's script did not update the page (blocked by the CSP, or the API failed)")
	}
	if !strings.Contains(dom, `id="conn" class="banner conn" hidden`) {
		t.Error("the connection-lost banner shows")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", tail(dom))
	}

	// A station with a latched GPIO fault (issue 24 #6): the script
	// renders the faults of the results it polls and keeps the banner
	// with the clear-fault button.
	const fault = "GPIO fault latched (FIFO overflow): every part is rejected physically whatever its verdict says"
	fc := &fakeControl{status: fakeStatus(time.Now())}
	fc.status.Healthy, fc.status.Problems = false, []string{fault}
	fs, _ := newTestServer(t, Options{}, fc)
	feedStation(t, fs, time.Now())
	fr := fakeResult(20000, time.Now(), "OK")
	fr.Faults = []string{fault}
	_ = fs.Deliver(context.Background(), fr)
	fdom := string(run("--dump-dom", "http://"+fs.Addr()+"/"))
	for _, want := range []string{
		`<tr class="faulted"><td>`,
		`<div class="err">output fault: ` + fault + `</div>`,
		`<div id="last-faults" class="faults">output fault at this verdict`,
		`<li>` + fault + `</li>`,
		`<form id="clear-fault" class="clear-fault" method="post" action="/api/clear-fault">`,
	} {
		if !strings.Contains(fdom, want) {
			t.Errorf("faulted station: DOM lacks %s", want)
		}
	}
	if strings.Contains(fdom, `<span id="updated">at load</span>`) {
		t.Error("faulted station: the page's script did not update the page (it failed on the faults?)")
	}

	shot := filepath.Join(dir, "status.png")
	run("--window-size=1280,900", "--screenshot="+shot, url)
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if sz := img.Bounds().Size(); sz != image.Pt(1280, 900) {
		t.Errorf("screenshot is %v, want 1280×900", sz)
	}
	stats := pixelStats(img)
	if stats.stddev < 20 {
		t.Errorf("screenshot looks blank: luma standard deviation %.1f", stats.stddev)
	}
	// The verdict and count colours show, so the stylesheet applied.
	if stats.green < 2000 || stats.red < 300 {
		t.Errorf("screenshot has %d OK-green and %d NG-red pixels; the stylesheet did not apply?", stats.green, stats.red)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(screenshotPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(screenshotPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", screenshotPath)
	}
}

// shotStats summarises a screenshot.
type shotStats struct {
	stddev     float64 // of luma
	green, red int     // pixels near the OK and NG colours
}

func pixelStats(img image.Image) shotStats {
	var st shotStats
	var sum, sum2 float64
	b := img.Bounds()
	n := float64(b.Dx() * b.Dy())
	near := func(r, g, bl, R, G, B int) bool { return abs(r-R)+abs(g-G)+abs(bl-B) < 40 }
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			ri, gi, bi := int(r>>8), int(g>>8), int(bl>>8)
			l := 0.299*float64(ri) + 0.587*float64(gi) + 0.114*float64(bi)
			sum, sum2 = sum+l, sum2+l*l
			if near(ri, gi, bi, 0x1e, 0x9e, 0x3e) {
				st.green++
			}
			if near(ri, gi, bi, 0xd6, 0x28, 0x28) {
				st.red++
			}
		}
	}
	mean := sum / n
	st.stddev = math.Sqrt(max(0, sum2/n-mean*mean))
	return st
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// tail returns the last 3000 bytes of s.
func tail(s string) string {
	if len(s) > 3000 {
		return "…" + s[len(s)-3000:]
	}
	return s
}

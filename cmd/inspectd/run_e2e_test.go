//go:build workstation

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// e2e holds what the end-to-end tests share: the inspectd binary and a
// small bundle trained on synthetic plates.
type e2e struct {
	bin, bundle, synth string
}

var (
	e2eOnce sync.Once
	e2eEnv  e2e
	e2eErr  error
)

// setupE2E builds the workstation binary and trains a tiny bundle (align
// "none", 64×64, a few seconds) once per test binary.
func setupE2E(t *testing.T) e2e {
	t.Helper()
	e2eOnce.Do(func() {
		dir, err := os.MkdirTemp("", "inspectd-e2e-")
		if err != nil {
			e2eErr = err
			return
		}
		e2eEnv.bin = filepath.Join(dir, "inspectd")
		if out, err := exec.Command("go", "build", "-tags", "workstation", "-o", e2eEnv.bin, ".").CombinedOutput(); err != nil {
			e2eErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		e2eEnv.synth = filepath.Join(dir, "synth")
		if out, err := exec.Command(e2eEnv.bin, "dataset", "synth", "--dst", e2eEnv.synth, "--objects", "plate", "--size", "96",
			"--train", "24", "--test-good", "6", "--test-per-defect", "0", "--max-rotation", "0", "--max-shift", "0", "--seed", "3").CombinedOutput(); err != nil {
			e2eErr = fmt.Errorf("dataset synth: %v\n%s", err, out)
			return
		}
		recipe := filepath.Join(dir, "recipe.toml")
		if err := os.WriteFile(recipe, []byte("recipe_version = 1\nproduct = \"e2e-plate\"\nholdout_fraction = 0.2\n[input]\nheight = 64\nwidth = 64\n[align]\nmethod = \"none\"\n[memory]\nd = 32\nentries = 8\nradius = 0\n"), 0o644); err != nil {
			e2eErr = err
			return
		}
		e2eEnv.bundle = filepath.Join(dir, "bundle")
		if out, err := exec.Command(e2eEnv.bin, "train", "--good", filepath.Join(e2eEnv.synth, "plate", "train", "good"),
			"--out", e2eEnv.bundle, "--recipe", recipe, "--quiet").CombinedOutput(); err != nil {
			e2eErr = fmt.Errorf("train: %v\n%s", err, out)
		}
	})
	if e2eErr != nil {
		t.Fatal(e2eErr)
	}
	return e2eEnv
}

// daemonProc is a running `inspectd run`.
type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *lineBuffer
	stderr *lineBuffer
	done   chan error
}

// lineBuffer collects a process's output for assertions.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startDaemon(t *testing.T, bin string, args ...string) *daemonProc {
	t.Helper()
	p := &daemonProc{t: t, stdout: &lineBuffer{}, stderr: &lineBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"run"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("inspectd stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// wait returns the exit error within d.
func (p *daemonProc) wait(d time.Duration) error {
	p.t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(d):
		p.t.Fatalf("inspectd did not exit within %s\nstderr:\n%s", d, p.stderr.String())
		return nil
	}
}

// printed parses the --print lines: part ID → fields.
func printedLines(out string) [][]string {
	var rows [][]string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && (f[1] == "OK" || f[1] == "NG" || f[1] == "ERROR") {
			rows = append(rows, f)
		}
	}
	return rows
}

// archivedResults reads every result the archive wrote.
func archivedResults(t *testing.T, dir string) []inspection.Result {
	t.Helper()
	var out []inspection.Result
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r inspection.Result
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// TestRunReplayEndToEnd: a replay of good and defective synthetic plates
// through `inspectd run` with a real bundle and ONNX Runtime: one result per
// part, defective parts NG with a region on the painted defect, good parts
// OK, and exit 0 after --max-parts with every output flushed.
func TestRunReplayEndToEnd(t *testing.T) {
	env := setupE2E(t)
	dir, replay, goods := goodReplay(t, env, 6)
	type part struct {
		defect image.Rectangle // empty for a good part
	}
	var parts []part
	for i, g := range goods {
		img := loadPNG(t, g)
		writePNG(t, filepath.Join(replay, fmt.Sprintf("%02d_good.png", 2*i)), img)
		parts = append(parts, part{})
		// The same plate with a dark scratch-like blotch painted on it:
		// the mask is exactly the painted rectangle.
		b := img.Bounds()
		def := image.Rect(b.Dx()/3+i, b.Dy()/3, b.Dx()/3+i+20, b.Dy()/3+14)
		bad := image.NewRGBA(b)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := img.At(x, y)
				if (image.Point{x, y}).In(def) {
					c = color.RGBA{R: 10, G: 200, B: 240, A: 255}
				}
				bad.Set(x, y, c)
			}
		}
		writePNG(t, filepath.Join(replay, fmt.Sprintf("%02d_defect.png", 2*i+1)), bad)
		parts = append(parts, part{defect: def})
	}
	archive := filepath.Join(dir, "archive")
	cfg := writeRunConfig(t, dir, env.bundle, fmt.Sprintf(`[camera]
source = "images"
path = %q
[trigger]
mode = "free_run"
[archive]
save = "all"
dir = %q
`, replay, archive))

	p := startDaemon(t, env.bin, "-c", cfg, "--max-parts", fmt.Sprint(len(parts)), "--print")
	if err := p.wait(60 * time.Second); err != nil {
		t.Fatalf("inspectd run: %v\nstderr:\n%s", err, p.stderr.String())
	}
	rows := printedLines(p.stdout.String())
	if len(rows) != len(parts) {
		t.Fatalf("%d printed results for %d parts:\n%s", len(rows), len(parts), p.stdout.String())
	}
	res := archivedResults(t, archive)
	if len(res) != len(parts) {
		t.Fatalf("%d archived results for %d parts", len(res), len(parts))
	}
	for _, r := range res {
		i := int(r.FrameSeq) - 1 // images are replayed once each, in name order
		if i < 0 || i >= len(parts) {
			t.Fatalf("result for frame %d", r.FrameSeq)
		}
		pt := parts[i]
		if pt.defect.Empty() {
			if r.Verdict != inspection.OK {
				t.Errorf("good part (frame %d): %s %s score %.3f threshold %.3f", r.FrameSeq, r.Verdict, r.Reason, r.Score, r.Threshold)
			}
			continue
		}
		if r.Verdict != inspection.NG {
			t.Errorf("defective part (frame %d): %s %s score %.3f threshold %.3f", r.FrameSeq, r.Verdict, r.Reason, r.Score, r.Threshold)
			continue
		}
		hit := false
		for _, reg := range r.Regions {
			if image.Rect(reg.X, reg.Y, reg.X+reg.Width, reg.Y+reg.Height).Overlaps(pt.defect) {
				hit = true
			}
		}
		if !hit {
			t.Errorf("defective part (frame %d): no region overlaps the painted defect %v: %+v", r.FrameSeq, pt.defect, r.Regions)
		}
	}
	if !strings.Contains(p.stdout.String(), fmt.Sprintf("%d parts: %d OK, %d NG, 0 ERROR", len(parts), len(parts)/2, len(parts)/2)) {
		t.Errorf("summary line missing or wrong:\n%s", p.stdout.String())
	}
}

// TestRunLiveSourceFreezeReloadAndTerm: software triggers over HTTP against
// a live RTSP camera: a source frozen mid-stream gives ERROR verdicts within
// trigger.timeout and inspection recovers after it resumes; SIGHUP with a
// corrupt bundle keeps the running model; SIGTERM with parts in flight
// gives each its result and exits 0.
func TestRunLiveSourceFreezeReloadAndTerm(t *testing.T) {
	env := setupE2E(t)
	if _, err := exec.LookPath("/usr/bin/python3"); err != nil {
		t.Fatal("no /usr/bin/python3: run make deps")
	}
	dir := t.TempDir()
	rtspPort, httpPort := freePort(t), freePort(t)
	server := startRTSP(t, rtspPort)

	bundleLink := filepath.Join(dir, "bundle")
	copyDir(t, env.bundle, bundleLink)
	cfg := writeRunConfig(t, dir, bundleLink, fmt.Sprintf(`[camera]
source = "rtsp"
url = "rtsp://127.0.0.1:%d/test"
read_timeout = "500ms"
open_timeout = "10s"
[trigger]
mode = "software"
timeout = "1s"
[http]
enabled = true
listen = "127.0.0.1:%d"
`, rtspPort, httpPort))
	p := startDaemon(t, env.bin, "-c", cfg, "--print")
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitFor(t, 20*time.Second, "the daemon to report a healthy camera", func() bool {
		var st inspection.Status
		return getJSON(base+"/api/status", &st) == nil && st.Camera.State == inspection.CameraOnline
	})
	trigger := func(id string) {
		t.Helper()
		resp, err := http.Post(base+"/api/trigger", "application/json", strings.NewReader(fmt.Sprintf(`{"part_id":%q}`, id)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("trigger %s: %d %s", id, resp.StatusCode, body)
		}
	}
	resultOf := func(id string) []string {
		for _, r := range printedLines(p.stdout.String()) {
			if r[0] == id {
				return r
			}
		}
		return nil
	}
	waitResult := func(id string) []string {
		t.Helper()
		var r []string
		waitFor(t, 10*time.Second, "the result of "+id, func() bool { r = resultOf(id); return r != nil })
		return r
	}

	trigger("live-1")
	if r := waitResult("live-1"); r[1] == "ERROR" {
		t.Fatalf("live part: %v", r)
	}

	// Freeze the camera server (like a pulled cable: the socket stays open).
	if err := server.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	frozenAt := time.Now()
	trigger("frozen-1")
	trigger("frozen-2")
	for _, id := range []string{"frozen-1", "frozen-2"} {
		r := waitResult(id)
		if r[1] != "ERROR" || !strings.Contains(strings.Join(r, " "), "camera_timeout") {
			t.Errorf("%s while the camera was frozen: %v", id, r)
		}
	}
	if d := time.Since(frozenAt); d > 3*time.Second {
		t.Errorf("ERROR verdicts took %s with trigger.timeout 1s", d)
	}
	if err := server.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the camera to come back", func() bool {
		var st inspection.Status
		return getJSON(base+"/api/status", &st) == nil && st.Camera.State == inspection.CameraOnline
	})
	trigger("recovered-1")
	if r := waitResult("recovered-1"); r[1] == "ERROR" {
		t.Errorf("after recovery: %v", r)
	}

	// Metrics and health after the outage.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`inspectd_parts_total{product="e2e-plate",reason="camera_timeout",verdict="ERROR"} 2`,
		`inspectd_camera_state{state="online"} 1`,
		"inspectd_archive_written_total",
		`inspectd_stage_duration_seconds_count{stage="localize"}`,
		"inspectd_build_info{",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz after recovery: %v %v", resp.StatusCode, err)
	}

	// SIGHUP with a corrupt bundle: the old model keeps running.
	var before inspection.Status
	if err := getJSON(base+"/api/status", &before); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundleLink, "localize.onnx"), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload to fail", func() bool {
		return strings.Contains(p.stderr.String(), "reload failed")
	})
	var after inspection.Status
	if err := getJSON(base+"/api/status", &after); err != nil {
		t.Fatal(err)
	}
	if after.Model.BundleHash != before.Model.BundleHash || !strings.Contains(p.stderr.String(), "localize.onnx") {
		t.Errorf("after a failed reload: model %s (was %s); log names localize.onnx: %v", after.Model.BundleHash, before.Model.BundleHash, strings.Contains(p.stderr.String(), "localize.onnx"))
	}
	trigger("after-reload")
	if r := waitResult("after-reload"); r[1] == "ERROR" {
		t.Errorf("after the failed reload: %v", r)
	}

	// SIGTERM with parts in flight: each gets a result, exit 0.
	for i := range 5 {
		trigger(fmt.Sprintf("term-%d", i))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	for i := range 5 {
		if resultOf(fmt.Sprintf("term-%d", i)) == nil {
			t.Errorf("part term-%d has no result after SIGTERM", i)
		}
	}
	rows := printedLines(p.stdout.String())
	if want := 10; len(rows) != want {
		t.Errorf("%d results for %d triggers", len(rows), want)
	}
}

// goodReplay makes a temporary directory with an empty "replay" folder in
// it and returns both with the synthetic plates' good test images (at
// least want of them), for a test to lay out its replay.
func goodReplay(t *testing.T, env e2e, want int) (dir, replay string, goods []string) {
	t.Helper()
	dir = t.TempDir()
	replay = filepath.Join(dir, "replay")
	if err := os.Mkdir(replay, 0o755); err != nil {
		t.Fatal(err)
	}
	goods, _ = filepath.Glob(filepath.Join(env.synth, "plate", "test", "good", "*.png"))
	if len(goods) < want {
		t.Fatalf("%d good test images of the synthetic plates, want at least %d", len(goods), want)
	}
	return dir, replay, goods
}

func writeRunConfig(t *testing.T, dir, bundleDir, extra string) string {
	t.Helper()
	text := fmt.Sprintf(`config_version = 1
state_dir = %q
[station]
id = "e2e"
[model]
bundle = %q
[mqtt]
enabled = false
[http]
enabled = false
`, filepath.Join(dir, "state"), bundleDir)
	// Later tables override: drop the default [http] when extra sets it.
	if strings.Contains(extra, "[http]") {
		text = strings.Replace(text, "[http]\nenabled = false\n", "", 1)
	}
	path := filepath.Join(dir, "inspectd.toml")
	if err := os.WriteFile(path, []byte(text+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func getJSON(url string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startRTSP runs camera/testdata/rtsp_server.py (a live MJPEG test pattern).
func startRTSP(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "../../camera/testdata/rtsp_server.py", fmt.Sprint(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		ready <- line
		io.Copy(io.Discard, r)
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "ready") {
			t.Fatalf("RTSP server: %q (apt: python3-gi gir1.2-gst-rtsp-server-1.0, via make deps)", line)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("RTSP server not ready within 15 s")
	}
	return cmd
}

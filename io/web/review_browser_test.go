//go:build unix

package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive/layout"
)

// reviewShotPath is where -update writes the review view's screenshot.
const reviewShotPath = "../../docs/review.png"

// cdp drives a headless Chromium through the DevTools protocol on a pipe
// (--remote-debugging-pipe: commands on fd 3, answers on fd 4, each JSON
// message ended by a NUL), so that the test needs no WebSocket library.
type cdp struct {
	t       *testing.T
	w       io.Writer
	mu      sync.Mutex
	next    int
	waiting map[int]chan cdpAnswer
	session string
}

type cdpAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startCDP starts the browser (killed with its process group at the end
// of the test) and attaches to a new page.
func startCDP(t *testing.T, ctx context.Context, bin string) *cdp {
	t.Helper()
	toBrowser, ours, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	theirs, fromBrowser, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
		"--remote-debugging-pipe", "--user-data-dir="+filepath.Join(t.TempDir(), "profile"), "about:blank")
	cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser} // fd 3, fd 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		ours.Close()
		theirs.Close()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", tail(stderr.String()))
		}
	})
	c := &cdp{t: t, w: ours, waiting: map[int]chan cdpAnswer{}}
	go func() {
		r := bufio.NewReader(theirs)
		for {
			msg, err := r.ReadBytes(0)
			if err != nil {
				return
			}
			var m struct {
				ID int `json:"id"`
				cdpAnswer
			}
			if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
				continue // an event
			}
			c.mu.Lock()
			ch := c.waiting[m.ID]
			delete(c.waiting, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m.cdpAnswer
			}
		}
	}()
	var target struct {
		TargetID string `json:"targetId"`
	}
	c.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	c.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	c.session = att.SessionID
	c.call(c.session, "Page.enable", nil, nil)
	c.call(c.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	return c
}

// call sends one command and decodes its result into out (when not nil).
func (c *cdp) call(session, method string, params any, out any) {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan cdpAnswer, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b, _ := json.Marshal(msg)
	if _, err := c.w.Write(append(b, 0)); err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
	select {
	case a := <-ch:
		if a.Error != nil {
			c.t.Fatalf("%s: %s", method, a.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(a.Result, out); err != nil {
				c.t.Fatalf("%s: %v", method, err)
			}
		}
	case <-time.After(20 * time.Second):
		c.t.Fatalf("%s: no answer within 20 s", method)
	}
}

// eval returns the string value of a JavaScript expression in the page.
func (c *cdp) eval(expr string) string {
	c.t.Helper()
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	c.call(c.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	return fmt.Sprint(r.Result.Value)
}

// waitFor polls the page until the selected result is id and the page is
// loaded.
func (c *cdp) waitFor(id string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := c.eval(`document.readyState + " " + ((document.getElementById("detail") || {dataset: {}}).dataset.id || "")`)
		if got == "complete "+id {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the page did not show %s within 15 s (it shows %q); message: %s", id, got,
				c.eval(`(document.getElementById("review-msg") || {}).textContent`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// key presses one key on the page, as a person would.
func (c *cdp) key(k string) {
	c.t.Helper()
	code := "Key" + strings.ToUpper(k)
	if k >= "0" && k <= "9" {
		code = "Digit" + k
	}
	vk := int(strings.ToUpper(k)[0])
	for _, typ := range []string{"keyDown", "keyUp"} {
		p := map[string]any{"type": typ, "key": k, "code": code, "windowsVirtualKeyCode": vk}
		if typ == "keyDown" {
			p["text"] = k
		}
		c.call(c.session, "Input.dispatchKeyEvent", p, nil)
	}
}

// TestReviewInBrowser labels three results through the review page in
// headless Chromium with the keyboard (g, d then 2, u), changes one and
// undoes the change (z), then reads the label log: every change is a
// line, with who, old → new, and the current labels are what was typed.
func TestReviewInBrowser(t *testing.T) {
	bin := requireChromium(t, "the review view")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	fx := newReviewFixture(t, 24)
	realImages(t, fx)
	ngs := []*inspection.Result{} // newest first, as the page lists them
	for i := len(fx.results) - 1; i >= 0; i-- {
		if fx.results[i].Verdict == inspection.NG {
			ngs = append(ngs, fx.results[i])
		}
	}
	c := startCDP(t, ctx, bin)
	base := "http://" + fx.s.Addr()
	c.call(c.session, "Page.navigate", map[string]any{"url": base + "/review?verdict=NG"}, nil)
	c.waitFor(ngs[0].ID)

	c.key("g") // good: a false reject; the page moves on
	c.waitFor(ngs[1].ID)
	c.key("d") // defect, then its type: 2 = dent
	if got := c.eval(`document.getElementById("defect-keys").hidden ? "hidden" : "shown"`); got != "shown" {
		t.Errorf("after d the defect types are %s", got)
	}
	c.key("2")
	c.waitFor(ngs[2].ID)
	c.key("u") // unsure
	c.waitFor(ngs[3].ID)
	c.key("k") // back to the third, change it to good, and undo that
	c.waitFor(ngs[2].ID)
	c.key("g")
	c.waitFor(ngs[3].ID)
	c.key("z")
	c.waitFor(ngs[2].ID)
	if got := c.eval(`document.getElementById("sel-label").textContent`); got != "unsure" {
		t.Errorf("after the undo the page shows the label %q, want unsure", got)
	}

	es := fx.entries(t)
	var lines []string
	for _, e := range es {
		lines = append(lines, fmt.Sprintf("%s %s:%s<-%s:%s %s", e.ResultID, e.Label, e.DefectType, e.Previous, e.PreviousDefectType, e.User))
	}
	want := []string{
		ngs[0].ID + " good:<-: local",
		ngs[1].ID + " defect:dent<-: local",
		ngs[2].ID + " unsure:<-: local",
		ngs[2].ID + " good:<-unsure: local",
		ngs[2].ID + " unsure:<-good: local",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("label log:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if ev := fx.host.got(); len(ev) != 5 || ev[0].Kind != EventLabel {
		t.Errorf("%d label events, want 5", len(ev))
	}

	// The view with the labels, the images and the plots.
	c.call(c.session, "Page.navigate", map[string]any{"url": base + "/review?verdict=NG&id=" + ngs[1].ID}, nil)
	c.waitFor(ngs[1].ID)
	if got := c.eval(`Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length`); got != "2" {
		t.Errorf("%s images decoded, want the frame and the overlay", got)
	}
	c.call(c.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 1400, "deviceScaleFactor": 1, "mobile": false}, nil)
	var shot struct {
		Data string `json:"data"`
	}
	c.call(c.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 10000 {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if *update {
		if err := os.WriteFile(reviewShotPath, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", reviewShotPath)
	}
}

// realImages replaces the NG parts' stand-in images with the synthetic
// part and the overlay the status page renders for it.
func realImages(t *testing.T, fx *reviewFixture) {
	t.Helper()
	frame, roi, mask := syntheticPart(tilt.Degrees())
	snap := &inspection.Snapshot{Frame: frame, ROI: roi, Transform: tilt,
		Heatmap: blur(heatFromMask(t, mask, roi, tilt, 256, 256, 0.71/1.5), 4, 3)}
	var fb bytes.Buffer
	if err := jpeg.Encode(&fb, frame, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	r := fakeResult(1, time.Now(), inspection.NG)
	r.Snapshot, r.Regions = snap, regionsOf(mask)
	if err := fx.s.Deliver(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + fx.s.Addr() + "/api/latest.jpg")
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, res := range fx.results {
		if res.Verdict != inspection.NG {
			continue
		}
		day, base := layout.SetName(res, time.Now())
		os.WriteFile(filepath.Join(fx.dir, day, base+layout.SuffixFrame), fb.Bytes(), 0o640)
		os.WriteFile(filepath.Join(fx.dir, day, base+layout.SuffixOverlay), ob, 0o640)
	}
}

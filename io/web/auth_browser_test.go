//go:build unix

package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoginInBrowser logs in through the real login form in headless
// Chromium (a test page on the same origin fills it in and submits it):
// the browser must keep the session cookie (HttpOnly, SameSite=Strict)
// across the redirect to the status page, the page must show the user
// and carry the CSRF token, and its script's polling must be let through
// (the cookie goes with fetch). A browser without a session is sent to
// the login page.
func TestLoginInBrowser(t *testing.T) {
	bin := requireChromium(t, "the login")
	// The test page (test code only; the daemon's pages allow no inline
	// script but their own) logs in with the login page's form fields,
	// so that the browser's own cookie handling keeps the session, then
	// reads the status page and the API and posts a trigger with and
	// without the page's CSRF token, writing what it got into #out.
	autologin := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><html><body><pre id="out">running</pre><script>
var out = [];
function post(token) {
  var h = { 'Content-Type': 'application/json', Accept: 'application/json' };
  if (token) h['X-CSRF-Token'] = token;
  return fetch('/api/trigger', { method: 'POST', headers: h, body: JSON.stringify({ part_id: token ? 'B1' : 'B0' }) });
}
var body = new URLSearchParams({ username: 'otto', password: %q, next: '/' });
fetch('/login', { method: 'POST', body: body }).then(function (r) {
  out.push('login ' + r.status + ' ' + new URL(r.url).pathname);
  return r.text();
}).then(function (html) {
  var d = new DOMParser().parseFromString(html, 'text/html');
  var meta = d.querySelector('meta[name="csrf-token"]');
  var u = d.getElementById('user');
  out.push('user ' + (u ? u.textContent : 'none') + ' cookie-visible ' + (document.cookie.indexOf('inspectd_session') >= 0));
  var token = meta ? meta.getAttribute('content') : '';
  return fetch('/api/status').then(function (r) {
    out.push('status ' + r.status);
    return post('');
  }).then(function (r) {
    out.push('no-token ' + r.status);
    return post(token);
  }).then(function (r) { out.push('token ' + r.status); });
}).catch(function (e) { out.push('error ' + e); }).then(function () {
  document.getElementById('out').textContent = out.join('; ');
});
</script></body></html>`, testPassword)
	})
	s, fc, logBuf := authServer(t, func(o *Options) {
		o.Extra = map[string]http.Handler{"/t/autologin": autologin}
		o.OpenPaths = append(o.OpenPaths, "/t/autologin") // the test page itself needs no login
	})
	feedStation(t, s, time.Now())
	base := "http://" + s.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	n := 0
	dump := func(url string) string {
		t.Helper()
		n++
		cmd := exec.CommandContext(ctx, bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--virtual-time-budget=3000",
			fmt.Sprintf("--user-data-dir=%s", filepath.Join(dir, fmt.Sprint("profile", n))), "--dump-dom", url)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if err != nil {
			t.Fatalf("%s --dump-dom %s: %v\nstdout:\n%s\nlog:\n%s", bin, url, err, tail(stdout.String()), tail(logBuf.String()))
		}
		return stdout.String()
	}

	// Without a session: the login page.
	dom := dump(base + "/")
	if !strings.Contains(dom, `<form id="login" method="post" action="/login">`) {
		t.Fatalf("a browser without a session did not land on the login page:\n%s", tail(dom))
	}
	// Logged in with the form's fields: the session works for pages,
	// reads and (with the token) the operator's POST.
	dom = dump(base + "/t/autologin")
	want := `<pre id="out">login 200 /; user otto cookie-visible false; status 200; no-token 403; token 202</pre>`
	if !strings.Contains(dom, want) {
		t.Errorf("the browser got\n%s\nwant %s\nlog:\n%s", tail(dom), want, tail(logBuf.String()))
	}
	if ids, _ := fc.triggered(); strings.Join(ids, ",") != "B1" {
		t.Errorf("triggered %v, want only B1 (the POST with the token)", ids)
	}
	if !strings.Contains(logBuf.String(), `"msg":"login","component":"audit","user":"otto","role":"operator"`) {
		t.Errorf("no audit line for the browser's login:\n%s", tail(logBuf.String()))
	}
}

package web

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/inspectd/inspectd/inspection"
)

// testPassword is every test user's password.
const testPassword = "correct horse battery"

// usersFile writes a users file with viewer "vera", operator "otto" and
// admin "ada" (bcrypt at the minimum cost, to keep the tests fast) and
// returns its path.
func usersFile(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# test users\n\n")
	for _, u := range []struct{ name, role string }{{"vera", "viewer"}, {"otto", "operator"}, {"ada", "admin"}} {
		h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s\n", u.name, u.role, h)
	}
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

// authServer returns a started server with the test users, its fake
// daemon and its audit log (JSON lines).
func authServer(t testing.TB, edit func(*Options)) (*Server, *fakeControl, *bytes.Buffer) {
	t.Helper()
	var logBuf bytes.Buffer
	o := testOptions()
	o.UsersFile = usersFile(t)
	o.OpenPaths = []string{"/healthz"}
	o.Logger = slog.New(slog.NewJSONHandler(&syncWriter{w: &logBuf}, nil))
	if edit != nil {
		edit(&o)
	}
	s, fc := newTestServer(t, o, nil)
	fc.set(func(st *inspection.Status) { st.Trigger = "software" })
	return s, fc, &logBuf
}

// client is a logged-in (or not) caller of a handler.
type client struct {
	cookie string // session id, "" none
	csrf   string
	remote string
}

// login logs name in through JSON and returns the client.
func login(t testing.TB, h http.Handler, name string) client {
	t.Helper()
	rec := do(h, "POST", "/login", "application/json", fmt.Sprintf(`{"username":%q,"password":%q}`, name, testPassword), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("login %s: %d %s", name, rec.Code, rec.Body)
	}
	var lr loginResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &lr); err != nil {
		t.Fatal(err)
	}
	return client{cookie: sessionCookie(t, rec), csrf: lr.CSRFToken}
}

// sessionCookie returns the session cookie a response set.
func sessionCookie(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == SessionCookie {
			return c.Value
		}
	}
	t.Fatalf("no %s cookie in %v", SessionCookie, rec.Header())
	return ""
}

// send sends one request as c.
func (c client) send(h http.Handler, method, target, contentType, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: c.cookie})
	}
	if c.remote != "" {
		req.RemoteAddr = c.remote
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestParseUsers(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	hash := string(h)
	tests := []struct {
		name, text, want string
	}{
		{"valid", "# c\nada:admin:" + hash + "\n\nvera:viewer:" + hash + "\n", ""},
		{"two fields", "ada:admin\n", "users:1: want name:role:bcrypt-hash (print a line with `inspectd passwd --user NAME --role ROLE`)"},
		{"bad role", "ada:root:" + hash + "\n", `users:1: user "ada": role "root" is not one of "viewer", "operator", "admin"`},
		{"clear password", "ada:admin:secret\n", `users:1: user "ada": the password hash is not a bcrypt hash`},
		{"md5 crypt", "ada:admin:$1$abc$def\n", `users:1: user "ada": the password hash is not a bcrypt hash`},
		{"duplicate", "ada:admin:" + hash + "\n#\nada:viewer:" + hash + "\n", `users:3: user "ada" is already defined on line 1`},
		{"bad name", "a d a:admin:" + hash + "\n", `users:1: user name "a d a" has the character ' '`},
		{"every problem", "x\nada:boss:" + hash + "\n", "bcrypt-hash (print a line with `inspectd passwd --user NAME --role ROLE`)\nusers:2: user \"ada\": role \"boss\""},
		{"empty", "# nobody\n", "users: no users; add a line with `inspectd passwd --user NAME --role admin >> users`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUsers("users", []byte(tt.text))
			if tt.want == "" {
				if err != nil || len(u) != 2 || u["ada"].Role != RoleAdmin || u["vera"].Role != RoleViewer {
					t.Fatalf("ParseUsers = %v, %v", u, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadUsersFileMode(t *testing.T) {
	p := usersFile(t)
	if _, w, err := LoadUsers(p); err != nil || len(w) != 0 {
		t.Fatalf("0640: warnings %v, err %v", w, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	_, w, err := LoadUsers(p)
	if err != nil || len(w) != 1 || !strings.Contains(w[0], "has mode 0644: every user of this machine can read the password hashes; chmod 0640") {
		t.Fatalf("0644: warnings %v, err %v", w, err)
	}
	_, _, err = LoadUsers(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "/nope: no such file or directory") {
		t.Fatalf("missing file: %v", err)
	}
	o := testOptions()
	o.UsersFile = filepath.Join(t.TempDir(), "nope")
	if _, err := New(o); err == nil {
		t.Fatal("New with a missing users file succeeded")
	}
}

func TestHashPassword(t *testing.T) {
	line, err := HashPassword("otto", RoleOperator, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	u, err := ParseUsers("line", []byte(line+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.check("otto", []byte(testPassword)); !ok {
		t.Error("the printed line does not accept the password")
	}
	if _, ok := u.check("otto", []byte(testPassword+"x")); ok {
		t.Error("the printed line accepts a wrong password")
	}
	for _, bad := range []struct {
		name, pw, want string
	}{{"otto", "short", "at least 8"}, {"ot to", testPassword, "user name"}, {"otto", strings.Repeat("x", 73), "at most 72"}} {
		if _, err := HashPassword(bad.name, RoleViewer, []byte(bad.pw)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("HashPassword(%q, %q): %v; want %q", bad.name, bad.pw, err, bad.want)
		}
	}
}

// TestAccessPolicy sends hostile and honest requests and checks the
// status, the error text and that nothing happened when refused.
func TestAccessPolicy(t *testing.T) {
	s, fc, _ := authServer(t, nil)
	h := s.Handler()
	vera, otto, ada := login(t, h, "vera"), login(t, h, "otto"), login(t, h, "ada")
	anon := client{}
	forged := client{cookie: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", csrf: "x"}
	ottoWithVerasToken := client{cookie: otto.cookie, csrf: vera.csrf}
	tok := func(c client) map[string]string { return map[string]string{"X-CSRF-Token": c.csrf} }
	const jsonCT = "application/json"
	tests := []struct {
		name         string
		c            client
		method, path string
		ct, body     string
		hdr          map[string]string
		code         int
		want         string // substring of the body
		triggers     int    // triggers after the request (cumulative)
		clears       int
	}{
		{"anonymous status", anon, "GET", "/api/status", "", "", nil, 401, "login required", 0, 0},
		{"anonymous page redirects", anon, "GET", "/", "", "", map[string]string{"Accept": "text/html"}, 303, "", 0, 0},
		{"anonymous trigger", anon, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, nil, 401, "login required", 0, 0},
		{"forged session", forged, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, tok(forged), 401, "login required", 0, 0},
		{"open healthz", anon, "GET", "/healthz", "", "", nil, 200, `"status":"ok"`, 0, 0},
		{"metrics not open", anon, "GET", "/metrics", "", "", nil, 401, "login required", 0, 0},
		{"healthz POST not open", anon, "POST", "/healthz", "", "", nil, 401, "login required", 0, 0},
		{"viewer reads", vera, "GET", "/api/status", "", "", nil, 200, `"station"`, 0, 0},
		{"viewer triggers", vera, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, tok(vera), 403, `user "vera" (viewer) may not POST /api/trigger; it needs the role operator`, 0, 0},
		{"viewer clears fault", vera, "POST", "/api/clear-fault", "", "", tok(vera), 403, "needs the role operator", 0, 0},
		{"viewer labels", vera, "POST", "/api/labels", jsonCT, `{}`, tok(vera), 403, "needs the role operator", 0, 0},
		{"operator without CSRF", otto, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, nil, 403, "missing or wrong CSRF token", 0, 0},
		{"operator wrong CSRF", otto, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, map[string]string{"X-CSRF-Token": "nope"}, 403, "missing or wrong CSRF token", 0, 0},
		{"another session's CSRF", ottoWithVerasToken, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, tok(ottoWithVerasToken), 403, "missing or wrong CSRF token", 0, 0},
		{"wrong CSRF in form", otto, "POST", "/api/trigger", mediaForm, "part_id=A&csrf_token=nope", nil, 403, "missing or wrong CSRF token", 0, 0},
		{"cross-site origin", otto, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, map[string]string{"X-CSRF-Token": otto.csrf, "Origin": "https://evil.example"}, 403, "cross-site POST /api/trigger refused", 0, 0},
		{"cross-site fetch", otto, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, map[string]string{"X-CSRF-Token": otto.csrf, "Sec-Fetch-Site": "cross-site"}, 403, "cross-site", 0, 0},
		{"operator admin action", otto, "POST", "/api/thresholds", jsonCT, `{"threshold":0.1}`, tok(otto), 403, `user "otto" (operator) may not POST /api/thresholds; it needs the role admin`, 0, 0},
		{"operator unknown method", otto, "DELETE", "/api/results", "", "", tok(otto), 403, "needs the role admin", 0, 0},
		{"oversized form", otto, "POST", "/api/trigger", mediaForm, "part_id=" + strings.Repeat("A", maxFormBody) + "&csrf_token=" + otto.csrf, nil, 413, "body larger than", 0, 0},
		{"operator triggers", otto, "POST", "/api/trigger", jsonCT, `{"part_id":"A"}`, tok(otto), 202, `"part_id":"A"`, 1, 0},
		{"operator form trigger", otto, "POST", "/api/trigger", mediaForm, "part_id=B&csrf_token=" + url.QueryEscape(otto.csrf), map[string]string{"Accept": "text/html"}, 303, "", 2, 0},
		{"operator clears fault", otto, "POST", "/api/clear-fault", "", "", tok(otto), 200, `"cleared":true`, 2, 1},
		{"admin passes the policy", ada, "POST", "/api/thresholds", jsonCT, `{}`, tok(ada), 404, "", 2, 1},
		{"admin triggers", ada, "POST", "/api/trigger", jsonCT, `{"part_id":"C"}`, tok(ada), 202, "", 3, 1},
		{"null origin", ada, "POST", "/api/trigger", jsonCT, `{"part_id":"N"}`, map[string]string{"X-CSRF-Token": ada.csrf, "Origin": "null"}, 403, "cross-site", 3, 1},
		{"null origin, same-origin fetch", ada, "POST", "/api/trigger", jsonCT, `{"part_id":"D"}`, map[string]string{"X-CSRF-Token": ada.csrf, "Origin": "null", "Sec-Fetch-Site": "same-origin"}, 202, "", 4, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.c.send(h, tt.method, tt.path, tt.ct, tt.body, tt.hdr)
			if rec.Code != tt.code {
				t.Errorf("%s %s: status %d, want %d; body %s", tt.method, tt.path, rec.Code, tt.code, rec.Body)
			}
			if got := errorText(rec); !strings.Contains(got, tt.want) {
				t.Errorf("body %q does not contain %q", got, tt.want)
			}
			if ids, _ := fc.triggered(); len(ids) != tt.triggers {
				t.Errorf("triggers %v, want %d", ids, tt.triggers)
			}
			if n := fc.clearCalls(); n != tt.clears {
				t.Errorf("clear-fault calls %d, want %d", n, tt.clears)
			}
		})
	}
	if ids, _ := fc.triggered(); strings.Join(ids, ",") != "A,B,C,D" {
		t.Errorf("triggered %v, want A,B,C,D", ids)
	}
	// The redirect of an anonymous page view goes to the login page.
	rec := anon.send(h, "GET", "/api/results?n=5", "", "", map[string]string{"Accept": "text/html"})
	if loc := rec.Header().Get("Location"); loc != "/login?next=%2Fapi%2Fresults%3Fn%3D5" {
		t.Errorf("redirect to %q", loc)
	}
}

// TestPathTraversal asks for files outside the server through image and
// asset URLs: never a file's content, and nothing before login.
func TestPathTraversal(t *testing.T) {
	s, _, _ := authServer(t, nil)
	h := s.Handler()
	vera := login(t, h, "vera")
	paths := []string{
		"/api/latest.jpg/../../../../etc/passwd",
		"/review/image/..%2f..%2f..%2fetc%2fpasswd/frame",
		"/review/image/../../etc/passwd/frame",
		"/assets/../../../etc/passwd",
		"/login/../../etc/passwd",
		"/%2e%2e/%2e%2e/etc/passwd",
	}
	for _, p := range paths {
		for _, c := range []client{{}, vera} {
			rec := c.send(h, "GET", p, "", "", nil)
			if rec.Code == http.StatusOK || strings.Contains(rec.Body.String(), "root:") {
				t.Errorf("GET %s (session %v): %d %q", p, c.cookie != "", rec.Code, rec.Body)
			}
			if c.cookie == "" && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusMovedPermanently {
				t.Errorf("GET %s without login: %d, want 401 or a redirect to the cleaned path", p, rec.Code)
			}
		}
	}
}

func TestLogin(t *testing.T) {
	s, _, _ := authServer(t, nil)
	h := s.Handler()
	tests := []struct {
		name, ct, body string
		code           int
		want           string
	}{
		{"wrong password", "application/json", `{"username":"ada","password":"wrong"}`, 401, "wrong user name or password"},
		{"unknown user", "application/json", `{"username":"mallory","password":"` + testPassword + `"}`, 401, "wrong user name or password"},
		{"empty", "application/json", `{}`, 401, "wrong user name or password"},
		{"unknown field", "application/json", `{"username":"ada","password":"x","role":"admin"}`, 400, `unknown field "role"`},
		{"oversized", "application/json", `{"username":"ada","password":"` + strings.Repeat("x", maxLoginBody) + `"}`, 413, "login body larger than 4096 bytes"},
		{"oversized form", mediaForm, "username=ada&password=" + strings.Repeat("x", maxLoginBody), 413, "login body larger than 4096 bytes"},
		{"text", "text/plain", "ada " + testPassword, 415, "send an HTML form"},
		{"form wrong password", mediaForm, "username=ada&password=nope", 401, "Wrong user name or password."},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh address each, so the flood limit does not interfere.
			c := client{remote: fmt.Sprintf("198.51.100.%d:4000", i+1)}
			rec := c.send(h, "POST", "/login", tt.ct, tt.body, nil)
			if got := errorText(rec); rec.Code != tt.code || !strings.Contains(got, tt.want) {
				t.Errorf("status %d body %q; want %d containing %q", rec.Code, got, tt.code, tt.want)
			}
			for _, ck := range rec.Result().Cookies() {
				if ck.Name == SessionCookie && ck.Value != "" {
					t.Errorf("a refused login set a session cookie")
				}
			}
		})
	}
	t.Run("form login redirects to next, never off-site", func(t *testing.T) {
		for next, want := range map[string]string{"/api/status": "/api/status", "//evil.example/": "/", "https://evil.example/": "/", "/\\evil.example": "/"} {
			rec := do(h, "POST", "/login", mediaForm, "username=vera&password="+url.QueryEscape(testPassword)+"&next="+url.QueryEscape(next), nil)
			if rec.Code != 303 || rec.Header().Get("Location") != want {
				t.Errorf("next %q: %d to %q, want 303 to %q", next, rec.Code, rec.Header().Get("Location"), want)
			}
		}
	})
	t.Run("cookie attributes", func(t *testing.T) {
		rec := do(h, "POST", "/login", "application/json", `{"username":"vera","password":"`+testPassword+`"}`, nil)
		var ck *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == SessionCookie {
				ck = c
			}
		}
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" || len(ck.Value) < 43 {
			t.Fatalf("cookie %+v; want HttpOnly, SameSite=Strict, not Secure without TLS, 32 random bytes", ck)
		}
	})
	t.Run("login page", func(t *testing.T) {
		rec := do(h, "GET", "/login?next=/api/status", "", "", nil)
		b := rec.Body.String()
		if rec.Code != 200 || !strings.Contains(b, `<form id="login" method="post" action="/login">`) || !strings.Contains(b, `value="/api/status"`) ||
			!strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("%d %s", rec.Code, b)
		}
	})
	t.Run("cross-site login", func(t *testing.T) {
		rec := do(h, "POST", "/login", "application/json", `{"username":"vera","password":"`+testPassword+`"}`, map[string]string{"Origin": "http://evil.example"})
		if rec.Code != 403 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
}

func TestSessionFixationAndLogout(t *testing.T) {
	s, _, _ := authServer(t, nil)
	h := s.Handler()
	// The attacker plants a cookie; the login never adopts it.
	planted := client{cookie: "planted-by-attacker-0123456789abcdefghijklmnop"}
	rec := planted.send(h, "POST", "/login", "application/json", `{"username":"otto","password":"`+testPassword+`"}`, nil)
	if rec.Code != 200 {
		t.Fatal(rec.Code, rec.Body)
	}
	if got := sessionCookie(t, rec); got == planted.cookie {
		t.Fatal("the login adopted the client's session id")
	}
	if rec := planted.send(h, "GET", "/api/status", "", "", nil); rec.Code != 401 {
		t.Fatalf("the planted id works: %d", rec.Code)
	}
	// Logging in again with a valid session replaces it.
	first := login(t, h, "otto")
	rec = first.send(h, "POST", "/login", "application/json", `{"username":"otto","password":"`+testPassword+`"}`, nil)
	second := sessionCookie(t, rec)
	if second == first.cookie {
		t.Fatal("a second login kept the session id")
	}
	if rec := first.send(h, "GET", "/api/status", "", "", nil); rec.Code != 401 {
		t.Fatalf("the replaced session still works: %d", rec.Code)
	}
	// Logout needs the token, then ends the session.
	c := login(t, h, "vera")
	if rec := c.send(h, "POST", "/logout", "", "", nil); rec.Code != 403 {
		t.Fatalf("logout without CSRF token: %d", rec.Code)
	}
	if rec := c.send(h, "GET", "/api/status", "", "", nil); rec.Code != 200 {
		t.Fatalf("session ended by a logout without token: %d", rec.Code)
	}
	rec = c.send(h, "POST", "/logout", "", "", map[string]string{"X-CSRF-Token": c.csrf})
	if rec.Code != 200 {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	if rec := c.send(h, "GET", "/api/status", "", "", nil); rec.Code != 401 {
		t.Fatalf("session works after logout: %d", rec.Code)
	}
}

func TestSessionExpiry(t *testing.T) {
	s, fc, _ := authServer(t, func(o *Options) { o.SessionTTL = 300 * time.Millisecond })
	h := s.Handler()
	c := login(t, h, "otto")
	if rec := c.send(h, "GET", "/api/status", "", "", nil); rec.Code != 200 {
		t.Fatalf("fresh session: %d", rec.Code)
	}
	time.Sleep(400 * time.Millisecond)
	if rec := c.send(h, "GET", "/api/status", "", "", nil); rec.Code != 401 {
		t.Fatalf("expired session read: %d", rec.Code)
	}
	if rec := c.send(h, "POST", "/api/trigger", "application/json", `{"part_id":"X"}`, map[string]string{"X-CSRF-Token": c.csrf}); rec.Code != 401 {
		t.Fatalf("expired session trigger: %d", rec.Code)
	}
	if ids, _ := fc.triggered(); len(ids) != 0 {
		t.Fatalf("expired session triggered %v", ids)
	}
}

func TestLoginFlood(t *testing.T) {
	s, _, logBuf := authServer(t, nil)
	h := s.Handler()
	body := func(user, pw string) string { return fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw) }
	attacker := client{remote: "203.0.113.9:5000"}
	for i := range loginFailures {
		if rec := attacker.send(h, "POST", "/login", "application/json", body("ada", fmt.Sprint("guess", i)), nil); rec.Code != 401 {
			t.Fatalf("failure %d: %d", i+1, rec.Code)
		}
	}
	// Locked: even the right password from the attacker's address...
	rec := attacker.send(h, "POST", "/login", "application/json", body("ada", testPassword), nil)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "30" || !strings.Contains(rec.Body.String(), "too many failed logins; try again in 30 s") {
		t.Fatalf("after %d failures: %d %q Retry-After %q", loginFailures, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	// ...and for ada from anywhere (per user)...
	if rec := (client{remote: "192.0.2.77:1"}).send(h, "POST", "/login", "application/json", body("ada", testPassword), nil); rec.Code != 429 {
		t.Fatalf("ada from another address: %d", rec.Code)
	}
	// ...and any user from the attacker's address (per address).
	if rec := attacker.send(h, "POST", "/login", "application/json", body("vera", testPassword), nil); rec.Code != 429 {
		t.Fatalf("vera from the attacker's address: %d", rec.Code)
	}
	// The login form shows the lock on the page.
	rec = attacker.send(h, "POST", "/login", mediaForm, "username=ada&password=x", nil)
	if rec.Code != 429 || !strings.Contains(rec.Body.String(), "Too many failed logins; try again in 30 s.") {
		t.Fatalf("form login while locked: %d %q", rec.Code, rec.Body)
	}
	// Others are not locked out.
	if rec := (client{remote: "192.0.2.78:1"}).send(h, "POST", "/login", "application/json", body("vera", testPassword), nil); rec.Code != 200 {
		t.Fatalf("vera elsewhere: %d", rec.Code)
	}
	if !strings.Contains(logBuf.String(), `"msg":"login refused: too many failures","component":"audit","user":"ada"`) {
		t.Errorf("no audit line for the lock:\n%s", logBuf)
	}
	// The lock doubles.
	var l loginLimiter
	now := time.Now()
	for range 2 * loginFailures {
		l.fail("k", now)
	}
	if d := l.locked("k", now); d != 2*loginLock {
		t.Errorf("second lock %s, want %s", d, 2*loginLock)
	}
}

// TestAuditLog checks one audit line per state-changing request, refused
// or not, and none for reads.
func TestAuditLog(t *testing.T) {
	s, _, logBuf := authServer(t, nil)
	h := s.Handler()
	otto, vera := login(t, h, "otto"), login(t, h, "vera")
	logBuf.Reset()
	otto.send(h, "POST", "/api/trigger", "application/json", `{"part_id":"A"}`, map[string]string{"X-CSRF-Token": otto.csrf})
	vera.send(h, "POST", "/api/clear-fault", "", "", map[string]string{"X-CSRF-Token": vera.csrf})
	vera.send(h, "GET", "/api/status", "", "", nil)
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if m["component"] == "audit" {
			lines = append(lines, m)
		}
	}
	want := []string{"otto operator POST /api/trigger 202 192.0.2.1:1234", "vera viewer POST /api/clear-fault 403 192.0.2.1:1234"}
	if len(lines) != len(want) {
		t.Fatalf("audit lines %v; want %d", lines, len(want))
	}
	for i, m := range lines {
		got := fmt.Sprintf("%v %v %v %v %v %v", m["user"], m["role"], m["method"], m["path"], m["status"], m["remote"])
		if got != want[i] {
			t.Errorf("audit line %d: %s, want %s", i, got, want[i])
		}
	}
}

// TestAuthOff checks that without a users file nothing asks for a login
// and the user is "local".
func TestAuthOff(t *testing.T) {
	var logBuf bytes.Buffer
	o := testOptions()
	o.Logger = slog.New(slog.NewJSONHandler(&syncWriter{w: &logBuf}, nil))
	o.Extra = map[string]http.Handler{"/api/whoami": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, role := UserFrom(r.Context())
		fmt.Fprintf(w, "%s/%s/%q", n, role, CSRFToken(r))
	})}
	s, fc := newTestServer(t, o, nil)
	h := s.Handler()
	if rec := do(h, "GET", "/api/whoami", "", "", nil); rec.Body.String() != `local/admin/""` {
		t.Errorf("whoami %q", rec.Body)
	}
	if rec := do(h, "GET", "/login", "", "", nil); rec.Code != 404 {
		t.Errorf("/login without users: %d", rec.Code)
	}
	rec := do(h, "GET", "/", "", "", nil)
	if b := rec.Body.String(); rec.Code != 200 || strings.Contains(b, `name="csrf_token"`) || strings.Contains(b, `<meta name="csrf-token"`) || strings.Contains(b, `id="logout"`) {
		t.Errorf("page without users: %d, has CSRF or logout", rec.Code)
	}
	fc.set(func(st *inspection.Status) { st.Trigger = "software" })
	if rec := do(h, "POST", "/api/trigger", "application/json", `{"part_id":"L"}`, nil); rec.Code != 202 {
		t.Errorf("trigger without users: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logBuf.String(), `"msg":"request","component":"audit","user":"local","role":"admin","method":"POST","path":"/api/trigger","status":202`) {
		t.Errorf("no audit line:\n%s", logBuf.String())
	}
}

// TestPageCarriesCSRF checks the status page's forms and script get the
// session's token, and that a form post with it works.
func TestPageCarriesCSRF(t *testing.T) {
	s, _, _ := authServer(t, func(o *Options) {
		o.Extra = map[string]http.Handler{"/api/whoami": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, role := UserFrom(r.Context())
			fmt.Fprintf(w, "%s/%s/%s", n, role, CSRFToken(r))
		})}
	})
	h := s.Handler()
	c := login(t, h, "otto")
	rec := c.send(h, "GET", "/", "", "", nil)
	b := rec.Body.String()
	field := `<input type="hidden" name="csrf_token" value="` + c.csrf + `">`
	if n := strings.Count(b, field); n != 4 { // clear-fault, trigger, product, logout
		t.Errorf("page has the token field %d times, want 4", n)
	}
	if !strings.Contains(b, `<meta name="csrf-token" content="`+c.csrf+`">`) || !strings.Contains(b, `user <b id="user">otto</b> (operator)`) {
		t.Errorf("page lacks the token meta or the user:\n%s", b)
	}
	if rec := c.send(h, "GET", "/api/whoami", "", "", nil); rec.Body.String() != "otto/operator/"+c.csrf {
		t.Errorf("whoami %q", rec.Body)
	}
}

// errorText returns the "error" of a JSON error body, else the body.
func errorText(rec *httptest.ResponseRecorder) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &e) == nil && e.Error != "" {
		return e.Error
	}
	return rec.Body.String()
}

// syncWriter serialises writes of concurrent handlers into w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// selfSigned writes a certificate for 127.0.0.1 named cn, valid until
// notAfter, and its key, and returns their paths and the certificate.
func selfSigned(t testing.TB, dir, cn string, notAfter time.Time) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeAtomically(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeAtomically(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	return certFile, keyFile, cert
}

func writeAtomically(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestTLSAndReload serves HTTPS with a generated certificate, logs in
// over it (Secure cookie), swaps the certificate on Reload, and keeps the
// running one when the new files are bad or expired.
func TestTLSAndReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, certA := selfSigned(t, dir, "station-a", time.Now().Add(24*time.Hour))
	s, _, logBuf := authServer(t, func(o *Options) { o.TLSCert, o.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL())
	}
	pool := x509.NewCertPool()
	pool.AddCert(certA)
	peer := func(pool *x509.CertPool) (string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(s.URL() + "healthz")
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := peer(pool); err != nil || cn != "station-a" {
		t.Fatalf("first certificate: %q %v", cn, err)
	}
	// Plain HTTP to the TLS port gets nothing useful.
	if resp, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
		resp.Body.Close()
	}
	// Login over TLS: the cookie is Secure.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Post(s.URL()+"login", "application/json", strings.NewReader(`{"username":"vera","password":"`+testPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); resp.StatusCode != 200 || len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("TLS login: %d cookies %+v", resp.StatusCode, cs)
	}

	// Reload with a new certificate.
	_, _, certB := selfSigned(t, dir, "station-b", time.Now().Add(48*time.Hour))
	pool.AddCert(certB)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if cn, err := peer(pool); err != nil || cn != "station-b" {
		t.Fatalf("after reload: %q %v", cn, err)
	}
	// A broken key keeps B.
	writeAtomically(t, keyFile, []byte("not a key"))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "http.tls_cert "+certFile) {
		t.Fatalf("reload with a broken key: %v", err)
	}
	if cn, err := peer(pool); err != nil || cn != "station-b" {
		t.Fatalf("after a failed reload: %q %v", cn, err)
	}
	if !strings.Contains(logBuf.String(), "TLS certificate not reloaded; keeping the running one") {
		t.Errorf("no log line for the failed reload:\n%s", logBuf)
	}
	// An expired certificate keeps B too.
	_, _, certC := selfSigned(t, dir, "station-c", time.Now().Add(-time.Minute))
	pool.AddCert(certC)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "the certificate expired on") {
		t.Fatalf("reload with an expired certificate: %v", err)
	}
	if cn, err := peer(pool); err != nil || cn != "station-b" {
		t.Fatalf("after an expired reload: %q %v", cn, err)
	}
	// A client that does not trust the certificate gets no answer.
	if _, err := peer(x509.NewCertPool()); err == nil {
		t.Error("an untrusting client connected")
	}
}

// TestUsersReload checks that Reload re-reads the users file and ends the
// sessions of removed users, and keeps the users when the file is bad.
func TestUsersReload(t *testing.T) {
	s, _, _ := authServer(t, nil)
	h := s.Handler()
	vera, otto := login(t, h, "vera"), login(t, h, "otto")
	path := s.auth.usersFile
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Broken file: the running users stay.
	writeAtomically(t, path, []byte("garbage\n"))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), path+":1: want name:role:bcrypt-hash") {
		t.Fatalf("reload of a broken users file: %v", err)
	}
	if rec := vera.send(h, "GET", "/api/status", "", "", nil); rec.Code != 200 {
		t.Fatalf("vera after a failed reload: %d", rec.Code)
	}
	// vera removed: her session ends; otto's stays.
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "vera:") {
			keep = append(keep, l)
		}
	}
	writeAtomically(t, path, []byte(strings.Join(keep, "\n")))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if rec := vera.send(h, "GET", "/api/status", "", "", nil); rec.Code != 401 {
		t.Fatalf("removed vera: %d", rec.Code)
	}
	if rec := otto.send(h, "GET", "/api/status", "", "", nil); rec.Code != 200 {
		t.Fatalf("otto: %d", rec.Code)
	}
	// otto demoted to viewer: his operator session ends too.
	for i, l := range keep {
		if strings.HasPrefix(l, "otto:operator:") {
			keep[i] = "otto:viewer:" + strings.TrimPrefix(l, "otto:operator:")
		}
	}
	writeAtomically(t, path, []byte(strings.Join(keep, "\n")))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if rec := otto.send(h, "GET", "/api/status", "", "", nil); rec.Code != 401 {
		t.Fatalf("demoted otto keeps his operator session: %d", rec.Code)
	}
}

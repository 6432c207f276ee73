package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Session and login parameters (docs/security.md).
const (
	// SessionCookie is the name of the session cookie.
	SessionCookie = "inspectd_session"
	// csrfField and csrfHeader carry the CSRF token of a POST.
	csrfField  = "csrf_token"
	csrfHeader = "X-CSRF-Token"
	// maxLoginBody bounds a POST /login body.
	maxLoginBody = 4096
	// maxFormBody bounds a form body the policy reads for its token.
	maxFormBody = 64 << 10
	// loginFailures failures lock a user name or address for loginLock,
	// doubling with every further lock up to loginLockMax.
	loginFailures = 5
	loginLock     = 30 * time.Second
	loginLockMax  = 15 * time.Minute
	// maxSessions bounds the sessions held; the oldest go first.
	maxSessions = 10_000
)

// session is one login, held in memory only: a restart logs everybody
// out.
type session struct {
	id      string
	user    string
	role    Role
	csrf    string
	created time.Time
	expires time.Time
}

// auth is the access policy of a Server with a users file.
type auth struct {
	usersFile string
	users     atomic.Pointer[Users]
	ttl       time.Duration
	open      map[string]bool
	secure    bool // the cookie's Secure attribute (TLS)

	mu       sync.Mutex
	sessions map[string]*session

	limiter loginLimiter
}

// newSessionID returns 32 random bytes, base64url.
func newSessionID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// lookup returns the unexpired session of r's cookie, or nil.
func (a *auth) lookup(r *http.Request) *session {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[c.Value]
	if s == nil {
		return nil
	}
	if !time.Now().Before(s.expires) {
		delete(a.sessions, s.id)
		return nil
	}
	if u, ok := (*a.users.Load())[s.user]; !ok || u.Role != s.role {
		// The user was removed or changed role at a reload.
		delete(a.sessions, s.id)
		return nil
	}
	return s
}

// create starts a new session for u; the client's cookie is never
// adopted (session fixation).
func (a *auth) create(u User) *session {
	now := time.Now()
	s := &session{id: newSessionID(), user: u.Name, role: u.Role, csrf: newSessionID(), created: now, expires: now.Add(a.ttl)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sessions) >= maxSessions {
		for id, o := range a.sessions {
			if !now.Before(o.expires) {
				delete(a.sessions, id)
			}
		}
		for len(a.sessions) >= maxSessions {
			var oldest *session
			for _, o := range a.sessions {
				if oldest == nil || o.created.Before(oldest.created) {
					oldest = o
				}
			}
			delete(a.sessions, oldest.id)
		}
	}
	a.sessions[s.id] = s
	return s
}

// drop ends the session id.
func (a *auth) drop(id string) {
	a.mu.Lock()
	delete(a.sessions, id)
	a.mu.Unlock()
}

// cookie returns the session cookie for s, or one that deletes it (nil).
func (a *auth) cookie(s *session) *http.Cookie {
	c := &http.Cookie{Name: SessionCookie, Path: "/", HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode}
	if s == nil {
		c.MaxAge = -1
		return c
	}
	c.Value = s.id
	c.Expires = s.expires
	c.MaxAge = int(time.Until(s.expires).Seconds())
	return c
}

// loginLimiter counts failed logins per user name and per address.
type loginLimiter struct {
	mu   sync.Mutex
	keys map[string]*limitEntry
}

type limitEntry struct {
	fails   int
	locks   int
	until   time.Time
	touched time.Time
}

// locked returns how long key is locked for (0: not).
func (l *loginLimiter) locked(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.keys[key]; e != nil && now.Before(e.until) {
		return e.until.Sub(now)
	}
	return 0
}

// fail records a failed login for key.
func (l *loginLimiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*limitEntry{}
	}
	if len(l.keys) > 100_000 {
		for k, e := range l.keys {
			if now.Sub(e.touched) > time.Hour && !now.Before(e.until) {
				delete(l.keys, k)
			}
		}
	}
	e := l.keys[key]
	if e == nil {
		e = &limitEntry{}
		l.keys[key] = e
	}
	e.touched = now
	e.fails++
	if e.fails >= loginFailures {
		d := min(loginLock<<min(e.locks, 10), loginLockMax)
		e.until = now.Add(d)
		e.locks++
		e.fails = 0
	}
}

// reset forgets key's failures (a successful login).
func (l *loginLimiter) reset(key string) {
	l.mu.Lock()
	delete(l.keys, key)
	l.mu.Unlock()
}

// remoteHost returns the address of r's client without the port.
func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// requiredRole is the role a request needs: GET and HEAD viewer; the
// operator's commands operator; every other request admin (default
// deny: a route nobody listed needs the most).
func requiredRole(method, path string) Role {
	if method == http.MethodGet || method == http.MethodHead {
		return RoleViewer
	}
	switch path {
	case "/api/trigger", "/api/pause", "/api/resume", "/api/product", "/api/clear-fault", "/api/labels":
		return RoleOperator
	}
	if strings.HasPrefix(path, "/api/review/") {
		return RoleOperator
	}
	return RoleAdmin
}

// readOnlyMethod reports whether m changes nothing.
func readOnlyMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead
}

// statusRecorder keeps the status a handler answered, for the audit log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// guard applies the access policy to every request before next (the
// routes): the user in the context, login, role, CSRF token and
// same-site check for every request that is not GET or HEAD, and an
// audit line (component=audit) for each of those, refused or not.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var who principal
		if readOnlyMethod(r.Method) {
			s.admit(w, r, next, &who)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		s.admit(rec, r, next, &who)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		role := ""
		if who.role != RoleNone {
			role = who.role.String()
		}
		s.audit.Info("request", "user", who.name, "role", role, "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "remote", r.RemoteAddr)
	})
}

// admit decides whether r reaches next and answers the refusals; who is
// set to the request's user as soon as it is known.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, next http.Handler, who *principal) {
	a := s.auth
	if a == nil {
		*who = principal{name: LocalUser, role: RoleAdmin}
		next.ServeHTTP(w, withPrincipal(r, who))
		return
	}
	path := r.URL.Path
	switch path {
	case "/login":
		s.handleLogin(w, r, who)
		return
	case "/logout":
		s.handleLogout(w, r, who)
		return
	}
	if readOnlyMethod(r.Method) && a.open[path] {
		next.ServeHTTP(w, r)
		return
	}
	sess := a.lookup(r)
	if sess == nil {
		if readOnlyMethod(r.Method) && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		writeError(w, http.StatusUnauthorized, "login required: POST /login with username and password (docs/security.md)")
		return
	}
	*who = principal{name: sess.user, role: sess.role, sess: sess}
	r = withPrincipal(r, who)
	if need := requiredRole(r.Method, path); sess.role < need {
		writeError(w, http.StatusForbidden, fmt.Sprintf("user %q (%s) may not %s %s; it needs the role %s", sess.user, sess.role, r.Method, path, need))
		return
	}
	if !readOnlyMethod(r.Method) {
		if crossSite(r) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("cross-site %s %s refused", r.Method, path))
			return
		}
		tok, err := postedCSRF(w, r)
		if err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxFormBody))
				return
			}
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "missing or wrong CSRF token: send the session's token in the X-CSRF-Token header or the csrf_token form field")
			return
		}
	}
	next.ServeHTTP(w, r)
}

// postedCSRF returns the CSRF token of r: the header, else the form field
// of a form body (read here, within maxFormBody, and removed from the
// form so the handlers see only their own fields).
func postedCSRF(w http.ResponseWriter, r *http.Request) (string, error) {
	if t := r.Header.Get(csrfHeader); t != "" {
		return t, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != mediaForm {
		return "", nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return "", err
		}
		return "", fmt.Errorf("form: %w", err)
	}
	t := r.PostForm.Get(csrfField)
	r.PostForm.Del(csrfField)
	r.Form.Del(csrfField)
	return t, nil
}

// loginRequest is a JSON POST /login body.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// loginResponse answers a JSON login.
type loginResponse struct {
	User      string    `json:"user"`
	Role      string    `json:"role"`
	CSRFToken string    `json:"csrf_token"`
	Expires   time.Time `json:"expires"`
}

// handleLogin shows the login page (GET) or logs in (POST: a form with
// username, password and next, or JSON {"username","password"}); who is
// set to the user name tried (and its role once logged in).
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request, who *principal) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.renderLogin(w, http.StatusOK, r.URL.Query().Get("next"), "")
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on /login", r.Method))
		return
	}
	if crossSite(r) {
		writeError(w, http.StatusForbidden, "cross-site login refused")
		return
	}
	a := s.auth
	form := false
	var req loginRequest
	next := "/"
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case mediaForm:
		form = true
		if err := r.ParseForm(); err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("login body larger than %d bytes", maxLoginBody))
				return
			}
			writeError(w, http.StatusBadRequest, "form: "+err.Error())
			return
		}
		req.Username, req.Password = r.PostForm.Get("username"), r.PostForm.Get("password")
		next = r.PostForm.Get("next")
	case mediaJSON:
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("login body larger than %d bytes", maxLoginBody))
				return
			}
			writeError(w, http.StatusBadRequest, `body: want JSON {"username":"…","password":"…"}: `+err.Error())
			return
		}
	default:
		w.Header().Set("Accept-Post", mediaJSON+", "+mediaForm)
		writeError(w, http.StatusUnsupportedMediaType, `send an HTML form (username, password) or application/json {"username":"…","password":"…"}`)
		return
	}
	who.name = req.Username
	now := time.Now()
	ipKey, userKey := "ip:"+remoteHost(r), "user:"+req.Username
	if d := max(a.limiter.locked(ipKey, now), a.limiter.locked(userKey, now)); d > 0 {
		secs := int(d.Seconds() + 0.999)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.audit.Warn("login refused: too many failures", "user", req.Username, "remote", r.RemoteAddr, "retry_after_s", secs)
		msg := fmt.Sprintf("too many failed logins; try again in %d s", secs)
		if form {
			s.renderLogin(w, http.StatusTooManyRequests, next, "Too many failed logins; try again in "+strconv.Itoa(secs)+" s.")
			return
		}
		writeError(w, http.StatusTooManyRequests, msg)
		return
	}
	u, ok := a.users.Load().check(req.Username, []byte(req.Password))
	if !ok {
		a.limiter.fail(ipKey, now)
		a.limiter.fail(userKey, now)
		s.audit.Warn("login failed", "user", req.Username, "remote", r.RemoteAddr)
		if form {
			s.renderLogin(w, http.StatusUnauthorized, next, "Wrong user name or password.")
			return
		}
		writeError(w, http.StatusUnauthorized, "wrong user name or password")
		return
	}
	a.limiter.reset(userKey)
	if old := a.lookup(r); old != nil {
		a.drop(old.id)
	}
	sess := a.create(u)
	who.role = u.Role
	http.SetCookie(w, a.cookie(sess))
	s.audit.Info("login", "user", u.Name, "role", u.Role.String(), "remote", r.RemoteAddr)
	if form {
		http.Redirect(w, r, localPath(next), http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, loginResponse{User: u.Name, Role: u.Role.String(), CSRFToken: sess.csrf, Expires: sess.expires.UTC()})
}

// localPath returns next when it is a path on this server, else "/" (no
// open redirect to another site).
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

// handleLogout ends the request's session (POST with its CSRF token).
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, who *principal) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on /logout; use POST", r.Method))
		return
	}
	a := s.auth
	sess := a.lookup(r)
	if sess == nil {
		http.SetCookie(w, a.cookie(nil))
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	*who = principal{name: sess.user, role: sess.role}
	if crossSite(r) {
		writeError(w, http.StatusForbidden, "cross-site logout refused")
		return
	}
	tok, err := postedCSRF(w, r)
	if err != nil || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) != 1 {
		writeError(w, http.StatusForbidden, "missing or wrong CSRF token")
		return
	}
	a.drop(sess.id)
	http.SetCookie(w, a.cookie(nil))
	s.audit.Info("logout", "user", sess.user, "role", sess.role.String(), "remote", r.RemoteAddr)
	if isBrowserForm(r) {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"logged_out": true})
}

// newAuth loads the users file for o; nil without one.
func newAuth(o Options, log *slog.Logger) (*auth, error) {
	if o.UsersFile == "" {
		return nil, nil
	}
	users, warnings, err := LoadUsers(o.UsersFile)
	if err != nil {
		return nil, err
	}
	logWarnings(log, warnings)
	ttl := o.SessionTTL
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	a := &auth{usersFile: o.UsersFile, ttl: ttl, open: map[string]bool{}, secure: o.TLSCert != "",
		sessions: map[string]*session{}}
	for _, p := range o.OpenPaths {
		a.open[p] = true
	}
	a.users.Store(&users)
	return a, nil
}

// DefaultSessionTTL is the session lifetime when Options.SessionTTL is 0.
const DefaultSessionTTL = 12 * time.Hour

// Package web is inspectd's HTTP face on the plant network: a self-contained
// status page for line engineers and technicians, a small JSON API for SCADA
// integrators, /healthz for supervisors and Prometheus /metrics.
//
// A [Server] is also an [inspection.Sink]: the daemon delivers every Result
// to it, and it keeps the last Options.History of them (without their
// pixels) for /api/results and the page. As an [inspection.ImageSink] it asks
// for the pixels of at most about two parts a second, preferring NG and
// ERROR parts, and keeps only the newest snapshot; /api/latest.jpg renders
// it (frame, heatmap overlay, defect boxes) on the first request and caches
// the JPEG. As an [inspection.EventSink] it keeps the last 50 events.
//
// Routes:
//
//	GET  /                 status page (HTML, no external resources)
//	GET  /healthz          200 {"status":"ok"} or 503 {"status":"unhealthy","problems":[…]}
//	GET  /metrics          Prometheus exposition of Options.Gatherer (404 without one)
//	GET  /api/status       inspection.Status
//	GET  /api/results?n=N  {"count":…,"results":[…]} newest first (N: 1…History, default 20)
//	GET  /api/events?n=N   {"count":…,"events":[…]} newest first (N: 1…50, default 20)
//	POST /api/trigger      software trigger (see below)
//	POST /api/clear-fault  clear the outputs' latched faults (see below)
//	POST /api/product      select the active product (see below)
//	GET  /api/latest.jpg   newest snapshot with overlay (ETag = result id)
//
// POST /api/trigger takes the part ID from a JSON body {"part_id":"…"}
// (Content-Type application/json), from an HTML form field part_id
// (application/x-www-form-urlencoded: the status page without
// JavaScript), or, with no body and no Content-Type, from the query
// (?part_id=…; none: the daemon numbers the part). Any other Content-Type
// (text/plain, multipart/form-data, …), or a body without one, is refused
// with 415 naming the accepted types and nothing is triggered, so a part ID
// is never dropped silently. It answers 202 {"accepted":true,"part_id":…},
// 400 for a malformed body or part ID, 409 when the daemon refuses the
// trigger (paused, another trigger mode), and a browser's form submission
// is redirected to / (303).
//
// POST /api/clear-fault asks the daemon to clear the latched faults of its
// outputs (the GPIO FIFO overflow that rejects every part physically) once
// their cause is fixed; the same as the MQTT clear_fault command and
// SIGHUP. It reads no body. It answers 200 {"cleared":true,"problems":[…]}
// with the problems that remain, 409 {"error":…} with the daemon's reason
// when it cannot (no output of the station latches faults), and a
// browser's form submission (the status page's button without
// JavaScript) is redirected to / (303). Cross-site browser requests to
// either POST route are refused with 403.
//
// POST /api/product selects the active product (product changeover,
// source "http"): the name from a JSON body {"product":"…"}, an HTML form
// field product, or, with no body and no Content-Type, the query
// (?product=…). It answers 200 {"product":…,"active":…}, 400 for a
// malformed request or name (1-64 of A-Z a-z 0-9 _ . -), 404 with the
// daemon's reason for a product the station does not have, 409 with the
// reason when the daemon refuses (changeover.source is not "http", the
// bundle failed), 501 when the daemon has no product changeover, and a
// browser's form submission is redirected to / (303). Cross-site browser
// requests are refused with 403, like every POST route.
//
// plus Options.Extra, mounted as given. JSON errors have the form
// {"error":"…"}. The package is pure Go (CGO_ENABLED=0).
//
// Access control (docs/security.md): without Options.UsersFile every
// request is the user "local" with the admin role, as on loopback. With
// it, every request needs a session (GET /login shows the login page,
// POST /login logs in, POST /logout ends it) except GET/HEAD of
// Options.OpenPaths; GET and HEAD need the role viewer, the operator's
// POSTs (trigger, pause, resume, product, clear-fault, labels,
// /api/review/…) operator, and every other request admin. Every request
// that is not GET or HEAD needs the session's CSRF token (header
// X-CSRF-Token or form field csrf_token) and a same-site origin, and
// writes an audit line (component=audit). Handlers read the user with
// UserFrom and the token with CSRFToken. With Options.TLSCert/TLSKey the
// server speaks HTTPS; Reload swaps in a new certificate and users file.
//
// Lifecycle: New checks the options and builds the routes; it binds no
// socket and starts nothing. Start(ctx, host) binds the listener and
// serves in a goroutine; host is the daemon, through the methods the
// handlers call (Host). Close shuts the server down and waits for that
// goroutine. Until Start, the routes that need the daemon (/, /healthz,
// /api/status, /api/trigger, /api/clear-fault) answer 503.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inspectd/inspectd/inspection"
)

// EventHistory is the number of events kept for /api/events and the page.
const EventHistory = 50

// Image pacing for WantsImage: NG and ERROR parts get the pixels when the
// previous snapshot is at least imageGapReject old, OK parts when it is at
// least imageGapOK old, so at most two snapshots a second are copied and a
// defect is shown in preference to a good part.
const (
	imageGapReject = 500 * time.Millisecond
	imageGapOK     = time.Second
	noImage        = math.MinInt64 / 2 // lastImage before the first image
)

// The daemon's interfaces the Server implements.
var (
	_ inspection.Sink      = (*Server)(nil)
	_ inspection.ImageSink = (*Server)(nil)
	_ inspection.EventSink = (*Server)(nil)
)

// Host is what the handlers need from the daemon: its status (/,
// /healthz, /api/status), the software trigger (POST /api/trigger) and
// the operator's clear-fault command (POST /api/clear-fault).
// *daemon.Daemon implements it.
type Host interface {
	// Trigger asks for one inspected part; the error says why it was
	// refused.
	Trigger(partID, source string) error
	// Status returns a snapshot of the daemon.
	Status() inspection.Status
	// ClearFaults clears every output's latched fault; the error says why
	// it could not (no output latches faults).
	ClearFaults() error
}

// Options configures a Server.
type Options struct {
	// Listen is the host:port to bind, config.HTTP.Listen (required; port
	// 0 picks a free port, see Server.Addr).
	Listen string
	// Logger receives the server's logs (with component=web); nil
	// discards them.
	Logger *slog.Logger
	// Gatherer is served on /metrics; nil answers 404 there.
	Gatherer prometheus.Gatherer
	// History is the number of results kept, config.HTTP.History (at
	// least 1).
	History int
	// Extra are additional routes mounted as given (ServeMux patterns),
	// e.g. "/api/actuations" from the GPIO package. They must not clash
	// with the server's own routes. The access policy applies to them
	// like to every route.
	Extra map[string]http.Handler

	// UsersFile is config.HTTP.UsersFile: with it every request needs a
	// login (see the package documentation, "Access control"); empty:
	// every request is the user "local" (admin), as on loopback.
	UsersFile string
	// SessionTTL is how long a login lasts (0: DefaultSessionTTL).
	SessionTTL time.Duration
	// OpenPaths are served without login (GET, HEAD) when UsersFile is
	// set, e.g. "/healthz", "/metrics".
	OpenPaths []string
	// TLSCert and TLSKey are PEM files; both set serves HTTPS (the
	// session cookie is then Secure). Reload re-reads them.
	TLSCert, TLSKey string
	// Review turns on the review view of the archive (review.go); zero: off.
	Review ReviewOptions
}

// Server is the HTTP server, and the "web" sink feeding it.
type Server struct {
	log     *slog.Logger
	audit   *slog.Logger // component=audit: every state-changing request
	auth    *auth        // nil: no users file
	certs   *certStore   // nil: plain HTTP
	login   *loginPage
	host    atomic.Pointer[Host] // set by Start
	listen  string
	history int
	handler http.Handler
	page    *page
	review  *reviewer // nil: no review view (review.go)

	mu      sync.Mutex
	results []inspection.Result // ring, Snapshot always nil
	next    int                 // index of the next write
	n       int                 // results held
	events  []inspection.Event  // ring of EventHistory
	enext   int
	en      int
	latest  *snapshotEntry // newest snapshot, nil before the first

	base      time.Time    // monotonic origin for lastImage
	lastImage atomic.Int64 // ns since base of the last wanted image; noImage: none

	life       sync.Mutex // serialises Start and Close; guards the fields below
	httpServer *http.Server
	ln         net.Listener
	serveDone  chan struct{} // closed when the serving goroutine returns
	closed     bool
	closeErr   error
}

// New checks the options and builds the routes. It binds no socket and
// starts nothing; Start does.
func New(o Options) (*Server, error) {
	if o.Listen == "" {
		return nil, errors.New("web: Options.Listen is empty")
	}
	if o.History < 1 {
		return nil, fmt.Errorf("web: history %d must be at least 1", o.History)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pg, err := newPage()
	if err != nil {
		return nil, err
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("web: Options.TLSCert and TLSKey must be set together")
	}
	lp, err := newLoginPage(pg)
	if err != nil {
		return nil, err
	}
	wlog := log.With("component", "web")
	a, err := newAuth(o, wlog)
	if err != nil {
		return nil, err
	}
	var certs *certStore
	if o.TLSCert != "" {
		if certs, err = newCertStore(o.TLSCert, o.TLSKey, wlog); err != nil {
			return nil, err
		}
	}
	s := &Server{
		log:     wlog,
		audit:   log.With("component", "audit"),
		auth:    a,
		certs:   certs,
		login:   lp,
		listen:  o.Listen,
		history: o.History,
		page:    pg,
		results: make([]inspection.Result, o.History),
		events:  make([]inspection.Event, EventHistory),
		base:    time.Now(),
	}
	s.lastImage.Store(noImage)
	if s.review, err = newReviewer(o.Review, log); err != nil {
		return nil, err
	}
	h, err := s.routes(o.Gatherer, o.Extra)
	if err != nil {
		return nil, err
	}
	s.handler = h
	return s, nil
}

// Handler returns the server's routes, for tests and for mounting under
// another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds the listener and serves in a goroutine until Close; the
// handlers ask host for the status and for software triggers. A listen
// error names the address, e.g. "http.listen 127.0.0.1:9120: address
// already in use"; nothing is left open then. ctx bounds the bind only.
func (s *Server) Start(ctx context.Context, host Host) error {
	if host == nil {
		return errors.New("web: start: host is nil")
	}
	s.life.Lock()
	defer s.life.Unlock()
	switch {
	case s.closed:
		return errors.New("web: start: server is closed")
	case s.httpServer != nil:
		return errors.New("web: start: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.listen)
	if err != nil {
		// "address already in use" rather than "listen tcp …: bind: …".
		var se *os.SyscallError
		var op *net.OpError
		if errors.As(err, &se) {
			err = se.Err
		} else if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return fmt.Errorf("http.listen %s: %w", s.listen, err)
	}
	s.host.Store(&host)
	s.ln = ln
	s.httpServer = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.certs != nil {
		s.httpServer.TLSConfig = s.certs.config()
		ln = tls.NewListener(ln, s.httpServer.TLSConfig)
	}
	s.serveDone = make(chan struct{})
	srv, addr := s.httpServer, ln.Addr().String()
	go func() {
		defer close(s.serveDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "addr", addr, "err", err)
			return
		}
		s.log.Info("http server stopped", "addr", addr)
	}()
	s.log.Info("http server listening", "addr", ln.Addr().String(), "tls", s.certs != nil, "login", s.auth != nil)
	return nil
}

// URL returns the status page's address, "http://host:port/" or
// "https://…", or "" before Start.
func (s *Server) URL() string {
	a := s.Addr()
	if a == "" {
		return ""
	}
	if s.certs != nil {
		return "https://" + a + "/"
	}
	return "http://" + a + "/"
}

// Reload re-reads the TLS certificate and key and the users file (the
// daemon's SIGHUP). What does not load keeps the running one, is logged
// and returned; sessions of users removed or given another role end.
func (s *Server) Reload() error {
	var errs []error
	if s.certs != nil {
		if err := s.certs.reload(); err != nil {
			s.log.Error("TLS certificate not reloaded; keeping the running one", "err", err)
			errs = append(errs, err)
		}
	}
	if s.auth != nil {
		users, warnings, err := LoadUsers(s.auth.usersFile)
		if err != nil {
			s.log.Error("users file not reloaded; keeping the running users", "err", err)
			errs = append(errs, err)
		} else {
			logWarnings(s.log, warnings)
			s.auth.users.Store(&users)
			s.log.Info("users file reloaded", "file", s.auth.usersFile, "users", len(users))
		}
	}
	return errors.Join(errs...)
}

// Addr returns the bound address (host:port), or "" before Start.
func (s *Server) Addr() string {
	s.life.Lock()
	defer s.life.Unlock()
	return s.addr()
}

func (s *Server) addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close shuts the HTTP server down gracefully within ctx (then closes the
// remaining connections) and waits for the serving goroutine. It is safe
// to call twice or without Start; a later Start fails.
func (s *Server) Close(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	if s.httpServer == nil {
		return nil
	}
	if err := s.httpServer.Shutdown(ctx); err != nil {
		_ = s.httpServer.Close()
		s.closeErr = fmt.Errorf("http shutdown %s: %w", s.addr(), err)
	}
	<-s.serveDone
	return s.closeErr
}

// daemon returns the Host given to Start, or answers 503 and returns nil
// before Start.
func (s *Server) daemon(w http.ResponseWriter) Host {
	h := s.host.Load()
	if h == nil {
		writeError(w, http.StatusServiceUnavailable, "web: server not started")
		return nil
	}
	return *h
}

// Name returns "web".
func (s *Server) Name() string { return "web" }

// Deliver records r (without its pixels) in the history, and its snapshot,
// when it has one, as the latest image. It does not allocate for results
// without a snapshot.
func (s *Server) Deliver(_ context.Context, r *inspection.Result) error {
	var e *snapshotEntry
	if r.Snapshot != nil {
		e = &snapshotEntry{res: *r, snap: r.Snapshot}
		e.res.Snapshot = nil
	}
	s.mu.Lock()
	s.results[s.next] = *r
	s.results[s.next].Snapshot = nil
	s.next = (s.next + 1) % len(s.results)
	if s.n < len(s.results) {
		s.n++
	}
	if e != nil {
		s.latest = e
	}
	s.mu.Unlock()
	return nil
}

// WantsImage reports whether r should carry a snapshot: NG and ERROR parts
// when the last snapshot is at least 0.5 s old, OK parts when it is at
// least 1 s old; never an ERROR without a frame. It is lock-free.
func (s *Server) WantsImage(r *inspection.Result) bool {
	gap := imageGapOK
	if r.Verdict.Rejects() {
		if r.Verdict == inspection.Error && r.FrameSeq == 0 {
			return false
		}
		gap = imageGapReject
	}
	now := int64(time.Since(s.base))
	last := s.lastImage.Load()
	if now-last < int64(gap) {
		return false
	}
	return s.lastImage.CompareAndSwap(last, now)
}

// Event records e among the last EventHistory events. It does not block
// beyond a short critical section.
func (s *Server) Event(e inspection.Event) {
	s.mu.Lock()
	s.events[s.enext] = e
	s.enext = (s.enext + 1) % len(s.events)
	if s.en < len(s.events) {
		s.en++
	}
	s.mu.Unlock()
}

// recentResults returns up to n results, newest first.
func (s *Server) recentResults(n int) []inspection.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, s.n)
	out := make([]inspection.Result, n)
	for i := range n {
		out[i] = s.results[(s.next-1-i+2*len(s.results))%len(s.results)]
	}
	return out
}

// recentEvents returns up to n events, newest first.
func (s *Server) recentEvents(n int) []inspection.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, s.en)
	out := make([]inspection.Event, n)
	for i := range n {
		out[i] = s.events[(s.enext-1-i+2*len(s.events))%len(s.events)]
	}
	return out
}

// latestSnapshot returns the newest snapshot entry, or nil.
func (s *Server) latestSnapshot() *snapshotEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/inspectd/inspectd/inspection"
)

// Request limits.
const (
	defaultResultsN = 20   // /api/results without n
	defaultEventsN  = 20   // /api/events without n
	maxTriggerBody  = 4096 // bytes of a POST /api/trigger body
	maxPartIDLen    = 128  // characters of a part ID
	jsonContentType = "application/json; charset=utf-8"
)

// The body types POST /api/trigger reads.
const (
	mediaJSON = "application/json"
	mediaForm = "application/x-www-form-urlencoded"
	// triggerTypes is the Accept-Post header of a 415 answer.
	triggerTypes = mediaJSON + ", " + mediaForm
	// triggerHowTo ends every 415 answer's error text.
	triggerHowTo = `send application/json {"part_id":"…"}, an HTML form (application/x-www-form-urlencoded) with part_id, or no body and no Content-Type (part_id in the query, or none)`
)

// routes builds the mux: the server's own routes, then extra.
func (s *Server) routes(g prometheus.Gatherer, extra map[string]http.Handler) (http.Handler, error) {
	mux := http.NewServeMux()
	own := map[string]http.Handler{
		"/{$}":             s.readOnly(http.HandlerFunc(s.handlePage)),
		"/healthz":         s.readOnly(http.HandlerFunc(s.handleHealth)),
		"/api/status":      s.readOnly(http.HandlerFunc(s.handleStatus)),
		"/api/results":     s.readOnly(http.HandlerFunc(s.handleResults)),
		"/api/events":      s.readOnly(http.HandlerFunc(s.handleEvents)),
		"/api/latest.jpg":  s.readOnly(http.HandlerFunc(s.handleLatestJPEG)),
		"/api/trigger":     http.HandlerFunc(s.handleTrigger),
		"/api/clear-fault": http.HandlerFunc(s.handleClearFault),
		"/api/product":     http.HandlerFunc(s.handleProduct),
		"/metrics":         s.metricsHandler(g),
	}
	for p, h := range own {
		mux.Handle(p, h)
	}
	s.reviewRoutes(mux) // review.go
	for p, h := range extra {
		if err := mount(mux, p, h); err != nil {
			return nil, err
		}
	}
	// The access policy sees every request before any route (default
	// deny: a route nobody listed in requiredRole needs admin to POST).
	return securityHeaders(s.guard(mux)), nil
}

// mount registers an extra route, turning the mux's panics (bad pattern,
// clash with another route) into an error.
func mount(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if h == nil {
		return fmt.Errorf("web: extra route %q has a nil handler", pattern)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("web: extra route %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// metricsHandler serves g, or 404 without a gatherer.
func (s *Server) metricsHandler(g prometheus.Gatherer) http.Handler {
	if g == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "metrics are not enabled")
		})
	}
	return s.readOnly(promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s},
		ErrorHandling: promhttp.ContinueOnError,
	}))
}

// promLogger passes promhttp's errors to the server's logger.
type promLogger struct{ s *Server }

// Println logs one promhttp error.
func (l promLogger) Println(v ...any) {
	l.s.log.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}

// securityHeaders sets headers every response should carry.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// readOnly answers 405 to everything but GET and HEAD.
func (s *Server) readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; use GET", r.Method, r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", jsonContentType)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// apiError is the body of every JSON error.
type apiError struct {
	Error string `json:"error"`
}

// writeError writes {"error": msg} with status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// healthBody is the body of /healthz.
type healthBody struct {
	Status   string   `json:"status"`
	Problems []string `json:"problems,omitempty"`
}

// handleHealth answers 200 when the daemon is healthy, else 503 with the
// problems.
func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	d := s.daemon(w)
	if d == nil {
		return
	}
	st := d.Status()
	if st.Healthy {
		writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
		return
	}
	p := st.Problems
	if len(p) == 0 {
		p = []string{"unhealthy (no reason given)"}
	}
	writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "unhealthy", Problems: p})
}

// handleStatus serves inspection.Status.
func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	d := s.daemon(w)
	if d == nil {
		return
	}
	writeJSON(w, http.StatusOK, d.Status())
}

// countParam parses the n query parameter: def when absent, else an
// integer in [1, limit].
func countParam(q url.Values, def, limit int) (int, error) {
	raw, ok := q["n"]
	if !ok {
		return min(def, limit), nil
	}
	v := ""
	if len(raw) > 0 {
		v = raw[0]
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > limit || len(raw) > 1 {
		return 0, fmt.Errorf("parameter n: want one integer from 1 to %d, got %q", limit, strings.Join(raw, ","))
	}
	return n, nil
}

// resultsBody is the body of /api/results.
type resultsBody struct {
	Count   int                 `json:"count"`
	Results []inspection.Result `json:"results"` // newest first
	// LatestImage describes the part /api/latest.jpg shows (absent
	// before the first snapshot).
	LatestImage *imageInfo `json:"latest_image,omitempty"`
}

// imageInfo names the part behind /api/latest.jpg.
type imageInfo struct {
	ResultID    string             `json:"result_id"`
	PartID      string             `json:"part_id"`
	Verdict     inspection.Verdict `json:"verdict"`
	VerdictTime time.Time          `json:"verdict_time"`
}

// handleResults serves the last n results, newest first.
func (s *Server) handleResults(w http.ResponseWriter, r *http.Request) {
	n, err := countParam(r.URL.Query(), defaultResultsN, s.history)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res := s.recentResults(n)
	body := resultsBody{Count: len(res), Results: res}
	if e := s.latestSnapshot(); e != nil {
		body.LatestImage = e.info()
	}
	writeJSON(w, http.StatusOK, body)
}

// eventsBody is the body of /api/events.
type eventsBody struct {
	Count  int                `json:"count"`
	Events []inspection.Event `json:"events"` // newest first
}

// handleEvents serves the last n events, newest first.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	n, err := countParam(r.URL.Query(), defaultEventsN, EventHistory)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ev := s.recentEvents(n)
	writeJSON(w, http.StatusOK, eventsBody{Count: len(ev), Events: ev})
}

// triggerRequest is the JSON body of POST /api/trigger.
type triggerRequest struct {
	PartID string `json:"part_id"`
}

// triggerResponse is the body of an accepted trigger.
type triggerResponse struct {
	Accepted bool   `json:"accepted"`
	PartID   string `json:"part_id"` // "" when the daemon numbers the part
}

// handleTrigger asks the daemon for one inspected part.
func (s *Server) handleTrigger(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r, "/api/trigger", "trigger") {
		return
	}
	partID, err := triggerPartID(w, r)
	if err != nil {
		s.refuseBody(w, r, "software trigger refused", err)
		return
	}
	d := s.daemon(w)
	if d == nil {
		return
	}
	if err := d.Trigger(partID, inspection.TriggerSoftware); err != nil {
		s.log.Info("software trigger refused", "part_id", partID, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.log.Debug("software trigger", "part_id", partID, "remote", r.RemoteAddr)
	if isBrowserForm(r) {
		// The page's no-JavaScript form: back to the page.
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusAccepted, triggerResponse{Accepted: true, PartID: partID})
}

// refuseBody answers a POST whose body could not be read (postedField):
// 415 with Accept-Post for a content type it does not read, 400 otherwise.
func (s *Server) refuseBody(w http.ResponseWriter, r *http.Request, msg string, err error) {
	code := http.StatusBadRequest
	var ue unsupportedTypeError
	if errors.As(err, &ue) {
		code = http.StatusUnsupportedMediaType
		w.Header().Set("Accept-Post", triggerTypes)
	}
	s.log.Info(msg, "remote", r.RemoteAddr, "content_type", r.Header.Get("Content-Type"), "err", err)
	writeError(w, code, err.Error())
}

// unsupportedTypeError is a trigger request whose body the handler does
// not read (415): its part ID would be lost.
type unsupportedTypeError struct{ msg string }

func (e unsupportedTypeError) Error() string { return e.msg }

// triggerField is the one field POST /api/trigger reads.
var triggerField = postedField{
	path: "/api/trigger", name: "part_id", howTo: triggerHowTo, lost: " (its part ID would be lost)",
	queryFallback: true,
	decodeJSON: func(dec *json.Decoder) (string, error) {
		var req triggerRequest
		err := dec.Decode(&req)
		return req.PartID, err
	},
}

// triggerPartID reads the part ID of a trigger request: from a JSON body
// (the query's part_id when the body has none), from an HTML form body
// (part_id, the only field), or from the query when there is neither a
// body nor a Content-Type. Other content types, and a body without one,
// are an unsupportedTypeError.
func triggerPartID(w http.ResponseWriter, r *http.Request) (string, error) {
	id, err := triggerField.read(w, r)
	if err != nil {
		return "", err
	}
	id = strings.TrimSpace(id)
	if len([]rune(id)) > maxPartIDLen {
		return "", fmt.Errorf("part_id: longer than %d characters", maxPartIDLen)
	}
	if strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return "", errors.New("part_id: contains control characters")
	}
	return id, nil
}

// postedField is the one field a small POST endpoint reads: from a JSON
// body, from an HTML form body (the only field), or from the query when
// there is neither a body nor a Content-Type. Other content types, and a
// body without one, are an unsupportedTypeError.
type postedField struct {
	path  string // the endpoint, for messages
	name  string // the JSON, form and query field
	howTo string // ends every unsupportedTypeError
	lost  string // why a body is not read, e.g. " (its part ID would be lost)"
	// queryFallback: an empty JSON body, or a JSON body without the
	// field, takes the query's field.
	queryFallback bool
	// decodeJSON decodes the JSON body into the endpoint's request type
	// and returns the field.
	decodeJSON func(*json.Decoder) (string, error)
}

// read returns the field's value as sent (unchecked).
func (f postedField) read(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTriggerBody)
	raw := r.Header.Get("Content-Type")
	var ct string
	if strings.TrimSpace(raw) != "" {
		var err error
		ct, _, err = mime.ParseMediaType(raw)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return "", unsupportedTypeError{fmt.Sprintf("Content-Type %q cannot be parsed (%v); %s", raw, err, f.howTo)}
		}
	}
	var v string
	switch ct {
	case "":
		b, err := readBody(r)
		if err != nil {
			return "", err
		}
		if len(strings.TrimSpace(string(b))) > 0 {
			return "", unsupportedTypeError{"a body without a Content-Type is not read" + f.lost + "; " + f.howTo}
		}
		return r.URL.Query().Get(f.name), nil
	case mediaJSON:
		b, err := readBody(r)
		if err != nil {
			return "", err
		}
		if !f.queryFallback || len(strings.TrimSpace(string(b))) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			if v, err = f.decodeJSON(dec); err != nil {
				return "", fmt.Errorf("body: want JSON {%q: \"…\"}: %w", f.name, err)
			}
		}
		if v == "" && f.queryFallback {
			v = r.URL.Query().Get(f.name)
		}
		return v, nil
	case mediaForm:
		if err := r.ParseForm(); err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				return "", fmt.Errorf("body larger than %d bytes", maxTriggerBody)
			}
			return "", fmt.Errorf("form: %w", err)
		}
		for k := range r.PostForm {
			if k != f.name {
				// e.g. curl -d '{"part_id":"A1"}' without a JSON
				// Content-Type: the field would be lost.
				return "", fmt.Errorf("form: unknown field %q; the only field is %s (for a JSON body set Content-Type: application/json)", k, f.name)
			}
		}
		if f.queryFallback {
			return r.Form.Get(f.name), nil // the form's, else the query's
		}
		return r.PostForm.Get(f.name), nil
	}
	return "", unsupportedTypeError{fmt.Sprintf("Content-Type %q is not accepted on %s%s; %s", ct, f.path, f.lost, f.howTo)}
}

// readBody reads a trigger body within maxTriggerBody.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, fmt.Errorf("body larger than %d bytes", maxTriggerBody)
		}
		return nil, fmt.Errorf("body: %w", err)
	}
	return b, nil
}

// clearFaultResponse is the body of a successful POST /api/clear-fault.
type clearFaultResponse struct {
	Cleared bool `json:"cleared"`
	// Problems are the station's problems after clearing (empty when
	// healthy): a fault whose cause persists latches again.
	Problems []string `json:"problems"`
}

// handleClearFault asks the daemon to clear its outputs' latched faults
// (the operator's command after fixing the cause). It reads no body.
func (s *Server) handleClearFault(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r, "/api/clear-fault", "clear-fault") {
		return
	}
	d := s.daemon(w)
	if d == nil {
		return
	}
	if err := d.ClearFaults(); err != nil {
		s.log.Info("clear-fault refused", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.log.Info("operator cleared the latched output faults over HTTP", "remote", r.RemoteAddr)
	if isBrowserForm(r) {
		// The page's no-JavaScript button: back to the page.
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	p := d.Status().Problems
	if p == nil {
		p = []string{}
	}
	writeJSON(w, http.StatusOK, clearFaultResponse{Cleared: true, Problems: p})
}

// acceptPost refuses a request to the state-changing endpoint path that
// is not a same-site POST — 405 with Allow: POST, or 403 for a cross-site
// one, action naming what was refused — and says whether the handler may
// go on.
func acceptPost(w http.ResponseWriter, r *http.Request, path, action string) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; use POST", r.Method, path))
		return false
	}
	if crossSite(r) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("cross-site %s refused", action))
		return false
	}
	return true
}

// crossSite reports whether a browser sent the request from another site
// (a form on some other page posting to the station): Sec-Fetch-Site, or
// an Origin whose host is not ours ("null" unless Sec-Fetch-Site says
// same-origin). Clients that are not browsers send neither.
func crossSite(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs == "cross-site" {
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	if o == "null" {
		// Browsers send "null" for a form posted from a page served
		// with Referrer-Policy: no-referrer (ours): then only
		// Sec-Fetch-Site, which a page cannot forge, says same-origin.
		return r.Header.Get("Sec-Fetch-Site") != "same-origin"
	}
	u, err := url.Parse(o)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// isBrowserForm reports whether r is an HTML form submission by a browser
// (which should land on a page, not on JSON).
func isBrowserForm(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/x-www-form-urlencoded" && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// handleLatestJPEG serves the newest snapshot with its overlay, rendered
// on first request. The ETag is the result ID.
func (s *Server) handleLatestJPEG(w http.ResponseWriter, r *http.Request) {
	e := s.latestSnapshot()
	if e == nil {
		writeError(w, http.StatusNotFound, "no image yet")
		return
	}
	etag := strconv.Quote(e.res.ID)
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", etag)
	h.Set("X-Result-ID", e.res.ID)
	h.Set("X-Verdict", string(e.res.Verdict))
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b, err := e.JPEG()
	if err != nil {
		s.log.Warn("rendering the latest image failed", "result_id", e.res.ID, "err", err)
		h.Del("ETag")
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// pageFiles holds the status page: the template, and the stylesheet and
// script inlined into it (the plant network has no internet, so the page
// loads nothing from elsewhere).
//
//go:embed assets/page.html assets/page.css assets/page.js
var pageFiles embed.FS

// pageRows is the number of results and events on the page.
const (
	pageResults = 20
	pageEvents  = 15
)

// page is the parsed status page with its Content-Security-Policy, which
// allows exactly the inlined script and stylesheet.
type page struct {
	tmpl   *template.Template
	css    template.CSS
	script template.JS
	csp    string
	// cssHash is the CSP source of the stylesheet, for the login page.
	cssHash string
}

// newPage parses the embedded template.
func newPage() (*page, error) {
	read := func(name string) (string, error) {
		b, err := pageFiles.ReadFile("assets/" + name)
		if err != nil {
			return "", fmt.Errorf("web: status page: %w", err)
		}
		return string(b), nil
	}
	html, err := read("page.html")
	if err != nil {
		return nil, err
	}
	css, err := read("page.css")
	if err != nil {
		return nil, err
	}
	js, err := read("page.js")
	if err != nil {
		return nil, err
	}
	t, err := template.New("page").Funcs(template.FuncMap{
		"short":    shortHash,
		"duration": humanDuration,
		"clock":    clock,
		"ms":       func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"score":    func(v float64) string { return fmt.Sprintf("%.3f", v) },
		"rate":     func(v float64) string { return fmt.Sprintf("%.2f", v) },
		"camClass": cameraClass,
		"lower":    strings.ToLower,
		"join":     strings.Join,
	}).Parse(html)
	if err != nil {
		return nil, fmt.Errorf("web: status page template: %w", err)
	}
	hash := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
	}
	return &page{
		tmpl:    t,
		css:     template.CSS(css),
		script:  template.JS(js),
		cssHash: hash(css),
		csp: "default-src 'none'; img-src 'self'; connect-src 'self'; " +
			"script-src " + hash(js) + "; style-src " + hash(css) + "; " +
			"form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
	}, nil
}

// pageData is what the template renders.
type pageData struct {
	Status   inspection.Status
	Last     *inspection.Result // newest result, nil before the first
	Results  []inspection.Result
	Events   []inspection.Event
	Image    *imageInfo
	Software bool // the trigger mode takes software triggers
	Script   template.JS
	CSS      template.CSS
	// CSRF is the session's token for the forms ("" without login);
	// User and Role name the logged-in user.
	CSRF, User, Role string
}

// handlePage renders the status page with the current data; its script
// then keeps it current by polling the JSON API every second.
func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	host := s.daemon(w)
	if host == nil {
		return
	}
	st := host.Status()
	d := pageData{
		Status:   st,
		Results:  s.recentResults(pageResults),
		Events:   s.recentEvents(pageEvents),
		Software: st.Trigger == inspection.TriggerSoftware,
		Script:   s.page.script,
		CSS:      s.page.css,
		CSRF:     CSRFToken(r),
	}
	d.User, d.Role = UserFrom(r.Context())
	if len(d.Results) > 0 {
		d.Last = &d.Results[0]
	}
	if e := s.latestSnapshot(); e != nil {
		d.Image = e.info()
	}
	var buf bytes.Buffer
	if err := s.page.tmpl.Execute(&buf, d); err != nil {
		s.log.Error("rendering the status page failed", "err", err)
		writeError(w, http.StatusInternalServerError, "rendering the status page failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", s.page.csp)
	_, _ = w.Write(buf.Bytes())
}

// shortHash returns the first 12 characters of a bundle hash.
func shortHash(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// humanDuration formats seconds as "3d 4h", "4h 12m", "12m 5s" or "5s".
func humanDuration(sec float64) string {
	if !(sec >= 0) || math.IsInf(sec, 0) {
		return "–"
	}
	s := int64(sec)
	d, h, m := s/86400, s/3600%24, s/60%60
	switch {
	case d > 0:
		return fmt.Sprintf("%dd %dh", d, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

// clock formats a time of day with milliseconds, "–" for the zero time.
func clock(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.Local().Format("15:04:05.000")
}

// cameraClass returns the badge class for a camera state.
func cameraClass(s inspection.CameraState) string {
	switch s {
	case inspection.CameraOnline:
		return "good"
	case inspection.CameraStarting, inspection.CameraReconnecting:
		return "warn"
	}
	return "bad"
}

package web

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
)

// loginFile is the login page (no script; the status page's stylesheet).
//
//go:embed assets/login.html
var loginFile string

// loginPage is the parsed login page.
type loginPage struct {
	tmpl *template.Template
	csp  string
}

func newLoginPage(p *page) (*loginPage, error) {
	t, err := template.New("login").Parse(loginFile)
	if err != nil {
		return nil, fmt.Errorf("web: login page template: %w", err)
	}
	return &loginPage{tmpl: t, csp: "default-src 'none'; style-src " + p.cssHash + "; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"}, nil
}

// renderLogin answers the login page with code, the path to go to after
// the login, and an error line (empty: none).
func (s *Server) renderLogin(w http.ResponseWriter, code int, next, msg string) {
	var buf bytes.Buffer
	err := s.login.tmpl.Execute(&buf, struct {
		CSS   template.CSS
		Next  string
		Error string
	}{s.page.css, localPath(next), msg})
	if err != nil {
		s.log.Error("rendering the login page failed", "err", err)
		writeError(w, http.StatusInternalServerError, "rendering the login page failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.login.csp)
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

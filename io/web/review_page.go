package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/labels"
)

// reviewFiles holds the review page: template, stylesheet and script,
// inlined like the status page's (no CDN: stations are offline).
//
//go:embed assets/review.html assets/review.css assets/review.js
var reviewFiles embed.FS

// reviewTmpl is the parsed review page and its Content-Security-Policy.
type reviewTmpl struct {
	tmpl   *template.Template
	css    template.CSS
	script template.JS
	csp    string
}

var (
	reviewOnce   sync.Once
	reviewParsed *reviewTmpl
	reviewErr    error
)

// reviewPage parses the embedded review page once.
func reviewPage() (*reviewTmpl, error) {
	reviewOnce.Do(func() {
		read := func(name string) string {
			b, err := reviewFiles.ReadFile("assets/" + name)
			if err != nil && reviewErr == nil {
				reviewErr = fmt.Errorf("web: review page: %w", err)
			}
			return string(b)
		}
		html, css, js := read("review.html"), read("review.css"), read("review.js")
		if reviewErr != nil {
			return
		}
		t, err := template.New("review").Funcs(template.FuncMap{
			"inc": func(i int) int { return i + 1 },
		}).Parse(html)
		if err != nil {
			reviewErr = fmt.Errorf("web: review page template: %w", err)
			return
		}
		hash := func(s string) string {
			h := sha256.Sum256([]byte(s))
			return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
		}
		reviewParsed = &reviewTmpl{tmpl: t, css: template.CSS(css), script: template.JS(js),
			csp: "default-src 'none'; img-src 'self'; connect-src 'self'; " +
				"script-src " + hash(js) + "; style-src " + hash(css) + "; " +
				"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"}
	})
	return reviewParsed, reviewErr
}

// reviewFilterText is the filter as typed, for the form.
type reviewFilterText struct {
	Verdict, Reason, Product, Since, Until, MinScore, MaxScore string
}

// reviewRow is one row of the page's list.
type reviewRow struct {
	ID, Href, Time, Verdict, Product, Score, Reason string
	Label                                           *labels.Entry
	Selected                                        bool
}

// historyLine is one label change in the detail.
type historyLine struct {
	When, User, Old, New, Note string
}

// reviewSel is the selected result's detail.
type reviewSel struct {
	ID                       string
	R                        inspection.Result
	Frame, Overlay           bool
	Score, Threshold         string
	Time, Latency            string
	LabelName, DefectType    string
	Previous, PreviousDefect string
	History                  []historyLine
}

// reviewData is what the review template renders.
type reviewData struct {
	Station, User, CSRF, LabelLog, Error string
	F                                    reviewFilterText
	Results                              []reviewRow
	Total, Page, Pages                   int
	PrevPage, NextPage                   string
	Sel                                  *reviewSel
	DefectTypes                          []string
	Plots                                []plotGroup
	CSS                                  template.CSS
	Script                               template.JS
}

// labelText is "defect: scratch", "good", or "none".
func labelText(l, t string) string {
	switch {
	case l == "":
		return "none"
	case t != "":
		return l + ": " + t
	}
	return l
}

// handleReviewPage renders /review: the filter form, one page of the
// filtered archive (newest first), the selected result (?id=, else the
// first of the page) with its images, regions, label and history, and
// the plots. Everything is server-rendered; the script only adds keys.
func (s *Server) handleReviewPage(w http.ResponseWriter, r *http.Request) {
	pg, err := reviewPage()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	rv := s.review
	q := r.URL.Query()
	d := reviewData{Station: "inspectd", User: reviewUser(r), CSRF: CSRFToken(r), LabelLog: rv.logPath,
		DefectTypes: rv.defectTypes, CSS: pg.css, Script: pg.script, Page: 1, Pages: 1}
	if h := s.host.Load(); h != nil {
		d.Station = (*h).Status().Station.ID
	}
	d.F = reviewFilterText{Verdict: q.Get("verdict"), Reason: q.Get("reason"), Product: q.Get("product"),
		Since: q.Get("since"), Until: q.Get("until"), MinScore: q.Get("min_score"), MaxScore: q.Get("max_score")}
	code := http.StatusOK
	f, err := parseFilter(q)
	if err != nil {
		d.Error, code = err.Error(), http.StatusBadRequest
	}
	if f.PerPage == 0 {
		f.PerPage = reviewPageSize
	}
	selID := q.Get("id")
	if d.Error == "" {
		l, err := rv.list(f)
		if err != nil {
			s.log.Error("listing the archive failed", "component", "review", "err", err)
			d.Error, code = "listing the archive failed: "+err.Error(), http.StatusInternalServerError
		}
		d.Total, d.Page = l.Total, max(l.Page, 1)
		d.Pages = max(1, (l.Total+f.PerPage-1)/f.PerPage)
		link := func(id string, page int) string {
			v := url.Values{}
			for k, vs := range q {
				if k != "id" && k != "page" && len(vs) > 0 && vs[0] != "" {
					v.Set(k, vs[0])
				}
			}
			if page > 1 {
				v.Set("page", strconv.Itoa(page))
			}
			if id != "" {
				v.Set("id", id)
			}
			if len(v) == 0 {
				return "/review"
			}
			return "/review?" + v.Encode()
		}
		if selID == "" && len(l.Results) > 0 {
			selID = l.Results[0].ID
		}
		for _, rr := range l.Results {
			d.Results = append(d.Results, reviewRow{
				ID: rr.ID, Href: link(rr.ID, d.Page), Time: rr.VerdictTime.UTC().Format("01-02 15:04:05.000"),
				Verdict: string(rr.Verdict), Product: rr.Model.Product, Score: fmt.Sprintf("%.3f", rr.Score),
				Reason: rr.Reason, Label: rr.Label, Selected: rr.ID == selID,
			})
		}
		if d.Page > 1 {
			d.PrevPage = link("", d.Page-1)
		}
		if d.Page < d.Pages {
			d.NextPage = link("", d.Page+1)
		}
		if d.Plots, err = s.plotGroups(f.Product); err != nil {
			s.log.Warn("plots failed", "component", "review", "err", err)
		}
	}
	if selID != "" {
		rec, c, err := rv.record(selID)
		if err != nil {
			if d.Error == "" {
				d.Error, code = err.Error(), c
			}
		} else {
			d.Sel = selection(rec)
		}
	}
	var buf bytes.Buffer
	if err := pg.tmpl.Execute(&buf, d); err != nil {
		s.log.Error("rendering the review page failed", "component", "review", "err", err)
		writeError(w, http.StatusInternalServerError, "rendering the review page failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pg.csp)
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// selection is the detail of one record.
func selection(rec reviewRecord) *reviewSel {
	sel := &reviewSel{ID: rec.ID, R: rec.Result, Frame: rec.Frame, Overlay: rec.Overlay,
		Score: fmt.Sprintf("%.3f", rec.Score), Threshold: fmt.Sprintf("%.3f", rec.Threshold),
		Time: rec.VerdictTime.UTC().Format("2006-01-02 15:04:05.000 UTC"), Latency: fmt.Sprintf("%.1f", rec.Latency.TotalMs)}
	if rec.Label != nil {
		sel.LabelName, sel.DefectType = rec.Label.Label, rec.Label.DefectType
		sel.Previous, sel.PreviousDefect = rec.Label.Previous, rec.Label.PreviousDefectType
	}
	for i := len(rec.History) - 1; i >= 0; i-- { // newest first
		e := rec.History[i]
		sel.History = append(sel.History, historyLine{When: e.Time.UTC().Format(time.DateTime + " UTC"), User: e.User,
			Old: labelText(e.Previous, e.PreviousDefectType), New: labelText(e.Label, e.DefectType), Note: e.Note})
	}
	return sel
}

package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive/layout"
	"github.com/inspectd/inspectd/io/labels"
)

// ReviewOptions turns on the review view of archived results (docs/review.md):
//
//	GET  /review                           list + detail page (HTML; reading works without JavaScript)
//	GET  /api/review/results?…             {"total","page","per_page","results":[…]} newest first
//	GET  /api/review/results/{id}          {"record","frame","overlay","label","history":[…]}
//	GET  /api/review/plots.svg?kind=…      a plot of the filtered results (score, ngrate, latency)
//	GET  /review/image/{id}/{frame|overlay} an image the archive wrote for that result
//	POST /api/labels                       {"result_id","label","defect_type","note"} → label log
//
// The list filters (query parameters of the page and of the list API) are
// verdict (OK, NG, ERROR), reason, product, since and until (RFC 3339),
// min_score and max_score, page and per_page (1 to 1000, default 50). A
// label is appended to the label log (io/labels) with the user of the
// request (UserFrom) and raised as an event of kind "label" through the
// daemon's ReportEvent when the Host has one (MQTT publishes events).
type ReviewOptions struct {
	// ArchiveDir is the archive directory (config archive.dir, resolved);
	// "" leaves the review routes out.
	ArchiveDir string
	// LabelLog is the label log's path (config.Config.LabelLogPath).
	LabelLog string
	// DefectTypes are the types a confirmed defect may have
	// (config review.defect_types); at least one.
	DefectTypes []string
}

// EventLabel is the kind of the event raised for every label change.
const EventLabel = "label"

// Review limits.
const (
	maxLabelBody   = 8 << 10 // bytes of a POST /api/labels body
	reviewPlotN    = 2000    // most recent results the plots summarise
	reviewPageSize = 25      // results per page of /review
)

// reviewer serves the review routes.
type reviewer struct {
	rd          *layout.Reader
	logPath     string
	defectTypes []string
	log         *slog.Logger

	mu sync.Mutex // serialises label changes: read the current label, append
}

// reportEventer is the part of the daemon that raises events; the Host
// given to Start has it when it is the daemon.
type reportEventer interface {
	ReportEvent(inspection.Event)
}

// newReviewer checks o; nil (no review routes) when o.ArchiveDir is "".
func newReviewer(o ReviewOptions, log *slog.Logger) (*reviewer, error) {
	if o.ArchiveDir == "" {
		return nil, nil
	}
	if o.LabelLog == "" {
		return nil, errors.New("web: review: ReviewOptions.LabelLog is empty")
	}
	if len(o.DefectTypes) == 0 {
		return nil, errors.New("web: review: ReviewOptions.DefectTypes is empty; list at least one defect type")
	}
	return &reviewer{
		rd:          layout.NewReader(o.ArchiveDir),
		logPath:     o.LabelLog,
		defectTypes: slices.Clone(o.DefectTypes),
		log:         log.With("component", "review"),
	}, nil
}

// reviewRoutes adds the review routes to mux when the review is on.
func (s *Server) reviewRoutes(mux *http.ServeMux) {
	rv := s.review
	if rv == nil {
		return
	}
	mux.Handle("/review", s.readOnly(http.HandlerFunc(s.handleReviewPage)))
	mux.Handle("/api/review/results", s.readOnly(http.HandlerFunc(rv.handleList)))
	mux.Handle("/api/review/results/{id}", s.readOnly(http.HandlerFunc(rv.handleRecord)))
	mux.Handle("/api/review/plots.svg", s.readOnly(http.HandlerFunc(s.handlePlot)))
	mux.Handle("/review/image/{id}/{kind}", s.readOnly(http.HandlerFunc(rv.handleImage)))
	mux.Handle("/api/labels", http.HandlerFunc(s.handleLabel))
}

// reviewUser is the user a label is given by: UserFrom, "local" when the
// request carries none (authentication off and no guard in front).
func reviewUser(r *http.Request) string {
	if name, _ := UserFrom(r.Context()); name != "" {
		return name
	}
	return "local"
}

// parseFilter reads the list filters from the query; the error names the
// parameter and what it wants.
func parseFilter(q url.Values) (layout.Filter, error) {
	var f layout.Filter
	one := func(name string) (string, error) {
		v := q[name]
		switch {
		case len(v) > 1:
			return "", fmt.Errorf("parameter %s: given %d times; give it once", name, len(v))
		case len(v) == 0:
			return "", nil
		}
		return strings.TrimSpace(v[0]), nil
	}
	for name := range q {
		switch name {
		case "verdict", "reason", "product", "since", "until", "min_score", "max_score", "page", "per_page", "id":
		default:
			return f, fmt.Errorf("parameter %s is not known; use verdict, reason, product, since, until, min_score, max_score, page, per_page", truncateText(name, 40))
		}
	}
	var err error
	if f.Verdict, err = one("verdict"); err != nil {
		return f, err
	}
	if f.Reason, err = one("reason"); err != nil {
		return f, err
	}
	if f.Product, err = one("product"); err != nil {
		return f, err
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v, err := one(p.name)
		if err != nil {
			return f, err
		}
		if v == "" {
			continue
		}
		t, err := parseReviewTime(v)
		if err != nil {
			return f, fmt.Errorf("parameter %s: %q is not a time; use RFC 3339 (2026-12-07T14:30:00Z) or a date (2026-12-07, UTC)", p.name, truncateText(v, 40))
		}
		*p.dst = t
	}
	for _, p := range []struct {
		name string
		dst  **float64
	}{{"min_score", &f.MinScore}, {"max_score", &f.MaxScore}} {
		v, err := one(p.name)
		if err != nil {
			return f, err
		}
		if v == "" {
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return f, fmt.Errorf("parameter %s: %q is not a finite number", p.name, truncateText(v, 40))
		}
		*p.dst = &x
	}
	for _, p := range []struct {
		name string
		dst  *int
		hi   int
	}{{"page", &f.Page, 1 << 20}, {"per_page", &f.PerPage, layout.MaxPerPage}} {
		v, err := one(p.name)
		if err != nil {
			return f, err
		}
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > p.hi {
			return f, fmt.Errorf("parameter %s: want an integer from 1 to %d, got %q", p.name, p.hi, truncateText(v, 40))
		}
		*p.dst = n
	}
	if err := f.Check(); err != nil {
		return f, fmt.Errorf("parameter %w", err)
	}
	f.Verdict = strings.ToUpper(f.Verdict)
	return f, nil
}

// parseReviewTime reads RFC 3339 or a UTC date.
func parseReviewTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02", v)
}

// truncateText shortens s for error messages.
func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// reviewResult is one result of the list API and the page.
type reviewResult struct {
	inspection.Result
	Frame   bool          `json:"frame"`   // the archive has the frame image
	Overlay bool          `json:"overlay"` // and the heatmap overlay
	Label   *labels.Entry `json:"label"`   // current label; null when none
}

// reviewList is the body of GET /api/review/results.
type reviewList struct {
	Total      int            `json:"total"`
	Page       int            `json:"page"`
	PerPage    int            `json:"per_page"`
	Unreadable int            `json:"unreadable,omitempty"`
	Results    []reviewResult `json:"results"`
}

// currentLabels reads the label log: the entries and the current label of
// each result. A missing log is empty.
func (rv *reviewer) currentLabels() ([]labels.Entry, map[string]labels.Entry, error) {
	entries, skipped, err := labels.ReadDetailed(rv.logPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, map[string]labels.Entry{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, sk := range skipped {
		rv.log.Warn("label log line skipped", "file", rv.logPath, "line", sk.Line, "reason", sk.Reason)
	}
	return entries, labels.Current(entries), nil
}

// list runs the filter and joins the current labels.
func (rv *reviewer) list(f layout.Filter) (reviewList, error) {
	l, err := rv.rd.List(f)
	if err != nil {
		return reviewList{}, err
	}
	_, cur, err := rv.currentLabels()
	if err != nil {
		return reviewList{}, err
	}
	out := reviewList{Total: l.Total, Page: l.Page, PerPage: l.PerPage, Unreadable: l.Unreadable, Results: make([]reviewResult, 0, len(l.Records))}
	for _, rec := range l.Records {
		out.Results = append(out.Results, joinLabel(rec, cur))
	}
	return out, nil
}

func joinLabel(rec layout.Record, cur map[string]labels.Entry) reviewResult {
	rr := reviewResult{Result: rec.Result, Frame: rec.Frame, Overlay: rec.Overlay}
	if e, ok := cur[rec.Result.ID]; ok {
		rr.Label = &e
	}
	return rr
}

// handleList serves GET /api/review/results.
func (rv *reviewer) handleList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	l, err := rv.list(f)
	if err != nil {
		rv.log.Error("listing the archive failed", "err", err)
		writeError(w, http.StatusInternalServerError, "listing the archive failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// reviewRecord is the body of GET /api/review/results/{id}.
type reviewRecord struct {
	reviewResult
	History []labels.Entry `json:"history"` // every label change, oldest first
}

// record loads one result with its label history; the status code goes
// with the error.
func (rv *reviewer) record(id string) (reviewRecord, int, error) {
	rec, err := rv.rd.Load(id)
	switch {
	case errors.Is(err, layout.ErrBadID):
		return reviewRecord{}, http.StatusBadRequest, err
	case errors.Is(err, layout.ErrNotFound):
		return reviewRecord{}, http.StatusNotFound, err
	case err != nil:
		return reviewRecord{}, http.StatusInternalServerError, err
	}
	entries, cur, err := rv.currentLabels()
	if err != nil {
		return reviewRecord{}, http.StatusInternalServerError, err
	}
	h := labels.History(entries, id)
	if h == nil {
		h = []labels.Entry{}
	}
	return reviewRecord{reviewResult: joinLabel(rec, cur), History: h}, http.StatusOK, nil
}

// handleRecord serves GET /api/review/results/{id}.
func (rv *reviewer) handleRecord(w http.ResponseWriter, r *http.Request) {
	rec, code, err := rv.record(r.PathValue("id"))
	if err != nil {
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// handleImage serves /review/image/{id}/{frame|overlay}: only a file the
// archive wrote for that result, found by the Reader from its own listing.
func (rv *reviewer) handleImage(w http.ResponseWriter, r *http.Request) {
	id, kind := r.PathValue("id"), layout.Image(r.PathValue("kind"))
	if kind != layout.ImageFrame && kind != layout.ImageOverlay {
		writeError(w, http.StatusNotFound, fmt.Sprintf("image %q is not known; use frame or overlay", truncateText(string(kind), 40)))
		return
	}
	f, mod, err := rv.rd.OpenImage(id, kind)
	switch {
	case errors.Is(err, layout.ErrBadID):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, layout.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		rv.log.Error("reading an archived image failed", "id", id, "image", kind, "err", err)
		writeError(w, http.StatusInternalServerError, "reading the image failed")
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Cache-Control", "private, max-age=3600")
	h.Set("Content-Security-Policy", "default-src 'none'")
	http.ServeContent(w, r, "", mod, f)
}

// labelRequest is the body of POST /api/labels.
type labelRequest struct {
	ResultID   string `json:"result_id"`
	Label      string `json:"label"`
	DefectType string `json:"defect_type"`
	Note       string `json:"note"`
}

// labelAnswer is the body of a successful POST /api/labels.
type labelAnswer struct {
	Label labels.Entry `json:"label"`
}

// handleLabel serves POST /api/labels: a JSON body, or an HTML form (the
// page without JavaScript, redirected back to the result, 303).
func (s *Server) handleLabel(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r, "/api/labels", "label") {
		return
	}
	rv := s.review
	form := false
	var req labelRequest
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case mediaJSON:
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLabelBody))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("label body larger than %d bytes", maxLabelBody))
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "label body: "+err.Error()+`; send {"result_id":"…","label":"good|defect|unsure","defect_type":"…","note":"…"}`)
			return
		}
	case mediaForm:
		r.Body = http.MaxBytesReader(w, r.Body, maxLabelBody)
		if err := r.ParseForm(); err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("label body larger than %d bytes", maxLabelBody))
				return
			}
			writeError(w, http.StatusBadRequest, "label form: "+err.Error())
			return
		}
		form = true
		req = labelRequest{ResultID: r.PostForm.Get("result_id"), Label: r.PostForm.Get("label"),
			DefectType: r.PostForm.Get("defect_type"), Note: r.PostForm.Get("note")}
		if req.Label != labels.Defect {
			req.DefectType = "" // the form's type picker is sent with every button
		}
	default:
		w.Header().Set("Accept-Post", mediaJSON+", "+mediaForm)
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not accepted; send application/json or an HTML form", truncateText(r.Header.Get("Content-Type"), 60)))
		return
	}
	e, code, err := rv.label(req, reviewUser(r))
	if err != nil {
		writeError(w, code, err.Error())
		return
	}
	if h := s.host.Load(); h != nil {
		if re, ok := (*h).(reportEventer); ok {
			re.ReportEvent(labelEvent(e))
		}
	}
	if form && isBrowserForm(r) {
		http.Redirect(w, r, "/review?id="+url.QueryEscape(e.ResultID), http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, labelAnswer{Label: e})
}

// label checks req against the archive and the defect types and appends
// the change to the log; the status code goes with the error.
func (rv *reviewer) label(req labelRequest, user string) (labels.Entry, int, error) {
	switch req.Label {
	case labels.Good, labels.Unsure:
		if req.DefectType != "" {
			return labels.Entry{}, http.StatusBadRequest, fmt.Errorf("label %q takes no defect_type (got %q); only \"defect\" does", req.Label, truncateText(req.DefectType, 40))
		}
	case labels.Defect:
		if req.DefectType == "" {
			return labels.Entry{}, http.StatusBadRequest, fmt.Errorf(`label "defect" needs a defect_type: one of %s`, strings.Join(rv.defectTypes, ", "))
		}
		if !slices.Contains(rv.defectTypes, req.DefectType) {
			return labels.Entry{}, http.StatusBadRequest, fmt.Errorf("defect_type %q is not known; use one of %s (review.defect_types)", truncateText(req.DefectType, 40), strings.Join(rv.defectTypes, ", "))
		}
	default:
		return labels.Entry{}, http.StatusBadRequest, fmt.Errorf("label %q is not known; use good, defect or unsure", truncateText(req.Label, 40))
	}
	if len(req.Note) > labels.MaxNoteBytes {
		return labels.Entry{}, http.StatusBadRequest, fmt.Errorf("note is %d bytes; at most %d", len(req.Note), labels.MaxNoteBytes)
	}
	rec, err := rv.rd.Load(req.ResultID)
	switch {
	case errors.Is(err, layout.ErrBadID):
		return labels.Entry{}, http.StatusBadRequest, err
	case errors.Is(err, layout.ErrNotFound):
		return labels.Entry{}, http.StatusNotFound, err
	case err != nil:
		return labels.Entry{}, http.StatusInternalServerError, err
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	_, cur, err := rv.currentLabels()
	if err != nil {
		return labels.Entry{}, http.StatusInternalServerError, err
	}
	prev := cur[req.ResultID]
	e := labels.Entry{
		Time: time.Now().UTC(), User: user, ResultID: rec.Result.ID,
		Label: req.Label, DefectType: req.DefectType,
		Previous: prev.Label, PreviousDefectType: prev.DefectType,
		Station: rec.Result.Station, Product: rec.Result.Model.Product, BundleHash: rec.Result.Model.BundleHash,
		Note: req.Note,
	}
	lg, err := labels.Open(rv.logPath)
	if err != nil {
		rv.log.Error("opening the label log failed", "err", err)
		return labels.Entry{}, http.StatusInternalServerError, err
	}
	err = lg.Append(e)
	if cerr := lg.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rv.log.Error("appending to the label log failed", "err", err)
		return labels.Entry{}, http.StatusInternalServerError, err
	}
	rv.log.Info("result labelled", "result_id", e.ResultID, "label", e.Label, "defect_type", e.DefectType,
		"previous", e.Previous, "user", e.User)
	return e, http.StatusOK, nil
}

// labelEvent is the event of a label change.
func labelEvent(e labels.Entry) inspection.Event {
	msg := fmt.Sprintf("%s labelled %s %s", e.User, e.ResultID, e.Label)
	if e.DefectType != "" {
		msg += " (" + e.DefectType + ")"
	}
	if e.Previous != "" {
		msg += ", was " + e.Previous
	}
	return inspection.Event{
		Time: e.Time, Station: e.Station, Severity: inspection.Info, Kind: EventLabel, Message: msg,
		Fields: map[string]string{
			"result_id": e.ResultID, "label": e.Label, "defect_type": e.DefectType,
			"previous": e.Previous, "previous_defect_type": e.PreviousDefectType,
			"user": e.User, "product": e.Product, "bundle_hash": e.BundleHash,
		},
	}
}

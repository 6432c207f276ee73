package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive/layout"
	"github.com/inspectd/inspectd/io/labels"
)

// eventHost is a fakeControl that also takes events, as the daemon does.
type eventHost struct {
	*fakeControl
	mu     sync.Mutex
	events []inspection.Event
}

func (h *eventHost) ReportEvent(e inspection.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *eventHost) got() []inspection.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]inspection.Event(nil), h.events...)
}

// reviewFixture is an archive directory with results and a server
// reviewing it.
type reviewFixture struct {
	dir, log string
	s        *Server
	host     *eventHost
	results  []*inspection.Result // oldest first
}

var reviewT0 = time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)

// newReviewFixture archives n parts of feedStation's kind (every fourth
// NG with images, every ninth an ERROR without) and starts a server on it.
func newReviewFixture(t testing.TB, n int) *reviewFixture {
	t.Helper()
	fx := &reviewFixture{dir: t.TempDir()}
	fx.log = filepath.Join(fx.dir, "labels.jsonl")
	for i := 1; i <= n; i++ {
		v := inspection.OK
		switch {
		case i%9 == 0:
			v = inspection.Error
		case i%4 == 0:
			v = inspection.NG
		}
		r := fakeResult(i, reviewT0.Add(time.Duration(i)*time.Minute), v)
		if i%2 == 1 {
			r.Model.Product = "bracket-b"
		}
		fx.results = append(fx.results, r)
		writeArchivedSet(t, fx.dir, r, v != inspection.Error)
	}
	o := testOptions()
	o.Review = ReviewOptions{ArchiveDir: fx.dir, LabelLog: fx.log, DefectTypes: []string{"scratch", "dent", "stain", "other"}}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	fx.host = &eventHost{fakeControl: &fakeControl{status: fakeStatus(time.Now())}}
	if err := s.Start(context.Background(), fx.host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	fx.s = s
	return fx
}

// tinyJPEG is a 1×1 JPEG, standing in for an archived frame.
var tinyJPEG = []byte{0xff, 0xd8, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x08}

// writeArchivedSet writes r's set under dir with the archive's names.
func writeArchivedSet(t testing.TB, dir string, r *inspection.Result, images bool) {
	t.Helper()
	day, base := layout.SetName(r, time.Now())
	d := filepath.Join(dir, day)
	if err := os.MkdirAll(d, 0o750); err != nil {
		t.Fatal(err)
	}
	if images {
		os.WriteFile(filepath.Join(d, base+layout.SuffixFrame), append(tinyJPEG, []byte("frame "+r.ID)...), 0o640)
		os.WriteFile(filepath.Join(d, base+layout.SuffixOverlay), append(tinyJPEG, []byte("overlay "+r.ID)...), 0o640)
	}
	b, _ := json.Marshal(r)
	if err := os.WriteFile(filepath.Join(d, base+layout.SuffixJSON), b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// do runs one request against the server's handler.
func (fx *reviewFixture) do(method, target, ctype, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	fx.s.Handler().ServeHTTP(w, req)
	return w
}

func (fx *reviewFixture) entries(t testing.TB) []labels.Entry {
	t.Helper()
	es, err := labels.Read(fx.log)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return es
}

func TestReviewListAPI(t *testing.T) {
	fx := newReviewFixture(t, 30)
	for _, tc := range []struct {
		query string
		want  string // seqs, newest first
		total int
	}{
		{"", "30,29,28,27,26,25,24,23,22,21,20,19,18,17,16,15,14,13,12,11,10,9,8,7,6,5,4,3,2,1", 30},
		{"?verdict=NG", "28,24,20,16,12,8,4", 7},
		{"?verdict=error", "27,18,9", 3},
		{"?reason=camera_timeout", "27,18,9", 3},
		{"?product=bracket-b&verdict=ERROR", "27,9", 2},
		{"?since=2026-12-07T14:25:00Z", "30,29,28,27,26,25", 6},
		{"?until=2026-12-07T14:03:00%2B00:00", "2,1", 2},
		{"?since=2026-12-07&until=2026-12-07T14:02:30Z", "2,1", 2},
		{"?min_score=0.7", "28,24,20,16,12,8,4", 7},
		{"?max_score=0.12&verdict=OK", "30,10", 2},
		{"?per_page=4&page=2", "26,25,24,23", 30},
		{"?verdict=NG&per_page=5&page=2", "8,4", 7},
	} {
		t.Run(tc.query, func(t *testing.T) {
			w := fx.do("GET", "/api/review/results"+tc.query, "", "", nil)
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			var l struct {
				Total   int `json:"total"`
				Results []struct {
					Seq   int           `json:"seq"`
					Frame bool          `json:"frame"`
					Label *labels.Entry `json:"label"`
				} `json:"results"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			var seqs []string
			for _, r := range l.Results {
				seqs = append(seqs, fmt.Sprint(r.Seq))
			}
			if got := strings.Join(seqs, ","); got != tc.want || l.Total != tc.total {
				t.Errorf("got %s (total %d), want %s (total %d)", got, l.Total, tc.want, tc.total)
			}
		})
	}
}

func TestReviewListErrors(t *testing.T) {
	fx := newReviewFixture(t, 3)
	for _, tc := range []struct{ query, want string }{
		{"?verdict=MAYBE", `parameter verdict "MAYBE" is not known; use OK, NG or ERROR`},
		{"?since=yesterday", `parameter since: "yesterday" is not a time; use RFC 3339 (2026-12-07T14:30:00Z) or a date (2026-12-07, UTC)`},
		{"?min_score=NaN", `parameter min_score: "NaN" is not a finite number`},
		{"?max_score=1e999", `parameter max_score: "1e999" is not a finite number`},
		{"?page=0", `parameter page: want an integer from 1 to 1048576, got "0"`},
		{"?per_page=5000", `parameter per_page: want an integer from 1 to 1000, got "5000"`},
		{"?page=1&page=2", `parameter page: given 2 times; give it once`},
		{"?min_score=0.9&max_score=0.1", `parameter min_score 0.9 is greater than max_score 0.1`},
		{"?since=2026-12-08&until=2026-12-07", `parameter since 2026-12-08T00:00:00Z is not before until 2026-12-07T00:00:00Z`},
		{"?path=/etc/passwd", `parameter path is not known; use verdict, reason, product, since, until, min_score, max_score, page, per_page`},
	} {
		w := fx.do("GET", "/api/review/results"+tc.query, "", "", nil)
		var e apiError
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != 400 || e.Error != tc.want {
			t.Errorf("%s: %d %q, want 400 %q", tc.query, w.Code, e.Error, tc.want)
		}
	}
	if w := fx.do("POST", "/api/review/results", "", "", nil); w.Code != 405 {
		t.Errorf("POST list: %d", w.Code)
	}
}

// TestReviewHostilePaths: ids and image names from the client never name
// a file: traversal in every encoding is refused (400 or 404), and
// nothing but the archive's own images is served.
func TestReviewHostilePaths(t *testing.T) {
	fx := newReviewFixture(t, 9)
	os.WriteFile(filepath.Join(filepath.Dir(fx.dir), "secret.jpg"), []byte("SECRET"), 0o600)
	ng := fx.results[3] // seq 4, NG with images
	if w := fx.do("GET", "/review/image/"+ng.ID+"/frame", "", "", nil); w.Code != 200 || w.Header().Get("Content-Type") != "image/jpeg" ||
		!strings.HasSuffix(w.Body.String(), "frame "+ng.ID) {
		t.Fatalf("frame: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if w := fx.do("GET", "/review/image/"+ng.ID+"/overlay", "", "", nil); w.Code != 200 || !strings.HasSuffix(w.Body.String(), "overlay "+ng.ID) {
		t.Fatalf("overlay: %d %q", w.Code, w.Body)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/review/image/..%2F..%2Fsecret/frame", 400},
		{"/review/image/%2e%2e/frame", 400},
		{"/review/image/..%5Csecret/frame", 400},
		{"/review/image/a%00b/frame", 400},
		{"/review/image/secret/frame", 404},
		{"/review/image/" + ng.ID + "/json", 404},
		{"/review/image/" + ng.ID + "/..%2F..%2Fsecret.jpg", 404},
		{"/review/image/" + fx.results[8].ID + "/frame", 404}, // ERROR without a frame
		{"/api/review/results/..%2Fsecret", 400},
		{"/api/review/results/nope-000001", 404},
	} {
		w := fx.do("GET", tc.path, "", "", nil)
		if w.Code != tc.code || strings.Contains(w.Body.String(), "SECRET") {
			t.Errorf("%s: %d %s, want %d", tc.path, w.Code, w.Body, tc.code)
		}
	}
	// The mux cleans dot segments before routing: a redirect, never a file.
	if w := fx.do("GET", "/review/image/../../secret.jpg", "", "", nil); w.Code == 200 {
		t.Errorf("dot segments: %d %s", w.Code, w.Body)
	}
}

func TestReviewRecordAPI(t *testing.T) {
	fx := newReviewFixture(t, 5)
	r := fx.results[3]
	w := fx.do("POST", "/api/labels", "application/json", `{"result_id":"`+r.ID+`","label":"good"}`, nil)
	if w.Code != 200 {
		t.Fatalf("label: %d %s", w.Code, w.Body)
	}
	w = fx.do("POST", "/api/labels", "application/json", `{"result_id":"`+r.ID+`","label":"defect","defect_type":"dent","note":"on the edge"}`, nil)
	if w.Code != 200 {
		t.Fatalf("relabel: %d %s", w.Code, w.Body)
	}
	w = fx.do("GET", "/api/review/results/"+r.ID, "", "", nil)
	var rec struct {
		ID      string         `json:"result_id"`
		Frame   bool           `json:"frame"`
		Overlay bool           `json:"overlay"`
		Regions []any          `json:"regions"`
		Label   labels.Entry   `json:"label"`
		History []labels.Entry `json:"history"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &rec); err != nil || w.Code != 200 {
		t.Fatalf("%d %s %v", w.Code, w.Body, err)
	}
	if rec.ID != r.ID || !rec.Frame || !rec.Overlay || len(rec.Regions) != 1 || rec.Label.Label != "defect" || rec.Label.DefectType != "dent" ||
		rec.Label.Previous != "good" || len(rec.History) != 2 || rec.History[0].Label != "good" || rec.Label.Note != "on the edge" {
		t.Errorf("record = %+v", rec)
	}
}

func TestLabelPost(t *testing.T) {
	fx := newReviewFixture(t, 5)
	id := fx.results[3].ID
	body := func(label, typ string) string {
		return fmt.Sprintf(`{"result_id":%q,"label":%q,"defect_type":%q}`, id, label, typ)
	}
	for _, tc := range []struct {
		name, ctype, body string
		hdr               map[string]string
		code              int
		want              string // error text; "" for success
	}{
		{"unknown label", mediaJSON, body("fine", ""), nil, 400, `label "fine" is not known; use good, defect or unsure`},
		{"defect without type", mediaJSON, body("defect", ""), nil, 400, `label "defect" needs a defect_type: one of scratch, dent, stain, other`},
		{"unknown defect type", mediaJSON, body("defect", "crack"), nil, 400, `defect_type "crack" is not known; use one of scratch, dent, stain, other (review.defect_types)`},
		{"good with type", mediaJSON, body("good", "dent"), nil, 400, `label "good" takes no defect_type (got "dent"); only "defect" does`},
		{"unknown result", mediaJSON, `{"result_id":"st-042-x-000999","label":"good"}`, nil, 404, "result st-042-x-000999: not in the archive"},
		{"traversal id", mediaJSON, `{"result_id":"../../etc/passwd","label":"good"}`, nil, 400, `result id "../../etc/passwd": not a valid result id; want ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`},
		{"unknown field", mediaJSON, `{"result_id":"x","label":"good","user":"mallory"}`, nil, 400, `label body: json: unknown field "user"; send {"result_id":"…","label":"good|defect|unsure","defect_type":"…","note":"…"}`},
		{"oversized", mediaJSON, `{"result_id":"` + id + `","label":"good","note":"` + strings.Repeat("x", 9000) + `"}`, nil, 413, "label body larger than 8192 bytes"},
		{"long note", mediaJSON, `{"result_id":"` + id + `","label":"good","note":"` + strings.Repeat("x", 2001) + `"}`, nil, 400, "note is 2001 bytes; at most 2000"},
		{"text/plain", "text/plain", body("good", ""), nil, 415, `Content-Type "text/plain" is not accepted; send application/json or an HTML form`},
		{"cross-site", mediaJSON, body("good", ""), map[string]string{"Origin": "http://evil.example"}, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := fx.do("POST", "/api/labels", tc.ctype, tc.body, tc.hdr)
			var e apiError
			json.Unmarshal(w.Body.Bytes(), &e)
			if w.Code != tc.code || (tc.want != "" && e.Error != tc.want) {
				t.Errorf("%d %q, want %d %q", w.Code, e.Error, tc.code, tc.want)
			}
		})
	}
	if es := fx.entries(t); len(es) != 0 {
		t.Fatalf("refused requests wrote %d labels", len(es))
	}
	if len(fx.host.got()) != 0 {
		t.Fatal("refused requests raised events")
	}
	if w := fx.do("GET", "/api/labels", "", "", nil); w.Code != 405 {
		t.Errorf("GET /api/labels: %d", w.Code)
	}

	// JSON, then a browser form (no JavaScript): 303 back to the result.
	if w := fx.do("POST", "/api/labels", mediaJSON, body("unsure", ""), nil); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	w := fx.do("POST", "/api/labels", mediaForm, "result_id="+id+"&label=defect&defect_type=stain&note=n",
		map[string]string{"Accept": "text/html"})
	if w.Code != 303 || w.Header().Get("Location") != "/review?id="+id {
		t.Fatalf("form: %d %v", w.Code, w.Header())
	}
	es := fx.entries(t)
	if len(es) != 2 || es[0].User != "local" || es[0].Label != "unsure" || es[0].Previous != "" ||
		es[1].Label != "defect" || es[1].DefectType != "stain" || es[1].Previous != "unsure" ||
		es[1].Station != "st-042" || es[1].Product != "bracket-a" || es[1].BundleHash != "sha256:9f86d081884c" {
		t.Errorf("log = %+v", es)
	}
	ev := fx.host.got()
	if len(ev) != 2 || ev[1].Kind != "label" || ev[1].Fields["label"] != "defect" || ev[1].Fields["defect_type"] != "stain" ||
		ev[1].Fields["previous"] != "unsure" || ev[1].Fields["result_id"] != id || ev[1].Message != "local labelled "+id+" defect (stain), was unsure" {
		t.Errorf("events = %+v", ev)
	}
}

func TestReviewPage(t *testing.T) {
	fx := newReviewFixture(t, 12)
	// Parts in memory too (the plots prefer them when the archive has
	// only rejects; here it has OK parts, so it is the archive).
	w := fx.do("GET", "/review?verdict=NG", "", "", nil)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	page := w.Body.String()
	sel := fx.results[11] // seq 12, the newest NG
	for _, want := range []string{
		`3 found · page 1 of 1`,
		`<tr class="row sel" data-id="` + sel.ID + `"`,
		`<img src="/review/image/` + sel.ID + `/frame"`,
		`<img src="/review/image/` + sel.ID + `/overlay"`,
		`<form id="label-form" class="label-form" method="post" action="/api/labels">`,
		`<option value="scratch">1 scratch</option>`,
		`<svg xmlns="http://www.w3.org/2000/svg" class="plot"`,
		`class="threshold"`, `class="bar-ok"`, `class="bar-ng"`, `class="ngrate"`, `class="p99"`,
		`newest 12 archived parts`,
		`Score vs threshold — bracket-a`, `Score vs threshold — bracket-b`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	w = fx.do("GET", "/review?verdict=MAYBE", "", "", nil)
	if w.Code != 400 || !strings.Contains(w.Body.String(), `parameter verdict &#34;MAYBE&#34; is not known`) {
		t.Errorf("bad filter: %d %s", w.Code, w.Body)
	}
	w = fx.do("GET", "/review?id=..%2Fx", "", "", nil)
	if w.Code != 400 {
		t.Errorf("bad id: %d", w.Code)
	}
	for _, kind := range []string{"score", "ngrate", "latency"} {
		w := fx.do("GET", "/api/review/plots.svg?kind="+kind+"&product=bracket-a", "", "", nil)
		if w.Code != 200 || w.Header().Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(w.Body.String(), "<svg") {
			t.Errorf("plot %s: %d %s", kind, w.Code, w.Body)
		}
	}
	if w := fx.do("GET", "/api/review/plots.svg?kind=pie", "", "", nil); w.Code != 400 {
		t.Errorf("plot pie: %d", w.Code)
	}
}

// TestReviewOff: without an archive directory the routes are not there.
func TestReviewOff(t *testing.T) {
	s, _ := newTestServer(t, Options{}, nil)
	for _, p := range []string{"/review", "/api/review/results", "/api/labels"} {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("GET", p, nil))
		if w.Code != 404 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	if _, err := New(Options{Listen: "127.0.0.1:0", History: 1, Review: ReviewOptions{ArchiveDir: "/x", LabelLog: "/x/l"}}); err == nil ||
		err.Error() != "web: review: ReviewOptions.DefectTypes is empty; list at least one defect type" {
		t.Errorf("New without defect types: %v", err)
	}
}

// TestPlotsFromMemoryWhenArchiveKeepsRejects: with only NG parts archived
// the rates would all be 100 %, so the plots use the parts in memory.
func TestPlotsFromMemoryWhenArchiveKeepsRejects(t *testing.T) {
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		writeArchivedSet(t, dir, fakeResult(i*4, reviewT0.Add(time.Duration(i)*time.Minute), inspection.NG), true)
	}
	o := testOptions()
	o.Review = ReviewOptions{ArchiveDir: dir, LabelLog: filepath.Join(dir, "labels.jsonl"), DefectTypes: []string{"scratch"}}
	s, _ := newTestServer(t, o, nil)
	feedStation(t, s, time.Now())
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/review", nil))
	if !strings.Contains(w.Body.String(), "last 13 parts in memory (the archive keeps rejects only)") {
		t.Errorf("plots source: %s", w.Body)
	}
}

// TestLabelBehindLogin: with users, the label carries the session's user;
// a viewer, a missing CSRF token and no session are refused and write
// nothing; the page's form carries the token.
func TestLabelBehindLogin(t *testing.T) {
	dir := t.TempDir()
	r := fakeResult(4, reviewT0, inspection.NG)
	writeArchivedSet(t, dir, r, true)
	logPath := filepath.Join(dir, "labels.jsonl")
	s, _, _ := authServer(t, func(o *Options) {
		o.Review = ReviewOptions{ArchiveDir: dir, LabelLog: logPath, DefectTypes: []string{"scratch"}}
	})
	h := s.Handler()
	body := `{"result_id":"` + r.ID + `","label":"good"}`
	otto, vera := login(t, h, "otto"), login(t, h, "vera")
	for _, tc := range []struct {
		name string
		c    client
		hdr  map[string]string
		code int
	}{
		{"no session", client{}, nil, 401},
		{"viewer", vera, map[string]string{"X-CSRF-Token": vera.csrf}, 403},
		{"operator without CSRF", otto, nil, 403},
		{"operator with another's CSRF", otto, map[string]string{"X-CSRF-Token": vera.csrf}, 403},
	} {
		if w := tc.c.send(h, "POST", "/api/labels", mediaJSON, body, tc.hdr); w.Code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.code)
		}
	}
	if _, err := os.Stat(logPath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused labels touched the log: %v", err)
	}
	if w := otto.send(h, "POST", "/api/labels", mediaJSON, body, map[string]string{"X-CSRF-Token": otto.csrf}); w.Code != 200 {
		t.Fatalf("operator: %d %s", w.Code, w.Body)
	}
	es, err := labels.Read(logPath)
	if err != nil || len(es) != 1 || es[0].User != "otto" {
		t.Fatalf("log = %+v, %v; want one label by otto", es, err)
	}
	w := vera.send(h, "GET", "/review", "", "", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `<input type="hidden" name="csrf_token" value="`+vera.csrf+`">`) ||
		!strings.Contains(w.Body.String(), `user <b id="user">vera</b>`) {
		t.Errorf("page for vera: %d\n%s", w.Code, w.Body)
	}
}

// TestConcurrentLabelsKeepTheChain: labels given at once to one result
// are serialised, so each line's previous is the line before it.
func TestConcurrentLabelsKeepTheChain(t *testing.T) {
	fx := newReviewFixture(t, 4)
	id := fx.results[3].ID
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := []string{"good", "unsure", "defect"}[i%3]
			typ := ""
			if l == "defect" {
				typ = "scratch"
			}
			if w := fx.do("POST", "/api/labels", mediaJSON, fmt.Sprintf(`{"result_id":%q,"label":%q,"defect_type":%q}`, id, l, typ), nil); w.Code != 200 {
				t.Errorf("%d %s", w.Code, w.Body)
			}
		}()
	}
	wg.Wait()
	es := fx.entries(t)
	if len(es) != 24 {
		t.Fatalf("%d lines, want 24", len(es))
	}
	prev, prevType := "", ""
	for i, e := range es {
		if e.Previous != prev || e.PreviousDefectType != prevType {
			t.Errorf("line %d: previous %q/%q, but the line before says %q/%q", i+1, e.Previous, e.PreviousDefectType, prev, prevType)
		}
		prev, prevType = e.Label, e.DefectType
	}
}

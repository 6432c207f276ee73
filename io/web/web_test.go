package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inspectd/inspectd/inspection"
)

// do sends one request to h and returns the recorder.
func do(h http.Handler, method, target, contentType, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestNewOptions(t *testing.T) {
	ok := http.NotFoundHandler()
	with := func(edit func(*Options)) Options {
		o := testOptions()
		edit(&o)
		return o
	}
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no listen", with(func(o *Options) { o.Listen = "" }), "web: Options.Listen is empty"},
		{"zero history", with(func(o *Options) { o.History = 0 }), "web: history 0 must be at least 1"},
		{"negative history", with(func(o *Options) { o.History = -1 }), "web: history -1 must be at least 1"},
		{"extra clashes", with(func(o *Options) { o.Extra = map[string]http.Handler{"/healthz": ok} }), `web: extra route "/healthz"`},
		{"extra nil", with(func(o *Options) { o.Extra = map[string]http.Handler{"/api/actuations": nil} }), `web: extra route "/api/actuations" has a nil handler`},
		{"extra bad pattern", with(func(o *Options) { o.Extra = map[string]http.Handler{"": ok} }), `web: extra route "": http: invalid pattern`},
		{"valid", testOptions(), ""},
		{"extra ok", with(func(o *Options) { o.Extra = map[string]http.Handler{"/api/actuations": ok} }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.o)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if s.listen != tt.o.Listen || s.history != tt.o.History || len(s.results) != tt.o.History {
					t.Errorf("listen %q history %d", s.listen, s.history)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to start with %q", err, tt.wantErr)
			}
		})
	}
}

// New binds nothing and the routes that need the daemon answer 503 until
// Start; Start binds and hands the host to the handlers.
func TestNewBindsNothingStartServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o := testOptions()
	o.Listen = addr
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("New is listening")
	}
	if s.Addr() != "" {
		t.Errorf("Addr before Start: %q", s.Addr())
	}
	for _, p := range []string{"/", "/healthz", "/api/status"} {
		if rec := do(s.Handler(), "GET", p, "", "", nil); rec.Code != 503 || !strings.Contains(rec.Body.String(), `"web: server not started"`) {
			t.Errorf("GET %s before Start: %d %s", p, rec.Code, rec.Body.String())
		}
	}
	if rec := do(s.Handler(), "POST", "/api/trigger", "", "", nil); rec.Code != 503 {
		t.Errorf("POST /api/trigger before Start: %d %s", rec.Code, rec.Body.String())
	}
	fc := &fakeControl{status: fakeStatus(time.Now())}
	if err := s.Start(context.Background(), fc); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	resp, err := http.Post("http://"+addr+"/api/trigger?part_id=P1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, _ := fc.triggered(); resp.StatusCode != http.StatusAccepted || fmt.Sprint(got) != "[P1]" {
		t.Errorf("trigger after Start: %d, host saw %v", resp.StatusCode, got)
	}
}

func TestLifecycleErrors(t *testing.T) {
	ctx := context.Background()
	fc := &fakeControl{status: fakeStatus(time.Now())}
	tests := []struct {
		name string
		do   func(*Server) error
		want string
	}{
		{"nil host", func(s *Server) error { return s.Start(ctx, nil) }, "web: start: host is nil"},
		{"started twice", func(s *Server) error {
			if err := s.Start(ctx, fc); err != nil {
				return err
			}
			return s.Start(ctx, fc)
		}, "web: start: already started"},
		{"start after close", func(s *Server) error {
			if err := s.Close(ctx); err != nil {
				return err
			}
			return s.Start(ctx, fc)
		}, "web: start: server is closed"},
		{"close without start, twice", func(s *Server) error { return errors.Join(s.Close(ctx), s.Close(ctx)) }, ""},
		{"close twice", func(s *Server) error {
			if err := s.Start(ctx, fc); err != nil {
				return err
			}
			return errors.Join(s.Close(ctx), s.Close(ctx))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(testOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			err = tt.do(s)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// Close returns only after the serving goroutine has returned: with a
// request in progress (cut off when ctx ends), and while the goroutine
// still logs its last line.
func TestCloseWaitsForServer(t *testing.T) {
	t.Run("request in progress", func(t *testing.T) {
		block, entered := make(chan struct{}), make(chan struct{})
		defer close(block)
		o := testOptions()
		o.Extra = map[string]http.Handler{"/slow": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			select {
			case <-block:
			case <-r.Context().Done():
			}
		})}
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background(), &fakeControl{}); err != nil {
			t.Fatal(err)
		}
		go func() {
			if resp, err := http.Get("http://" + s.Addr() + "/slow"); err == nil {
				resp.Body.Close()
			}
		}()
		<-entered
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err = s.Close(ctx)
		if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
			t.Errorf("Close with a request in progress: %v", err)
		}
		select {
		case <-s.serveDone:
		default:
			t.Error("Close returned before the serving goroutine")
		}
	})
	t.Run("goroutine still logging", func(t *testing.T) {
		h := &blockingHandler{msg: "http server stopped", entered: make(chan struct{}), release: make(chan struct{})}
		o := testOptions()
		o.Logger = slog.New(h)
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background(), &fakeControl{}); err != nil {
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		go func() { closed <- s.Close(context.Background()) }()
		<-h.entered // the serving goroutine is in its last log line
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while the serving goroutine runs", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(h.release)
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}

// blockingHandler is a slog.Handler that blocks on the record msg until
// release is closed.
type blockingHandler struct {
	msg              string
	entered, release chan struct{}
}

func (h *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *blockingHandler) WithGroup(string) slog.Handler            { return h }
func (h *blockingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		close(h.entered)
		<-h.release
	}
	return nil
}

func TestStartAddressInUse(t *testing.T) {
	s, fc := newTestServer(t, Options{}, nil)
	o := testOptions()
	o.Listen = s.Addr()
	s2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start(context.Background(), fc)
	want := fmt.Sprintf("http.listen %s: address already in use", s.Addr())
	if err == nil || err.Error() != want {
		t.Fatalf("Start on a used port: %v, want %q", err, want)
	}
	if err := s2.Close(context.Background()); err != nil {
		t.Errorf("Close without a listener: %v", err)
	}
	// The first server serves over the network, Close is idempotent.
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz over TCP: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("listener still open after Close")
	}
}

func TestRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	parts := prometheus.NewCounter(prometheus.CounterOpts{Name: "inspectd_parts_total", Help: "Parts inspected."})
	reg.MustRegister(parts)
	parts.Add(3)

	type setup func(*fakeControl)
	unhealthy := func(fc *fakeControl) {
		fc.set(func(s *inspection.Status) {
			s.Healthy = false
			s.Problems = []string{"camera stalled for 12s", "sink mqtt dropping results"}
		})
	}
	tests := []struct {
		name        string
		setup       setup
		method      string
		target      string
		ctype, body string
		hdr         map[string]string
		gatherer    bool
		wantCode    int
		wantType    string
		wantBody    []string // substrings
		check       func(t *testing.T, body []byte, fc *fakeControl)
	}{
		{name: "healthz ok", method: "GET", target: "/healthz", wantCode: 200, wantType: "application/json", wantBody: []string{`{"status":"ok"}`}},
		{name: "healthz unhealthy", setup: unhealthy, method: "GET", target: "/healthz", wantCode: 503,
			wantBody: []string{`"status":"unhealthy"`, `"problems":["camera stalled for 12s","sink mqtt dropping results"]`}},
		{name: "healthz unhealthy without reason", setup: func(fc *fakeControl) { fc.set(func(s *inspection.Status) { s.Healthy, s.Problems = false, nil }) },
			method: "GET", target: "/healthz", wantCode: 503, wantBody: []string{"no reason given"}},
		{name: "healthz POST", method: "POST", target: "/healthz", wantCode: 405, wantBody: []string{"method POST not allowed on /healthz; use GET"}},
		{name: "status", method: "GET", target: "/api/status", wantCode: 200, wantType: "application/json",
			check: func(t *testing.T, b []byte, _ *fakeControl) {
				var st inspection.Status
				if err := json.Unmarshal(b, &st); err != nil {
					t.Fatal(err)
				}
				if st.Station.ID != "st-042" || st.Counts.NG != 81 || st.Model.ThresholdFrom != "bundle" || len(st.Sinks) != 3 {
					t.Errorf("status decoded as %+v", st)
				}
			}},
		{name: "status HEAD", method: "HEAD", target: "/api/status", wantCode: 200},
		{name: "status DELETE", method: "DELETE", target: "/api/status", wantCode: 405, wantBody: []string{`"error":"method DELETE not allowed`}},
		{name: "results default", method: "GET", target: "/api/results", wantCode: 200,
			check: func(t *testing.T, b []byte, _ *fakeControl) {
				rb := decodeResults(t, b)
				if rb.Count != 13 || len(rb.Results) != 13 || rb.Results[0].Seq != 11890 || rb.Results[12].Seq != 11878 {
					t.Errorf("results: count %d, first seq %d", rb.Count, rb.Results[0].Seq)
				}
				if rb.LatestImage == nil || rb.LatestImage.Verdict != inspection.NG || rb.LatestImage.ResultID != rb.Results[1].ID {
					t.Errorf("latest_image = %+v", rb.LatestImage)
				}
			}},
		{name: "results n=2", method: "GET", target: "/api/results?n=2", wantCode: 200,
			check: func(t *testing.T, b []byte, _ *fakeControl) {
				rb := decodeResults(t, b)
				if rb.Count != 2 || rb.Results[0].Seq != 11890 || rb.Results[1].Seq != 11889 || rb.Results[1].Verdict != inspection.NG {
					t.Errorf("n=2: %+v", rb.Results)
				}
				if len(rb.Results[1].Regions) != 1 {
					t.Errorf("regions lost: %+v", rb.Results[1].Regions)
				}
			}},
		{name: "results n=100", method: "GET", target: "/api/results?n=100", wantCode: 200, wantBody: []string{`"count":13`}},
		{name: "results n=abc", method: "GET", target: "/api/results?n=abc", wantCode: 400, wantBody: []string{`parameter n: want one integer from 1 to 100, got \"abc\"`}},
		{name: "results n=0", method: "GET", target: "/api/results?n=0", wantCode: 400, wantBody: []string{"parameter n"}},
		{name: "results n=101", method: "GET", target: "/api/results?n=101", wantCode: 400, wantBody: []string{`from 1 to 100, got \"101\"`}},
		{name: "results n empty", method: "GET", target: "/api/results?n=", wantCode: 400, wantBody: []string{"parameter n"}},
		{name: "results n twice", method: "GET", target: "/api/results?n=1&n=2", wantCode: 400, wantBody: []string{`got \"1,2\"`}},
		{name: "results POST", method: "POST", target: "/api/results", wantCode: 405},
		{name: "events", method: "GET", target: "/api/events?n=3", wantCode: 200,
			check: func(t *testing.T, b []byte, _ *fakeControl) {
				var eb eventsBody
				if err := json.Unmarshal(b, &eb); err != nil {
					t.Fatal(err)
				}
				if eb.Count != 3 || eb.Events[0].Kind != inspection.EventDiskBudget || eb.Events[2].Kind != inspection.EventCameraStalled {
					t.Errorf("events: %+v", eb)
				}
			}},
		{name: "events n=51", method: "GET", target: "/api/events?n=51", wantCode: 400, wantBody: []string{"parameter n: want one integer from 1 to 50"}},
		{name: "trigger GET", method: "GET", target: "/api/trigger", wantCode: 405, wantBody: []string{"method GET not allowed on /api/trigger; use POST"}},
		{name: "trigger empty", method: "POST", target: "/api/trigger", wantCode: 202, wantBody: []string{`{"accepted":true,"part_id":""}`},
			check: wantTriggers("")},
		{name: "trigger JSON", method: "POST", target: "/api/trigger", ctype: "application/json", body: `{"part_id":"A-17"}`,
			wantCode: 202, wantBody: []string{`{"accepted":true,"part_id":"A-17"}`}, check: wantTriggers("A-17")},
		{name: "trigger JSON empty body", method: "POST", target: "/api/trigger", ctype: "application/json", wantCode: 202, check: wantTriggers("")},
		{name: "trigger JSON bad", method: "POST", target: "/api/trigger", ctype: "application/json", body: `{"part":1}`,
			wantCode: 400, wantBody: []string{`body: want JSON {\"part_id\": \"…\"}`, "unknown field"}, check: wantTriggers()},
		{name: "trigger form", method: "POST", target: "/api/trigger", ctype: "application/x-www-form-urlencoded", body: "part_id=F-9",
			wantCode: 202, wantBody: []string{`"part_id":"F-9"`}, check: wantTriggers("F-9")},
		{name: "trigger query", method: "POST", target: "/api/trigger?part_id=Q-1", wantCode: 202, check: wantTriggers("Q-1")},
		{name: "trigger browser form", method: "POST", target: "/api/trigger", ctype: "application/x-www-form-urlencoded", body: "part_id=",
			hdr: map[string]string{"Accept": "text/html,application/xhtml+xml", "Origin": "http://example.com"}, wantCode: 303, check: wantTriggers("")},
		{name: "trigger cross-site", method: "POST", target: "/api/trigger", hdr: map[string]string{"Origin": "http://evil.example"},
			wantCode: 403, wantBody: []string{"cross-site trigger refused"}, check: wantTriggers()},
		{name: "trigger sec-fetch cross-site", method: "POST", target: "/api/trigger", hdr: map[string]string{"Sec-Fetch-Site": "cross-site"},
			wantCode: 403, check: wantTriggers()},
		{name: "trigger part id too long", method: "POST", target: "/api/trigger?part_id=" + strings.Repeat("x", 129), wantCode: 400,
			wantBody: []string{"part_id: longer than 128 characters"}, check: wantTriggers()},
		{name: "trigger part id control", method: "POST", target: "/api/trigger?part_id=a%0Ab", wantCode: 400,
			wantBody: []string{"part_id: contains control characters"}},
		{name: "trigger body too large", method: "POST", target: "/api/trigger", ctype: "application/x-www-form-urlencoded",
			body: "part_id=" + strings.Repeat("x", 5000), wantCode: 400, wantBody: []string{"body larger than 4096 bytes"}},
		{name: "trigger paused", setup: func(fc *fakeControl) { fc.setTriggerErr(inspection.ErrPaused) }, method: "POST", target: "/api/trigger",
			wantCode: 409, wantBody: []string{`{"error":"inspection is paused"}`}},
		{name: "trigger wrong mode", setup: func(fc *fakeControl) {
			fc.setTriggerErr(fmt.Errorf("trigger mode gpio: %w", inspection.ErrTriggerMode))
		}, method: "POST", target: "/api/trigger", wantCode: 409, wantBody: []string{"trigger mode gpio: trigger mode does not accept this trigger"}},
		{name: "metrics", gatherer: true, method: "GET", target: "/metrics", wantCode: 200, wantType: "text/plain",
			wantBody: []string{"# TYPE inspectd_parts_total counter", "inspectd_parts_total 3"}},
		{name: "metrics disabled", method: "GET", target: "/metrics", wantCode: 404, wantBody: []string{"metrics are not enabled"}},
		{name: "metrics POST", gatherer: true, method: "POST", target: "/metrics", wantCode: 405},
		{name: "latest.jpg", method: "GET", target: "/api/latest.jpg", wantCode: 200, wantType: "image/jpeg",
			check: func(t *testing.T, b []byte, _ *fakeControl) {
				img, err := jpeg.Decode(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if img.Bounds().Dx() != 480 || img.Bounds().Dy() != 360 {
					t.Errorf("image %v, want the 480×360 ROI", img.Bounds())
				}
			}},
		{name: "page", method: "GET", target: "/", wantCode: 200, wantType: "text/html",
			wantBody: []string{"st-042", "Bracket press 3 outfeed", "P4421889", `class="vtag v-NG"`, "9f86d081884c<", "disk budget reached"}},
		{name: "page POST", method: "POST", target: "/", wantCode: 405},
		{name: "unknown path", method: "GET", target: "/nope", wantCode: 404},
		{name: "extra route", method: "GET", target: "/api/actuations", wantCode: 200, wantBody: []string{"actuations"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			o.Extra = map[string]http.Handler{
				"/api/actuations": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"actuations":[]}`) }),
			}
			if tt.gatherer {
				o.Gatherer = reg
			}
			s, fc := newTestServer(t, o, nil)
			feedStation(t, s, time.Now())
			if tt.setup != nil {
				tt.setup(fc)
			}
			rec := do(s.Handler(), tt.method, tt.target, tt.ctype, tt.body, tt.hdr)
			body := rec.Body.Bytes()
			if rec.Code != tt.wantCode {
				t.Fatalf("%s %s: status %d, want %d; body %s", tt.method, tt.target, rec.Code, tt.wantCode, body)
			}
			if ct := rec.Header().Get("Content-Type"); tt.wantType != "" && !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %q", ct, tt.wantType)
			}
			if rec.Code == 405 && rec.Header().Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
			if rec.Code >= 400 && rec.Code != 404 && rec.Code != 503 || rec.Code == 404 && tt.target != "/nope" {
				var e apiError
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body is not {\"error\":…}: %s", body)
				}
			}
			for _, w := range tt.wantBody {
				if !strings.Contains(string(body), w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			if tt.check != nil {
				tt.check(t, body, fc)
			}
		})
	}
}

// wantTriggers checks the part IDs the control saw, all from software.
func wantTriggers(ids ...string) func(*testing.T, []byte, *fakeControl) {
	return func(t *testing.T, _ []byte, fc *fakeControl) {
		t.Helper()
		got, src := fc.triggered()
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Errorf("triggers %q, want %q", got, ids)
		}
		for _, s := range src {
			if s != inspection.TriggerSoftware {
				t.Errorf("trigger source %q", s)
			}
		}
	}
}

func decodeResults(t *testing.T, b []byte) resultsBody {
	t.Helper()
	var rb resultsBody
	if err := json.Unmarshal(b, &rb); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return rb
}

func TestResultRing(t *testing.T) {
	s, _ := newTestServer(t, Options{History: 10}, nil)
	rec := do(s.Handler(), "GET", "/api/results", "", "", nil)
	if rb := decodeResults(t, rec.Body.Bytes()); rb.Count != 0 || rb.Results == nil || rb.LatestImage != nil {
		t.Errorf("empty history: %s", rec.Body.Bytes())
	}
	frame, roi, _ := syntheticPart(0)
	for i := 1; i <= 25; i++ {
		r := fakeResult(i, time.Now(), inspection.OK)
		if i == 7 {
			r.Snapshot = &inspection.Snapshot{Frame: frame, ROI: roi}
		}
		if err := s.Deliver(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	got := s.recentResults(100)
	if len(got) != 10 || got[0].Seq != 25 || got[9].Seq != 16 {
		t.Fatalf("ring holds %d, first %d last %d", len(got), got[0].Seq, got[len(got)-1].Seq)
	}
	for _, r := range s.results {
		if r.Snapshot != nil {
			t.Error("the ring keeps a snapshot (and its frame) alive")
		}
	}
	rec = do(s.Handler(), "GET", "/api/results?n=11", "", "", nil)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "from 1 to 10") {
		t.Errorf("n above history: %d %s", rec.Code, rec.Body.String())
	}
	for i := range 60 {
		s.Event(inspection.Event{Kind: fmt.Sprint(i)})
	}
	if ev := s.recentEvents(100); len(ev) != EventHistory || ev[0].Kind != "59" || ev[49].Kind != "10" {
		t.Errorf("events ring: %d, first %q", len(ev), ev[0].Kind)
	}
}

func TestWantsImage(t *testing.T) {
	s, err := New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ok := fakeResult(1, time.Now(), inspection.OK)
	ng := fakeResult(2, time.Now(), inspection.NG)
	errNoFrame := fakeResult(3, time.Now(), inspection.Error)
	errFrame := fakeResult(4, time.Now(), inspection.Error)
	errFrame.FrameSeq, errFrame.Reason = 40, inspection.ReasonEngine
	ago := func(d time.Duration) { s.lastImage.Store(int64(time.Since(s.base) - d)) }

	tests := []struct {
		name string
		last time.Duration // age of the last image; <0: none yet
		r    *inspection.Result
		want bool
	}{
		{"first OK", -1, ok, true},
		{"OK after 0.3 s", 300 * time.Millisecond, ok, false},
		{"OK after 0.7 s", 700 * time.Millisecond, ok, false},
		{"OK after 1.1 s", 1100 * time.Millisecond, ok, true},
		{"NG after 0.3 s", 300 * time.Millisecond, ng, false},
		{"NG after 0.6 s", 600 * time.Millisecond, ng, true},
		{"ERROR with frame after 0.6 s", 600 * time.Millisecond, errFrame, true},
		{"ERROR without frame", time.Hour, errNoFrame, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.last < 0 {
				s.lastImage.Store(noImage)
			} else {
				ago(tt.last)
			}
			if got := s.WantsImage(tt.r); got != tt.want {
				t.Fatalf("WantsImage = %v, want %v", got, tt.want)
			}
			if tt.want && s.WantsImage(ng) {
				t.Error("a second image right after the first")
			}
		})
	}
	// At most ~2 a second under a stream of NG parts.
	s.lastImage.Store(noImage)
	n := 0
	for deadline := time.Now().Add(1100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s.WantsImage(ng) {
			n++
		}
	}
	if n < 2 || n > 3 {
		t.Errorf("%d images in 1.1 s of NG parts, want 2 or 3", n)
	}
}

func TestLatestJPEGCaching(t *testing.T) {
	s, _ := newTestServer(t, Options{}, nil)
	h := s.Handler()
	if rec := do(h, "GET", "/api/latest.jpg", "", "", nil); rec.Code != 404 || !strings.Contains(rec.Body.String(), "no image yet") {
		t.Fatalf("before any image: %d %s", rec.Code, rec.Body.String())
	}
	feedStation(t, s, time.Now())
	rec := do(h, "GET", "/api/latest.jpg", "", "", nil)
	etag := rec.Header().Get("ETag")
	id := s.latestSnapshot().res.ID
	if rec.Code != 200 || etag != `"`+id+`"` || rec.Header().Get("X-Verdict") != "NG" {
		t.Fatalf("first: %d etag %q", rec.Code, etag)
	}
	first := rec.Body.Bytes()
	if s.latestSnapshot().snap != nil {
		t.Error("the frame is still held after rendering")
	}
	rec = do(h, "GET", "/api/latest.jpg?id="+id, "", "", nil)
	if !bytes.Equal(first, rec.Body.Bytes()) {
		t.Error("second request rendered a different image")
	}
	if rec := do(h, "GET", "/api/latest.jpg", "", "", map[string]string{"If-None-Match": etag}); rec.Code != 304 || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d", rec.Code)
	}
	// A snapshot that cannot be rendered: 500 naming the result.
	bad := fakeResult(99999, time.Now(), inspection.NG)
	frame, _, _ := syntheticPart(0)
	bad.Snapshot = &inspection.Snapshot{Frame: frame, ROI: frame.Rect.Add(frame.Rect.Max)}
	_ = s.Deliver(context.Background(), bad)
	rec = do(h, "GET", "/api/latest.jpg", "", "", nil)
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "overlay of "+bad.ID+": ROI") {
		t.Errorf("bad ROI: %d %s", rec.Code, rec.Body.String())
	}
}

func TestPageSecurity(t *testing.T) {
	fc := &fakeControl{status: fakeStatus(time.Now())}
	fc.status.Trigger = "gpio"
	fc.status.Healthy = false
	fc.status.Problems = []string{`camera <b>stalled</b> & "reconnecting"`}
	s, _ := newTestServer(t, Options{}, fc)
	r := fakeResult(1, time.Now(), inspection.NG)
	r.PartID = `<script>alert("x")</script>`
	_ = s.Deliver(context.Background(), r)
	rec := do(s.Handler(), "GET", "/", "", "", nil)
	body := rec.Body.String()
	if strings.Contains(body, `<script>alert`) || !strings.Contains(body, "&lt;script&gt;alert(") {
		t.Error("part ID not escaped")
	}
	if strings.Contains(body, "<b>stalled</b>") || !strings.Contains(body, "camera &lt;b&gt;stalled") {
		t.Error("problem not escaped")
	}
	if !regexp.MustCompile(`<form id="trigger"[^>]* hidden>`).MatchString(body) {
		t.Error("trigger form shown in gpio mode")
	}
	if regexp.MustCompile(`<div id="problems"[^>]* hidden`).MatchString(body) {
		t.Error("problem banner hidden while unhealthy")
	}
	// The CSP allows exactly the inline script and stylesheet.
	csp := rec.Header().Get("Content-Security-Policy")
	for _, tag := range []string{"script", "style"} {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no inline %s", tag)
		}
		h := sha256.Sum256([]byte(m[1]))
		if want := "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"; !strings.Contains(csp, tag+"-src "+want) {
			t.Errorf("CSP %q lacks %s-src %s", csp, tag, want)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("the page refers to an external resource")
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}

	fc.set(func(st *inspection.Status) { st.Trigger = inspection.TriggerSoftware })
	body = do(s.Handler(), "GET", "/", "", "", nil).Body.String()
	if regexp.MustCompile(`<form id="trigger"[^>]* hidden>`).MatchString(body) {
		t.Error("trigger form hidden in software mode")
	}
}

func TestDeliverConcurrentWithReaders(t *testing.T) {
	s, _ := newTestServer(t, Options{History: 16}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		frame, roi, mask := syntheticPart(0)
		for i := 1; ctx.Err() == nil; i++ {
			r := fakeResult(i, time.Now(), inspection.NG)
			if s.WantsImage(r) || i%50 == 0 {
				r.Snapshot = &inspection.Snapshot{Frame: frame, ROI: roi, Heatmap: heatFromMask(t, mask, roi, inspection.Snapshot{}.Transform, 64, 64, 0.7)}
			}
			_ = s.Deliver(ctx, r)
			s.Event(inspection.Event{Kind: "k"})
		}
		done <- nil
	}()
	base := "http://" + s.Addr()
	for _, p := range []string{"/", "/api/results?n=16", "/api/events?n=50", "/api/latest.jpg", "/api/status", "/", "/api/latest.jpg"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 && !(p == "/api/latest.jpg" && resp.StatusCode == 404) {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func BenchmarkDeliver(b *testing.B) {
	s, err := New(testOptions())
	if err != nil {
		b.Fatal(err)
	}
	r := fakeResult(1, time.Now(), inspection.NG)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Deliver(ctx, r)
	}
}

func BenchmarkWantsImage(b *testing.B) {
	s, err := New(testOptions())
	if err != nil {
		b.Fatal(err)
	}
	r := fakeResult(1, time.Now(), inspection.OK)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.WantsImage(r)
	}
}

// TestTriggerContentTypes (issue 24 #9): a body the handler does not read
// is refused with 415 naming the accepted types, and nothing is
// triggered; the accepted ones carry the part ID through.
func TestTriggerContentTypes(t *testing.T) {
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("part_id", "M-1")
	_ = mw.Close()
	const howTo = `send application/json {"part_id":"…"}, an HTML form (application/x-www-form-urlencoded) with part_id, or no body and no Content-Type (part_id in the query, or none)`
	tests := []struct {
		name        string
		target      string
		ctype, body string
		wantCode    int
		wantErr     string   // the JSON error text, exactly ("" for accepted)
		wantIDs     []string // part IDs the daemon saw
	}{
		{"text/plain", "/api/trigger", "text/plain", "part_id=T-1", 415,
			`Content-Type "text/plain" is not accepted on /api/trigger (its part ID would be lost); ` + howTo, nil},
		{"text/plain with charset", "/api/trigger", "text/plain; charset=utf-8", "T-1", 415,
			`Content-Type "text/plain" is not accepted on /api/trigger (its part ID would be lost); ` + howTo, nil},
		{"multipart", "/api/trigger", mw.FormDataContentType(), mp.String(), 415,
			`Content-Type "multipart/form-data" is not accepted on /api/trigger (its part ID would be lost); ` + howTo, nil},
		{"xml", "/api/trigger?part_id=Q-9", "application/xml", "<part>X</part>", 415,
			`Content-Type "application/xml" is not accepted on /api/trigger (its part ID would be lost); ` + howTo, nil},
		{"body without type", "/api/trigger", "", `{"part_id":"A-1"}`, 415,
			"a body without a Content-Type is not read (its part ID would be lost); " + howTo, nil},
		{"unparseable type", "/api/trigger", "/json", `{"part_id":"A-1"}`, 415,
			`Content-Type "/json" cannot be parsed (mime: no media type); ` + howTo, nil},
		{"JSON sent as a form (curl -d)", "/api/trigger", "application/x-www-form-urlencoded", `{"part_id":"A-1"}`, 400,
			`form: unknown field "{\"part_id\":\"A-1\"}"; the only field is part_id (for a JSON body set Content-Type: application/json)`, nil},
		{"form with another field", "/api/trigger", "application/x-www-form-urlencoded", "part_id=F-1&id=F-2", 400,
			`form: unknown field "id"; the only field is part_id (for a JSON body set Content-Type: application/json)`, nil},
		{"JSON with charset", "/api/trigger", "application/json; charset=utf-8", `{"part_id":"J-1"}`, 202, "", []string{"J-1"}},
		{"JSON in capitals", "/api/trigger", "Application/JSON", `{"part_id":"J-2"}`, 202, "", []string{"J-2"}},
		{"form", "/api/trigger", "application/x-www-form-urlencoded", "part_id=F-9", 202, "", []string{"F-9"}},
		{"form, part id in the query", "/api/trigger?part_id=F-10", "application/x-www-form-urlencoded", "", 202, "", []string{"F-10"}},
		{"no body, no type", "/api/trigger", "", "", 202, "", []string{""}},
		{"no body, no type, query", "/api/trigger?part_id=Q-1", "", "", 202, "", []string{"Q-1"}},
		{"blank body, no type", "/api/trigger", "", " \n", 202, "", []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fc := newTestServer(t, Options{}, nil)
			rec := do(s.Handler(), "POST", tt.target, tt.ctype, tt.body, nil)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantCode, rec.Body.String())
			}
			if tt.wantErr != "" {
				var e apiError
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != tt.wantErr {
					t.Errorf("error %q\nwant  %q", e.Error, tt.wantErr)
				}
			}
			if got := rec.Header().Get("Accept-Post"); (rec.Code == 415) != (got == "application/json, application/x-www-form-urlencoded") {
				t.Errorf("Accept-Post %q on %d", got, rec.Code)
			}
			got, _ := fc.triggered()
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.wantIDs) {
				t.Errorf("daemon triggered %q, want %q", got, tt.wantIDs)
			}
		})
	}
}

// TestClearFault (issue 24 #6): POST /api/clear-fault calls the daemon's
// ClearFaults and answers with the problems left; a refusal is 409 with
// the daemon's reason; the status page's button works without
// JavaScript (form POST, then back to /).
func TestClearFault(t *testing.T) {
	faulted := func(fc *fakeControl) {
		fc.set(func(s *inspection.Status) {
			s.Healthy = false
			s.Problems = []string{"GPIO fault latched (FIFO overflow): every part is rejected physically"}
		})
	}
	tests := []struct {
		name      string
		setup     func(*fakeControl)
		method    string
		ctype     string
		hdr       map[string]string
		wantCode  int
		wantBody  string // exact JSON body
		wantCalls int
		wantLoc   string
	}{
		{name: "cleared", setup: faulted, method: "POST", wantCode: 200, wantBody: `{"cleared":true,"problems":[]}` + "\n", wantCalls: 1},
		{name: "cleared, JSON body ignored", setup: faulted, method: "POST", ctype: "application/json", wantCode: 200, wantCalls: 1,
			wantBody: `{"cleared":true,"problems":[]}` + "\n"},
		{name: "problems remain", setup: func(fc *fakeControl) {
			faulted(fc)
			fc.mu.Lock()
			fc.clearLeft = []string{"camera stalled for 12s"}
			fc.mu.Unlock()
		}, method: "POST", wantCode: 200, wantCalls: 1, wantBody: `{"cleared":true,"problems":["camera stalled for 12s"]}` + "\n"},
		{name: "no output latches faults", setup: func(fc *fakeControl) {
			fc.mu.Lock()
			fc.clearErr = errors.New("no output of this station latches faults")
			fc.mu.Unlock()
		}, method: "POST", wantCode: 409, wantBody: `{"error":"no output of this station latches faults"}` + "\n", wantCalls: 1},
		{name: "browser form", setup: faulted, method: "POST", ctype: "application/x-www-form-urlencoded",
			hdr: map[string]string{"Accept": "text/html,application/xhtml+xml"}, wantCode: 303, wantCalls: 1, wantLoc: "/"},
		{name: "GET", method: "GET", wantCode: 405, wantBody: `{"error":"method GET not allowed on /api/clear-fault; use POST"}` + "\n"},
		{name: "cross-site", setup: faulted, method: "POST", hdr: map[string]string{"Origin": "http://evil.example"},
			wantCode: 403, wantBody: `{"error":"cross-site clear-fault refused"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fc := newTestServer(t, Options{}, nil)
			if tt.setup != nil {
				tt.setup(fc)
			}
			rec := do(s.Handler(), tt.method, "/api/clear-fault", tt.ctype, "", tt.hdr)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantCode, rec.Body.String())
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body %s\nwant %s", rec.Body.String(), tt.wantBody)
			}
			if loc := rec.Header().Get("Location"); loc != tt.wantLoc {
				t.Errorf("Location %q, want %q", loc, tt.wantLoc)
			}
			if n := fc.clearCalls(); n != tt.wantCalls {
				t.Errorf("ClearFaults called %d times, want %d", n, tt.wantCalls)
			}
		})
	}
	// Before Start: 503 like the other routes that need the daemon.
	s, err := New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(s.Handler(), "POST", "/api/clear-fault", "", "", nil); rec.Code != 503 {
		t.Errorf("before Start: %d %s", rec.Code, rec.Body.String())
	}
}

// TestPageShowsFaults (issue 24 #6): a latched fault is on the page
// where a person looks — the problem banner with the clear-fault button
// (a plain form: it works without JavaScript), the last part and the
// results whose verdict the line did not act on.
func TestPageShowsFaults(t *testing.T) {
	const fault = "GPIO fault latched (FIFO overflow: more than 4 parts in flight): every part is rejected physically whatever its verdict says"
	fc := &fakeControl{status: fakeStatus(time.Now())}
	fc.status.Healthy, fc.status.Problems = false, []string{fault}
	s, _ := newTestServer(t, Options{}, fc)
	ok := fakeResult(1, time.Now().Add(-time.Second), inspection.OK)
	_ = s.Deliver(context.Background(), ok)
	r := fakeResult(2, time.Now(), inspection.OK)
	r.Faults = []string{fault}
	_ = s.Deliver(context.Background(), r)
	body := do(s.Handler(), "GET", "/", "", "", nil).Body.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`<div id="problems" class="banner bad">\s*<strong>UNHEALTHY</strong>\s*<ul id="problem-list"><li>` + regexp.QuoteMeta(fault) + `</li></ul>`),
		regexp.MustCompile(`<form id="clear-fault" class="clear-fault" method="post" action="/api/clear-fault">\s*<button type="submit">Clear latched fault</button>`),
		regexp.MustCompile(`<div id="last-faults" class="faults">output fault at this verdict — the line did not act on it: <span id="last-faults-text">` + regexp.QuoteMeta(fault) + `</span></div>`),
		regexp.MustCompile(`<tr class="faulted"><td>[^<]*</td><td>` + r.PartID + `</td>.*<div class="err">output fault: ` + regexp.QuoteMeta(fault) + `</div></td></tr>`),
		regexp.MustCompile(`<tr><td>[^<]*</td><td>` + ok.PartID + `</td>`),
	} {
		if !want.MatchString(body) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Healthy: no banner, no fault line.
	fc.set(func(st *inspection.Status) { st.Healthy, st.Problems = true, []string{} })
	_ = s.Deliver(context.Background(), fakeResult(3, time.Now(), inspection.OK))
	body = do(s.Handler(), "GET", "/", "", "", nil).Body.String()
	if !regexp.MustCompile(`<div id="problems" class="banner bad" hidden>`).MatchString(body) ||
		!regexp.MustCompile(`<div id="last-faults" class="faults" hidden>`).MatchString(body) {
		t.Error("fault banner or last-part fault line shown while healthy")
	}
}

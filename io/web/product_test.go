package web

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// productControl is a fakeControl with product changeover: products gear
// (code 1) and shaft (code 2), source http unless the test changes it.
type productControl struct {
	*fakeControl
	pmu    sync.Mutex
	source string
	calls  []string // "name/source"
}

func (p *productControl) SelectProduct(name, source string) error {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.calls = append(p.calls, name+"/"+source)
	if source != p.source {
		return fmt.Errorf("product %q from %s refused: %w (changeover.source is %q)", name, source, inspection.ErrProductSource, p.source)
	}
	if name != "gear" && name != "shaft" {
		return fmt.Errorf("product %q: %w (configured: gear, shaft)", name, inspection.ErrUnknownProduct)
	}
	p.set(func(st *inspection.Status) {
		st.Products.Active = name
		for i := range st.Products.Products {
			st.Products.Products[i].Active = st.Products.Products[i].Name == name
		}
	})
	return nil
}

func (p *productControl) SelectProductCode(code int, source string) error {
	return fmt.Errorf("code %d: not used over HTTP", code)
}

func (p *productControl) selections() []string {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return append([]string(nil), p.calls...)
}

// productStatus is fakeStatus with two products, gear active.
func productStatus(now time.Time) inspection.Status {
	st := fakeStatus(now)
	st.Products = inspection.ProductsStatus{Active: "gear", Source: inspection.ProductSourceHTTP, OnFailure: "keep",
		Products: []inspection.ProductStatus{
			{Name: "gear", Code: 1, BundleHash: "sha256:0123456789abcdef0123", Active: true, Loaded: true, MemoryMB: 180,
				Counts: inspection.Counts{Total: 120, OK: 110, NG: 8, Error: 2}},
			{Name: "shaft", Code: 2, BundleHash: "sha256:fedcba9876543210fedc", Loaded: false,
				Counts: inspection.Counts{Total: 7, OK: 7}},
		}}
	return st
}

// startWith starts a test server on host h.
func startWith(t *testing.T, h Host) *Server {
	t.Helper()
	s, err := New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// TestProductSelection: POST /api/product reads the name from JSON, a
// form or the query, checks it, and answers the daemon's verdict with the
// status a client can act on; a refused or malformed request selects
// nothing.
func TestProductSelection(t *testing.T) {
	tests := []struct {
		name, target, ctype, body string
		hdr                       map[string]string
		source                    string // changeover.source; "" = http
		wantCode                  int
		wantBody                  string // exact body; "" = not checked
		wantCalls                 string
		wantLoc                   string
	}{
		{name: "JSON", target: "/api/product", ctype: "application/json", body: `{"product":"shaft"}`,
			wantCode: 200, wantBody: `{"product":"shaft","active":"shaft"}` + "\n", wantCalls: "shaft/http"},
		{name: "form", target: "/api/product", ctype: "application/x-www-form-urlencoded", body: "product=shaft",
			wantCode: 200, wantBody: `{"product":"shaft","active":"shaft"}` + "\n", wantCalls: "shaft/http"},
		{name: "query", target: "/api/product?product=shaft", wantCode: 200, wantCalls: "shaft/http"},
		{name: "browser form", target: "/api/product", ctype: "application/x-www-form-urlencoded", body: "product=shaft",
			hdr: map[string]string{"Accept": "text/html"}, wantCode: 303, wantLoc: "/", wantCalls: "shaft/http"},
		{name: "unknown product", target: "/api/product", ctype: "application/json", body: `{"product":"nut"}`,
			wantCode: 404, wantBody: `{"error":"product \"nut\": unknown product (configured: gear, shaft)"}` + "\n", wantCalls: "nut/http"},
		{name: "another source", target: "/api/product", ctype: "application/json", body: `{"product":"shaft"}`, source: "plc",
			wantCode: 409, wantBody: `{"error":"product \"shaft\" from http refused: not the configured product source (changeover.source is \"plc\")"}` + "\n", wantCalls: "shaft/http"},
		{name: "missing", target: "/api/product", ctype: "application/json", body: `{}`,
			wantCode: 400, wantBody: `{"error":"product: missing; name a [[product]] (JSON {\"product\":\"…\"} or form field product)"}` + "\n"},
		{name: "bad name", target: "/api/product", ctype: "application/json", body: `{"product":"gear 2"}`,
			wantCode: 400, wantBody: `{"error":"product: \"gear 2\" contains \" \"; a product name is 1-64 characters of A-Z a-z 0-9 _ . -"}` + "\n"},
		{name: "long name", target: "/api/product", ctype: "application/json", body: `{"product":"` + strings.Repeat("g", 65) + `"}`,
			wantCode: 400, wantBody: `{"error":"product: 65 bytes long; a product name is 1-64 characters of A-Z a-z 0-9 _ . -"}` + "\n"},
		{name: "unknown JSON field", target: "/api/product", ctype: "application/json", body: `{"product":"gear","code":1}`,
			wantCode: 400, wantBody: `{"error":"body: want JSON {\"product\": \"…\"}: json: unknown field \"code\""}` + "\n"},
		{name: "number", target: "/api/product", ctype: "application/json", body: `{"product":1}`, wantCode: 400},
		{name: "unknown form field", target: "/api/product", ctype: "application/x-www-form-urlencoded", body: "name=gear",
			wantCode: 400, wantBody: `{"error":"form: unknown field \"name\"; the only field is product (for a JSON body set Content-Type: application/json)"}` + "\n"},
		{name: "text/plain", target: "/api/product", ctype: "text/plain", body: "gear", wantCode: 415},
		{name: "body without type", target: "/api/product", body: `{"product":"gear"}`, wantCode: 415},
		{name: "GET", target: "/api/product", wantCode: 405,
			wantBody: `{"error":"method GET not allowed on /api/product; use POST"}` + "\n"},
		{name: "cross-site", target: "/api/product", ctype: "application/json", body: `{"product":"shaft"}`,
			hdr: map[string]string{"Origin": "http://evil.example"}, wantCode: 403, wantBody: `{"error":"cross-site product selection refused"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := &productControl{fakeControl: &fakeControl{status: productStatus(time.Now())}, source: inspection.ProductSourceHTTP}
			if tt.source != "" {
				pc.source = tt.source
			}
			s := startWith(t, pc)
			method := "POST"
			if tt.name == "GET" {
				method = "GET"
			}
			rec := do(s.Handler(), method, tt.target, tt.ctype, tt.body, tt.hdr)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantCode, rec.Body.String())
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body %s\nwant %s", rec.Body.String(), tt.wantBody)
			}
			if loc := rec.Header().Get("Location"); loc != tt.wantLoc {
				t.Errorf("Location %q, want %q", loc, tt.wantLoc)
			}
			if got := strings.Join(pc.selections(), " "); got != tt.wantCalls {
				t.Errorf("selections %q, want %q", got, tt.wantCalls)
			}
			if rec.Code == http.StatusUnsupportedMediaType && rec.Header().Get("Accept-Post") == "" {
				t.Error("415 without Accept-Post")
			}
		})
	}
	// A daemon without product changeover: 501, nothing called.
	s, _ := newTestServer(t, Options{}, nil)
	rec := do(s.Handler(), "POST", "/api/product", "application/json", `{"product":"gear"}`, nil)
	if rec.Code != http.StatusNotImplemented || rec.Body.String() != `{"error":"product selection is not available on this station (its daemon has no product changeover)"}`+"\n" {
		t.Errorf("without changeover: %d %s", rec.Code, rec.Body.String())
	}
	// Before Start: 503.
	s2, err := New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(s2.Handler(), "POST", "/api/product", "application/json", `{"product":"gear"}`, nil); rec.Code != 503 {
		t.Errorf("before Start: %d %s", rec.Code, rec.Body.String())
	}
}

// TestPageShowsProducts: the status page names the active product (header
// and card) and lists every product with its code, loaded state, bundle
// and counts; the selection form appears only where HTTP is the source;
// /api/status carries the same. Without products the card is hidden.
func TestPageShowsProducts(t *testing.T) {
	pc := &productControl{fakeControl: &fakeControl{status: productStatus(time.Now())}, source: inspection.ProductSourceHTTP}
	s := startWith(t, pc)
	body := do(s.Handler(), "GET", "/", "", "", nil).Body.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`<span id="hdr-product-wrap" class="meta">product <b id="hdr-product">gear</b></span>`),
		regexp.MustCompile(`<section id="products-card" class="card products-card">`),
		regexp.MustCompile(`<td id="p-active">gear</td>`),
		regexp.MustCompile(`<tr class="active"><td>gear</td><td class="num">1</td><td>yes</td><td><code title="sha256:0123456789abcdef0123">0123456789ab</code></td><td class="num">110</td><td class="num">8</td><td class="num">2</td></tr>`),
		regexp.MustCompile(`<tr><td>shaft</td><td class="num">2</td><td>no</td><td><code title="sha256:fedcba9876543210fedc">fedcba987654</code></td><td class="num">7</td><td class="num">0</td><td class="num">0</td></tr>`),
		regexp.MustCompile(`<form id="product-form" class="trigger" method="post" action="/api/product">\s*<select id="product-select" name="product" aria-label="product"><option selected>gear</option><option>shaft</option></select>`),
	} {
		if !want.MatchString(body) {
			t.Errorf("page lacks %s", want)
		}
	}
	api := do(s.Handler(), "GET", "/api/status", "", "", nil).Body.String()
	if !strings.Contains(api, `"products":{"active":"gear","source":"http","on_failure":"keep","products":[{"name":"gear","code":1,`) {
		t.Errorf("/api/status lacks the products: %s", api)
	}
	// Another source: no form. No products: no card.
	pc.set(func(st *inspection.Status) { st.Products.Source = "plc" })
	if body := do(s.Handler(), "GET", "/", "", "", nil).Body.String(); !strings.Contains(body, `<form id="product-form" class="trigger" method="post" action="/api/product" hidden>`) {
		t.Error("selection form shown although changeover.source is plc")
	}
	pc.set(func(st *inspection.Status) { st.Products = inspection.ProductsStatus{} })
	body = do(s.Handler(), "GET", "/", "", "", nil).Body.String()
	if !strings.Contains(body, `<section id="products-card" class="card products-card" hidden>`) || !strings.Contains(body, `<span id="hdr-product-wrap" class="meta" hidden>`) {
		t.Error("products card or header shown without products")
	}
}

package gpio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

var codeLinesCfg = []string{"c0", "c1"}

// codeHost is a Host with product changeover that logs selections and
// triggers in the order the Actuator makes them. Codes 1 and 2 exist.
// Trigger of the part named in hold waits for release.
type codeHost struct {
	mu      sync.Mutex
	log     []string
	events  []inspection.Event
	hold    string
	release chan struct{}
}

func (h *codeHost) add(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *codeHost) Trigger(partID, source string) error {
	h.add("trigger:" + partID)
	h.mu.Lock()
	hold, release := h.hold, h.release
	h.mu.Unlock()
	if partID == hold {
		<-release
	}
	return nil
}

func (h *codeHost) ReportEvent(e inspection.Event) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

func (h *codeHost) SelectProduct(name, source string) error {
	return errors.New("not by name")
}

func (h *codeHost) SelectProductCode(code int, source string) error {
	if source != inspection.ProductSourceGPIO {
		return fmt.Errorf("source %s", source)
	}
	if code != 1 && code != 2 {
		h.add(fmt.Sprintf("refused:%d", code))
		return fmt.Errorf("product code %d: %w", code, inspection.ErrUnknownProduct)
	}
	h.add(fmt.Sprintf("select:%d", code))
	return nil
}

func (h *codeHost) lines() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.log, " ")
}

func (h *codeHost) waitLog(t *testing.T, suffix string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasSuffix(h.lines(), suffix) {
		if time.Now().After(deadline) {
			t.Fatalf("log %q does not end with %q", h.lines(), suffix)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func startCodes(t *testing.T, chip Chip, host Host, lines []string) (*Actuator, error) {
	t.Helper()
	cfg := testConfig("energise_to_reject")
	cfg.Debounce.D = 0 // the tests emit edges back to back
	a, err := New(cfg, chip, Options{Station: "s1", ProductLines: lines})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return a, a.Start(context.Background(), host)
}

// TestProductCodeLines: the code lines are read at each part-present edge
// (least significant bit first) and the code of that edge — not the
// lines' level when the trigger goroutine gets to it — is selected right
// before the part's trigger; a code already selected is not selected
// again, a refused one is retried at the next part, 0 selects nothing.
func TestProductCodeLines(t *testing.T) {
	sim := NewSim()
	h := &codeHost{hold: "gpio-1", release: make(chan struct{})}
	var once sync.Once
	unhold := func() { once.Do(func() { close(h.release) }) }
	if _, err := startCodes(t, sim, h, codeLinesCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unhold) // runs before the Actuator's Close
	edge := func(code uint64) {
		sim.SetCode(codeLinesCfg, code)
		if !sim.Emit("pp", true) {
			t.Fatal("edge not delivered")
		}
	}
	edge(1)
	h.waitLog(t, "trigger:gpio-1") // the trigger goroutine is held in part 1's Trigger
	edge(2)
	edge(3)
	edge(3)
	edge(2)
	sim.SetCode(codeLinesCfg, 1) // no edge: must not matter to parts 2-5
	unhold()
	want := "select:1 trigger:gpio-1 select:2 trigger:gpio-2 refused:3 trigger:gpio-3 refused:3 trigger:gpio-4 select:2 trigger:gpio-5"
	h.waitLog(t, "trigger:gpio-5")
	if got := h.lines(); got != want {
		t.Fatalf("log\n%s\nwant\n%s", got, want)
	}
	edge(2) // selected already
	edge(0) // no product
	edge(1)
	h.waitLog(t, "trigger:gpio-8")
	if got := h.lines(); got != want+" trigger:gpio-6 trigger:gpio-7 select:1 trigger:gpio-8" {
		t.Fatalf("log after parts 6-8: %s", got)
	}
}

// failingLevels is a Sim whose code lines cannot be read.
type failingLevels struct {
	*Sim
	fail error
	mu   sync.Mutex
}

type failingReader struct {
	LevelReader
	c *failingLevels
}

func (r failingReader) Read() ([]bool, error) {
	r.c.mu.Lock()
	err := r.c.fail
	r.c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return r.LevelReader.Read()
}

func (c *failingLevels) Levels(lines []string, o InputOptions) (LevelReader, error) {
	r, err := c.Sim.Levels(lines, o)
	if err != nil {
		return nil, err
	}
	return failingReader{r, c}, nil
}

// TestProductCodeLinesErrors: bad options, lines already used, and code
// lines that cannot be read (one event until they can; the part is
// triggered with the active product); a host without changeover.
func TestProductCodeLinesErrors(t *testing.T) {
	many := make([]string, 17)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	if _, err := New(testConfig("energise_to_reject"), NewSim(), Options{ProductLines: many}); err == nil ||
		err.Error() != "gpio: 17 product code lines; at most 16 (codes up to 65535)" {
		t.Errorf("17 lines: %v", err)
	}
	cfg := testConfig("energise_to_reject")
	cfg.PartPresentLine = ""
	if _, err := New(cfg, NewSim(), Options{ProductLines: codeLinesCfg}); err == nil ||
		err.Error() != "gpio: product code lines are read at the part-present edge, but gpio.part_present_line is not set" {
		t.Errorf("no part-present line: %v", err)
	}
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"c0", "reject"}, `changeover.gpio_lines: line "reject" is already requested; each line has one role`},
		{[]string{"c0", "c0"}, `changeover.gpio_lines: line "c0" is already requested; each line has one role`},
		{[]string{"c0", " "}, "changeover.gpio_lines: empty line"},
	} {
		if _, err := startCodes(t, NewSim(), &codeHost{}, tc.lines); err == nil || err.Error() != tc.want {
			t.Errorf("lines %q: %v, want %q", tc.lines, err, tc.want)
		}
	}

	chip := &failingLevels{Sim: NewSim(), fail: errors.New("EIO")}
	h := &codeHost{}
	if _, err := startCodes(t, chip, h, codeLinesCfg); err != nil {
		t.Fatal(err)
	}
	chip.SetCode(codeLinesCfg, 2)
	chip.Emit("pp", true)
	chip.Emit("pp", true)
	h.waitLog(t, "trigger:gpio-1 trigger:gpio-2")
	h.mu.Lock()
	var evs []string
	for _, e := range h.events {
		if e.Kind == EventProductCode {
			evs = append(evs, e.Message)
		}
	}
	h.mu.Unlock()
	if len(evs) != 1 || evs[0] != "product code lines cannot be read at the part-present edge (EIO): parts keep the active product until they can" {
		t.Errorf("events %q; want one gpio_product_code", evs)
	}
	chip.mu.Lock()
	chip.fail = nil
	chip.mu.Unlock()
	chip.Emit("pp", true)
	h.waitLog(t, "select:2 trigger:gpio-3")

	// A host without product changeover: parts are triggered all the same.
	sim := NewSim()
	ph := &plainHost{}
	if _, err := startCodes(t, sim, ph, codeLinesCfg); err != nil {
		t.Fatal(err)
	}
	sim.SetCode(codeLinesCfg, 1)
	sim.Emit("pp", true)
	deadline := time.Now().Add(5 * time.Second)
	for ph.n.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("part not triggered on a host without changeover")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// plainHost has no product changeover; it counts triggers.
type plainHost struct{ n atomic.Int32 }

func (h *plainHost) Trigger(string, string) error { h.n.Add(1); return nil }
func (h *plainHost) ReportEvent(inspection.Event) {}

// TestSimInputHandler: the demo drives the code lines and the
// part-present line over HTTP.
func TestSimInputHandler(t *testing.T) {
	sim := NewSim()
	h := &codeHost{}
	if _, err := startCodes(t, sim, h, codeLinesCfg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.InputHandler())
	defer srv.Close()
	post := func(q string) (int, string) {
		resp, err := http.Post(srv.URL+"?"+q, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, strings.TrimSpace(b.String())
	}
	if code, body := post("set=c0:0,c1:1&edge=pp"); code != 200 || body != `{"inputs":{"c0":false,"c1":true},"edge":"pp","delivered":true}` {
		t.Errorf("POST: %d %s", code, body)
	}
	h.waitLog(t, "select:2 trigger:gpio-1")
	if code, body := post("set=c0"); code != 400 || body != `set: "c0" is not line:0 or line:1` {
		t.Errorf("bad set: %d %s", code, body)
	}
	if code, body := post("edge=nope"); code != 409 || !strings.HasPrefix(body, `edge: line "nope" is not a requested edge input`) {
		t.Errorf("bad edge: %d %s", code, body)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

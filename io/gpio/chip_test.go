package gpio

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
)

func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
		offset        int
	}{
		{"12", "12", "", 12},
		{" 012 ", "12", "", 12},
		{"PQ.05", "PQ.05", "", -1},
		{"GPIO12", "GPIO12", "", -1},
		{"-3", "", `line "-3": negative offset`, 0},
		{" ", "", "empty line", 0},
	} {
		got, err := ParseLine(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("ParseLine(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got.String() != c.want || got.Offset != c.offset {
			t.Errorf("ParseLine(%q) = %+v, %v; want %s offset %d", c.in, got, err, c.want, c.offset)
		}
	}
}

func TestParseBiasDrive(t *testing.T) {
	for in, want := range map[string]Bias{"as_is": BiasAsIs, "disabled": BiasDisabled, "pull_up": BiasPullUp, "pull_down": BiasPullDown} {
		if got, err := ParseBias(in); err != nil || got != want {
			t.Errorf("ParseBias(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"up", ""} {
		if _, err := ParseBias(in); err == nil || err.Error() != `gpio.bias "`+in+`": want as_is, disabled, pull_up or pull_down` {
			t.Errorf("ParseBias(%q) error %v", in, err)
		}
	}
	for in, want := range map[string]Drive{"push_pull": DrivePushPull, "open_drain": DriveOpenDrain, "open_source": DriveOpenSource} {
		if got, err := ParseDrive(in); err != nil || got != want {
			t.Errorf("ParseDrive(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"tri", ""} {
		if _, err := ParseDrive(in); err == nil || err.Error() != `gpio.drive "`+in+`": want push_pull, open_drain or open_source` {
			t.Errorf("ParseDrive(%q) error %v", in, err)
		}
	}
}

// New refuses the enum values it cannot map (config refuses them first)
// and requests nothing, so a refused New leaves the chip untouched.
func TestNewErrors(t *testing.T) {
	base := testConfig("energise_to_pass")
	for _, c := range []struct {
		name string
		edit func(*config.GPIO)
		want string
	}{
		{"bad bias", func(g *config.GPIO) { g.Bias = "up" }, `gpio.bias "up": want as_is, disabled, pull_up or pull_down`},
		{"bad drive", func(g *config.GPIO) { g.Drive = "" }, `gpio.drive "": want push_pull, open_drain or open_source`},
		{"bad polarity", func(g *config.GPIO) { g.RejectPolarity = "pass" }, `gpio.reject_polarity "pass": want energise_to_pass or energise_to_reject`},
		{"bad mode", func(g *config.GPIO) { g.RejectMode = "" }, `gpio.reject_mode "": want time or encoder`},
		{"bad late policy", func(g *config.GPIO) { g.LatePolicy = "ignore" }, `gpio.late_policy "ignore": want reject or pass`},
		{"bad edge", func(g *config.GPIO) { g.PartPresentEdge = "both" }, `gpio.part_present_edge "both": want rising or falling`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			c.edit(&cfg)
			chip := newCountingChip()
			_, err := New(cfg, chip, Options{})
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if n, closed := chip.state(); n != 0 || closed {
				t.Errorf("refused New: %d lines requested, chip closed %v; want 0, false (the caller still owns it)", n, closed)
			}
		})
	}
	if _, err := New(base, nil, Options{}); err == nil || err.Error() != "gpio: no chip" {
		t.Errorf("New without a chip: error %v", err)
	}
}

// A failing line request fails Start with the key of the line and
// releases every line already requested.
func TestStartErrors(t *testing.T) {
	base := testConfig("energise_to_pass")
	base.OKLine, base.NGLine, base.StrobeLine = "ok", "ng", "strobe"
	base.RejectMode, base.EncoderLine, base.RejectCounts = "encoder", "enc", 10
	for _, c := range []struct {
		name string
		edit func(*config.GPIO, *countingChip)
		want string
	}{
		{"no reject line", func(g *config.GPIO, _ *countingChip) { g.RejectLine = "" }, "gpio.reject_line: empty line"},
		{"line twice", func(g *config.GPIO, _ *countingChip) { g.ReadyLine = "reject" }, `gpio.ready_line: line "reject" is already requested; each line has one role`},
		{"strobe busy", func(_ *config.GPIO, c *countingChip) { c.fail["strobe"] = errors.New("device or resource busy") }, "gpio.strobe_line: device or resource busy"},
		{"encoder busy", func(_ *config.GPIO, c *countingChip) { c.fail["enc"] = errors.New("device or resource busy") }, "gpio.encoder_line: device or resource busy"},
		{"part-present busy", func(_ *config.GPIO, c *countingChip) { c.fail["pp"] = errors.New("device or resource busy") }, "gpio.part_present_line: device or resource busy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			chip := newCountingChip()
			c.edit(&cfg, chip)
			a, err := New(cfg, chip, Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = a.Start(context.Background(), eventHost{&eventLog{}})
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if n, _ := chip.state(); n != 0 {
				t.Errorf("%d lines still requested after the failed Start; want 0", n)
			}
			if chip.total == 0 && c.name != "no reject line" {
				t.Error("no line was requested before the failure; the case tests nothing")
			}
			if err := a.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, closed := chip.state(); !closed {
				t.Error("Close after a failed Start did not close the chip")
			}
		})
	}
}

func TestSimHandler(t *testing.T) {
	sim := NewSim()
	o, _ := sim.Output("reject", OutputOptions{})
	due := time.Now()
	_ = o.(TaggedOutput).SetTagged(true, Tag{PartID: "p1", Intended: due, Reason: "reject"})
	_ = o.Set(false)
	rec := httptest.NewRecorder()
	sim.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/actuations?part_id=p1", nil))
	var body struct {
		Total      uint64      `json:"total"`
		Actuations []Actuation `json:"actuations"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err, rec.Body.String())
	}
	if body.Total != 2 || len(body.Actuations) != 1 || body.Actuations[0].PartID != "p1" || !body.Actuations[0].Value ||
		body.Actuations[0].Line != "reject" || body.Actuations[0].Intended.IsZero() {
		t.Errorf("body %s", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	sim.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/actuations?limit=x", nil))
	if rec.Code != 400 {
		t.Errorf("bad limit: status %d", rec.Code)
	}
	for i := range SimHistory + 10 {
		_ = o.Set(i%2 == 0)
	}
	if a := sim.Actuations(); len(a) != SimHistory || a[len(a)-1].Seq != sim.Total() || a[0].Seq != sim.Total()-SimHistory+1 {
		t.Errorf("ring: %d kept, seq %d..%d, total %d", len(a), a[0].Seq, a[len(a)-1].Seq, sim.Total())
	}
}

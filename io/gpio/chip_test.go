package gpio

import (
	"encoding/json"
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
	for in, want := range map[string]Bias{"as_is": BiasAsIs, "": BiasAsIs, "disabled": BiasDisabled, "pull_up": BiasPullUp, "pull_down": BiasPullDown} {
		if got, err := ParseBias(in); err != nil || got != want {
			t.Errorf("ParseBias(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseBias("up"); err == nil || err.Error() != `gpio.bias "up": want as_is, disabled, pull_up or pull_down` {
		t.Errorf("ParseBias(up) error %v", err)
	}
	for in, want := range map[string]Drive{"push_pull": DrivePushPull, "open_drain": DriveOpenDrain, "open_source": DriveOpenSource} {
		if got, err := ParseDrive(in); err != nil || got != want {
			t.Errorf("ParseDrive(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseDrive("tri"); err == nil || err.Error() != `gpio.drive "tri": want push_pull, open_drain or open_source` {
		t.Errorf("ParseDrive(tri) error %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	base := testConfig("energise_to_pass")
	for _, c := range []struct {
		name string
		edit func(*config.GPIO)
		want string
	}{
		{"no reject line", func(g *config.GPIO) { g.RejectLine = "" }, "gpio.reject_line: must not be empty"},
		{"encoder without line", func(g *config.GPIO) { g.RejectMode = "encoder"; g.RejectCounts = 5 }, `gpio.reject_mode "encoder" needs gpio.encoder_line and gpio.reject_counts ≥ 1`},
		{"line twice", func(g *config.GPIO) { g.ReadyLine = "reject" }, `gpio: line "reject" is already requested; each line has one role`},
		{"bad bias", func(g *config.GPIO) { g.Bias = "up" }, `gpio.bias "up": want as_is, disabled, pull_up or pull_down`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			c.edit(&cfg)
			sim := NewSim()
			_, err := New(cfg, sim, Options{})
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			// Every line requested before the failure was released.
			if _, err := sim.Output("reject", OutputOptions{}); c.name != "bad bias" && c.name != "no reject line" && err != nil {
				t.Errorf("reject line not released: %v", err)
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

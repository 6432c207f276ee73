package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// productConfig writes two bundle folders and returns the directory and
// a configuration head without model.bundle.
func productDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []string{"gear", "shaft"} {
		if err := os.MkdirAll(filepath.Join(dir, "models", b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const productHead = `config_version = 1
[station]
id = "s1"
`

// TestProductConfigErrors: each mistake in [changeover] and [[product]]
// is reported with the file, the line and the key (product[N].key for the
// N-th [[product]], from 1) and what is expected.
func TestProductConfigErrors(t *testing.T) {
	two := `
[[product]]
name = "gear"
code = 1
bundle = "models/gear"
[[product]]
name = "shaft"
code = 2
bundle = "models/shaft"
`
	cases := []struct {
		name, text string
		want       []string
	}{
		{"model.bundle beside products", productHead + "[model]\nbundle = \"models/gear\"\n" + two,
			[]string{`c.toml:5: model.bundle: must not be set when [[product]] tables are configured: each product names its own bundle (product.bundle); remove model.bundle`}},
		{"duplicate name", productHead + two + "[[product]]\nname = \"gear\"\nbundle = \"models/gear\"\n",
			[]string{`c.toml:14: product[3].name: "gear" is already the name of product[1]; names are unique`}},
		{"bad name", productHead + "[[product]]\nname = \"gear wheel\"\nbundle = \"models/gear\"\n",
			[]string{`c.toml:5: product[1].name: "gear wheel" is not a product name; use 1 to 64 of A-Z a-z 0-9 _ . -`}},
		{"missing name and bundle", productHead + "[[product]]\ncode = 3\n",
			[]string{`c.toml:4: product[1].bundle: must not be empty; set the path of the product's model bundle directory`,
				`c.toml:4: product[1].name: must not be empty; name the product (1 to 64 of A-Z a-z 0-9 _ . -), e.g. "gear"`}},
		{"bundle missing on disk", productHead + two + "[[product]]\nname = \"cam\"\nbundle = \"models/cam\"\n",
			[]string{`c.toml:15: product[3].bundle: "models/cam": no such file or directory; expected an existing directory`}},
		{"duplicate code", productHead + two + "[[product]]\nname = \"cam\"\ncode = 2\nbundle = \"models/gear\"\n",
			[]string{`c.toml:15: product[3].code: 2 is already the code of product[2] "shaft"; codes are unique`}},
		{"code out of range", productHead + "[[product]]\nname = \"gear\"\ncode = 70000\nbundle = \"models/gear\"\n",
			[]string{`c.toml:6: product[1].code: 70000 is out of range; allowed 0 to 65535 (0 = none)`}},
		{"decision override out of range", productHead + two + "[product.decision]\nthreshold = 1.5\n",
			[]string{`c.toml:14: product[2].decision.threshold: 1.5 is out of range; allowed 0 to 1 (0 = calibrated value from the bundle)`}},
		{"roi half set", productHead + "[[product]]\nname = \"gear\"\nbundle = \"models/gear\"\n[product.roi]\nwidth = 100\n",
			[]string{`c.toml:8: product[1].roi.width: width 100 and height 0 must both be 0 (full frame) or both be set`}},
		{"unknown product key", productHead + "[[product]]\nname = \"gear\"\nbundle = \"models/gear\"\nmodel = \"x\"\n",
			[]string{`c.toml:7: product.model: unknown key; check the spelling against config/inspectd.example.toml`}},
		{"source without products", productHead + "[model]\nbundle = \"models/gear\"\n[changeover]\nsource = \"mqtt\"\n",
			[]string{`c.toml:7: changeover.source: is "mqtt" but no [[product]] is configured; a station with one product (model.bundle) has nothing to select — add [[product]] tables or set source = "none"`}},
		{"bad source", productHead + "[changeover]\nsource = \"modbus\"\n" + two,
			[]string{`c.toml:5: changeover.source: "modbus" is not allowed; use one of "none", "mqtt", "sparkplug", "http", "plc", "gpio"`}},
		{"bad on_failure", productHead + "[changeover]\non_failure = \"stop\"\n" + two,
			[]string{`c.toml:5: changeover.on_failure: "stop" is not allowed; use one of "keep", "reject"`}},
		{"unknown initial", productHead + "[changeover]\ninitial = \"cam\"\n" + two,
			[]string{`c.toml:5: changeover.initial: "cam" is not the name of a [[product]]; use one of "gear", "shaft"`}},
		{"plc needs plc.enabled", productHead + "[changeover]\nsource = \"plc\"\nplc_register = 40\n" + two,
			[]string{`c.toml:5: changeover.source: "plc" needs plc.enabled = true (the register is read over the PLC connection)`}},
		{"plc needs codes", productHead + "[changeover]\nsource = \"plc\"\n[plc]\nenabled = true\naddress = \"127.0.0.1:502\"\n[[product]]\nname = \"gear\"\nbundle = \"models/gear\"\n",
			[]string{`c.toml:9: product[1].code: is required when changeover.source is "plc": the plc selects a product by its code (1 to 65535)`}},
		{"sparkplug needs the mode", productHead + "[changeover]\nsource = \"sparkplug\"\n" + two,
			[]string{`c.toml:5: changeover.source: "sparkplug" needs mqtt.mode = "sparkplug", but mqtt.mode is "json"`}},
		{"gpio lines without gpio source", productHead + "[changeover]\ngpio_lines = [\"5\"]\n" + two,
			[]string{`c.toml:5: changeover.gpio_lines: is set but source is "none"; the code lines apply to source "gpio" only`}},
		{"gpio code does not fit", productHead + `[trigger]
mode = "gpio"
[gpio]
enabled = true
chip = "sim"
reject_line = "1"
reject_delay = "200ms"
part_present_line = "2"
[changeover]
source = "gpio"
gpio_lines = ["3", "2"]
[[product]]
name = "gear"
code = 4
bundle = "models/gear"
`, []string{
			`c.toml:14: changeover.gpio_lines: line 2 "2" is already used by gpio.part_present_line; each line has one role`,
			`c.toml:17: product[1].code: 4 does not fit the 2 changeover.gpio_lines; allowed 1 to 3`}},
		{"plc_poll too fast", productHead + "[changeover]\nplc_poll = \"1ms\"\n" + two,
			[]string{`c.toml:5: changeover.plc_poll: 1ms is out of range; allowed 10ms to 10s`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := productDir(t)
			_, err := Parse(filepath.Join(dir, "c.toml"), []byte(c.text))
			if err == nil {
				t.Fatalf("Parse succeeded; want %q", c.want)
			}
			got := strings.ReplaceAll(strings.ReplaceAll(err.Error(), dir+"/", ""), dir, "DIR")
			want := strings.Join(c.want, "\n")
			if got != want {
				t.Errorf("error text\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// TestProductsValid: [[product]] replaces model.bundle; bundles resolve
// against the file's directory; overrides apply only where set; the list
// of a station without products is its model.bundle.
func TestProductsValid(t *testing.T) {
	dir := productDir(t)
	text := productHead + `[decision]
threshold = 0.4
max_regions = 8
[camera.roi]
x = 10
y = 10
width = 100
height = 100
[changeover]
source = "http"
initial = "shaft"
on_failure = "reject"
[[product]]
name = "gear"
code = 1
bundle = "models/gear"
[product.decision]
threshold = 0.7
[[product]]
name = "shaft"
bundle = "models/shaft"
[product.roi]
x = 1
y = 2
width = 30
height = 40
`
	cfg, err := Parse(filepath.Join(dir, "c.toml"), []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	ps := cfg.ProductList()
	if len(ps) != 2 || ps[0].Name != "gear" || ps[1].Name != "shaft" || ps[0].Bundle != filepath.Join(dir, "models/gear") {
		t.Fatalf("products %+v", ps)
	}
	if d := ps[0].EffectiveDecision(cfg.Decision); d.Threshold != 0.7 || d.MaxRegions != 8 {
		t.Errorf("gear decision %+v: want threshold 0.7 (own), max_regions 8 (inherited)", d)
	}
	if d := ps[1].EffectiveDecision(cfg.Decision); d.Threshold != 0.4 {
		t.Errorf("shaft decision %+v: want threshold 0.4 (inherited)", d)
	}
	if r := ps[0].EffectiveROI(cfg.Camera.ROI); r != cfg.Camera.ROI {
		t.Errorf("gear ROI %+v, want camera.roi", r)
	}
	if r := ps[1].EffectiveROI(cfg.Camera.ROI); r != (ROI{X: 1, Y: 2, Width: 30, Height: 40}) {
		t.Errorf("shaft ROI %+v", r)
	}
	if cfg.Changeover.Source != ChangeoverHTTP || cfg.Changeover.Initial != "shaft" || cfg.Changeover.OnFailure != OnFailureReject {
		t.Errorf("changeover %+v", cfg.Changeover)
	}

	single, err := Parse(filepath.Join(dir, "c.toml"), []byte(productHead+"[model]\nbundle = \"models/gear\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ps := single.ProductList(); len(ps) != 1 || ps[0].Name != "" || ps[0].Bundle != filepath.Join(dir, "models/gear") {
		t.Errorf("single-product list %+v", ps)
	}
}

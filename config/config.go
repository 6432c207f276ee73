// Package config loads, defaults and validates the inspectd station
// configuration, a versioned TOML file edited by field technicians.
//
// Decoding is strict: syntax errors report file:line:col with the offending
// line and a caret; unknown keys, wrong types and bad values are reported as
// problems naming the dotted key (and its line where it can be found), the bad
// value and what is allowed. Semantic validation collects every problem rather
// than stopping at the first.
//
// Each section of the file is one struct in its own file (station.go,
// camera.go, …) with a defaults method and a validate method; Config lists
// the sections as fields and lists them in sections(), so adding a
// section means adding one file and one field.
package config

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/tomlcheck"
)

// Supported configuration format versions. A file must declare
// config_version; versions outside this range are rejected.
const (
	MinVersion = 1
	MaxVersion = 1
)

// Config is a complete, validated station configuration.
type Config struct {
	// ConfigVersion is the format version of the file (required).
	ConfigVersion int `toml:"config_version"`
	// StateDir holds the outbox, archive and engine caches unless those are
	// configured explicitly. Created at start-up if absent.
	StateDir string `toml:"state_dir"`

	Station  Station  `toml:"station"`
	Camera   Camera   `toml:"camera"`
	Trigger  Trigger  `toml:"trigger"`
	Model    Model    `toml:"model"`
	Decision Decision `toml:"decision"`
	GPIO     GPIO     `toml:"gpio"`
	PLC      PLC      `toml:"plc"`
	MQTT     MQTT     `toml:"mqtt"`
	Archive  Archive  `toml:"archive"`
	HTTP     HTTP     `toml:"http"`
	Log      Log      `toml:"log"`

	// Changeover chooses the active product among Products.
	Changeover Changeover `toml:"changeover"`
	// Products are the [[product]] tables: the station's recipes, each
	// with its own bundle; none means the one product of model.bundle
	// (see ProductList).
	Products []Product `toml:"product"`
	// Rollout configures the installation of signed model bundles.
	Rollout Rollout `toml:"rollout"`
	// Review configures the review view and the label log.
	Review Review `toml:"review"`

	// File is the path the configuration was read from ("" when parsed from
	// memory without a name). Relative paths inside the file were resolved
	// against its directory.
	File string `toml:"-"`

	// keys maps dotted keys to their lines in File, for messages about
	// values checked after loading (Problem).
	keys *tomlcheck.Index `toml:"-"`
}

// Problem returns a problem about key, located at the key's line in the
// file when it is there: for checks made after Load, such as verifying the
// model bundle, so that their messages read like the rest.
func (c *Config) Problem(key, format string, args ...any) Problem {
	return Problem{File: c.File, Line: c.keys.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// section is implemented by every top-level table of the file.
type section interface {
	// defaults sets the section's default values; it is the only place
	// where defaults are defined.
	defaults()
	// validate reports every problem of the section to v.
	validate(v *Checker)
}

// resolver is implemented by sections holding paths that are resolved
// against the configuration file's directory and the state directory.
type resolver interface {
	resolvePaths(r pathResolver)
}

// Default returns the configuration with every default applied and the
// required fields (config_version, station.id, model.bundle) left empty.
func Default() Config {
	c := Config{StateDir: "/var/lib/inspectd"}
	c.forEachSection(func(_ string, s section) { s.defaults() })
	return c
}

// forEachSection calls fn for every section of c, with its TOML table
// name, in file order. The list is explicit: a test checks that it names
// every table field of Config exactly once.
func (c *Config) forEachSection(fn func(name string, s section)) {
	for _, s := range c.sections() {
		fn(s.name, s.s)
	}
}

type namedSection struct {
	name string
	s    section
}

func (c *Config) sections() []namedSection {
	return []namedSection{
		{"station", &c.Station},
		{"camera", &c.Camera},
		{"trigger", &c.Trigger},
		{"model", &c.Model},
		{"decision", &c.Decision},
		{"gpio", &c.GPIO},
		{"plc", &c.PLC},
		{"mqtt", &c.MQTT},
		{"archive", &c.Archive},
		{"http", &c.HTTP},
		{"log", &c.Log},
		{"changeover", &c.Changeover},
		{"rollout", &c.Rollout},
		{"review", &c.Review},
	}
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "" {
		return f.Name
	}
	return name
}

// MaxFileBytes is the largest configuration file Load reads (1 MiB; the
// commented example with every key is about 20 KiB).
const MaxFileBytes = tomlcheck.MaxFileBytes

// Load reads, decodes and validates the configuration file at path. The
// error is a *SyntaxError, a Problems list, or a read error naming the file.
//
// path must be a regular file (or a symbolic link to one) of at most
// MaxFileBytes: a directory, a device such as /dev/zero, a named pipe or a
// socket is refused before anything is read (wrapping
// tomlcheck.ErrNotRegular), so that neither check-config nor a reload can
// hang on a pipe or read a device until memory runs out.
func Load(path string) (*Config, error) {
	data, err := tomlcheck.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates configuration text. name is used in messages
// and as the base for relative paths (its directory); it may be empty.
func Parse(name string, data []byte) (*Config, error) {
	display := name
	if display == "" {
		display = "<config>"
	}
	text := string(data)
	idx := tomlcheck.NewIndex(text)

	// The version decides how the rest is read, so check it first and
	// alone: an unknown version makes every other message noise.
	var head struct {
		ConfigVersion any `toml:"config_version"`
	}
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&head); err != nil {
		return nil, tomlcheck.Syntax(display, text, err)
	}
	if p := checkVersion(head.ConfigVersion, idx); p != nil {
		p.File = display
		return nil, Problems{*p}
	}

	cfg := Default()
	v, md, err := tomlcheck.DecodeIndexed(display, data, idx, &cfg, "config/inspectd.example.toml")
	if err != nil {
		return nil, err
	}
	switch {
	case !md.IsDefined("station", "id"):
		v.ProblemAt("station.id", "required but missing; set a unique station identifier, e.g. \"line1-cam1\"")
	case cfg.Station.ID == "":
		v.ProblemAt("station.id", "must not be empty; set a unique station identifier, e.g. \"line1-cam1\" (it names the station in every result and MQTT topic)")
	}
	switch {
	case len(cfg.Products) > 0:
		// Each product names its bundle (validateProducts).
	case !md.IsDefined("model", "bundle"):
		v.ProblemAt("model.bundle", "required but missing; set the path of the model bundle directory, or configure [[product]] tables")
	case cfg.Model.Bundle == "":
		v.ProblemAt("model.bundle", "must not be empty; set the path of the model bundle directory written by `inspectd train`")
	}

	cfg.File = name
	cfg.keys = idx
	baseDir := "."
	if name != "" {
		baseDir = filepath.Dir(name)
	}
	cfg.resolvePaths(pathResolver{base: baseDir})

	if cfg.StateDir == "" {
		v.ProblemAt("state_dir", "must not be empty; the daemon keeps its outbox and caches there")
	} else {
		v.DataDir("state_dir", cfg.StateDir)
	}
	cfg.forEachSection(func(name string, s section) {
		s.validate(v.In(name))
	})
	cfg.validateAcrossSections(v)
	cfg.validateProducts(v, md.IsDefined("model", "bundle"))
	cfg.validateChangeover(v)
	cfg.validateReview(v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func checkVersion(raw any, idx *tomlcheck.Index) *Problem {
	supported := fmt.Sprintf("this inspectd supports config_version %d to %d", MinVersion, MaxVersion)
	if raw == nil {
		return &Problem{Key: "config_version", Line: 1, Msg: "required but missing; add `config_version = 1` at the top; " + supported}
	}
	line := idx.Line("config_version")
	n, ok := raw.(int64)
	if !ok {
		return &Problem{Key: "config_version", Line: line, Msg: fmt.Sprintf("must be an integer, got %s; %s", describeValue(raw), supported)}
	}
	if n < MinVersion || n > MaxVersion {
		return &Problem{Key: "config_version", Line: line, Msg: fmt.Sprintf("version %d is not supported; %s", n, supported)}
	}
	return nil
}

func describeValue(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	default:
		return fmt.Sprintf("%v", x)
	}
}

func (c *Config) resolvePaths(r pathResolver) {
	c.StateDir = r.path(c.StateDir)
	r.stateDir = c.StateDir
	c.forEachSection(func(_ string, s section) {
		if pr, ok := s.(resolver); ok {
			pr.resolvePaths(r)
		}
	})
	for i := range c.Products {
		c.Products[i].Bundle = r.path(c.Products[i].Bundle)
	}
}

// pathResolver turns relative paths into paths relative to the config
// file's directory, and empty "derived" paths into state-dir children.
type pathResolver struct {
	base     string
	stateDir string
}

func (r pathResolver) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.base, p)
}

// stateChild returns p resolved, or stateDir/child when p is empty.
func (r pathResolver) stateChild(p, child string) string {
	if p == "" {
		return filepath.Join(r.stateDir, child)
	}
	return r.path(p)
}

// validateAcrossSections reports problems that involve more than one
// section.
func (c *Config) validateAcrossSections(v *Checker) {
	if c.Trigger.Mode == TriggerGPIO && (!c.GPIO.Enabled || c.GPIO.PartPresentLine == "") {
		v.In("trigger").Errorf("mode", `"gpio" needs gpio.enabled = true and gpio.part_present_line set`)
	}
}

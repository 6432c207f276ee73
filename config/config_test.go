package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/tomlcheck"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// TestInvalidConfigs loads every testdata/invalid/*.toml and compares the
// complete error text with the .golden file beside it.
func TestInvalidConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("only %d invalid cases; the suite needs at least 20", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatalf("Load(%s) succeeded; want an error", f)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q is not ErrInvalid", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("error text mismatch for %s\n--- got\n%s--- want\n%s", f, got, want)
			}
		})
	}
}

// TestExampleMatchesDefaults keeps the commented example valid and equal
// in every value to Default(), apart from the required keys.
func TestExampleMatchesDefaults(t *testing.T) {
	const example = "inspectd.example.toml"
	cfg, err := Load(example)
	if err != nil {
		t.Fatalf("example config is invalid:\n%v", err)
	}
	want := Default()
	want.ConfigVersion = 1
	want.Station.ID = cfg.Station.ID
	want.Model.Bundle = "../testdata/demo-bundle"
	want.File = example
	want.resolvePaths(pathResolver{base: filepath.Dir(example)})
	want.keys = cfg.keys
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("example differs from defaults:\n got %+v\nwant %+v", *cfg, want)
	}
}

// TestExampleDocumentsEveryKey checks that every key of Config appears in
// the example file with a comment line right above it or its group.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("inspectd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	idx := tomlcheck.NewIndex(string(data))
	// Arrays of tables ([[product]]) are documented by a commented
	// example: a block of comment lines starting with "# [[name]]".
	commented := tomlcheck.NewIndex(commentedExample(string(data)))
	for _, key := range allKeys(reflect.TypeOf(Config{}), "") {
		if !idx.Has(key) && !commented.Has(key) {
			t.Errorf("key %s is missing from inspectd.example.toml", key)
		}
	}
}

// commentedExample returns the commented-out TOML of text: every block of
// comment lines that starts with a "# [[" header, uncommented.
func commentedExample(text string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "# [[") {
			in = true
		}
		if !strings.HasPrefix(line, "#") {
			in = false
		}
		if in {
			b.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "#"), " ") + "\n")
		}
	}
	return b.String()
}

func allKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := tomlName(f)
		if name == "-" || !f.IsExported() {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
			keys = append(keys, allKeys(f.Type, key)...)
			continue
		}
		// An array of tables ([[product]]) and an optional table (*ROI):
		// the keys of its element.
		if el := f.Type; (el.Kind() == reflect.Slice || el.Kind() == reflect.Pointer) && el.Elem().Kind() == reflect.Struct {
			keys = append(keys, allKeys(el.Elem(), key)...)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

func TestParseValidAndResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundles", "b1")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	text := `config_version = 1
state_dir = "state"

[station]
id = "s1"

[model]
bundle = "bundles/b1"
provider = "tensorrt"
tensorrt_fp16 = true

[camera]
source = "gstreamer"
pipeline = "videotestsrc ! videoconvert ! appsink"
read_timeout = "250ms"

[mqtt]
outbox_dir = "/srv/outbox"
`
	cfg, err := Parse(filepath.Join(dir, "inspectd.toml"), []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checks := []struct{ name, got, want string }{
		{"state_dir", cfg.StateDir, filepath.Join(dir, "state")},
		{"model.bundle", cfg.Model.Bundle, bundle},
		{"model.engine_cache_dir", cfg.Model.EngineCacheDir, filepath.Join(dir, "state", "engines")},
		{"archive.dir", cfg.Archive.Dir, filepath.Join(dir, "state", "archive")},
		{"mqtt.outbox_dir", cfg.MQTT.OutboxDir, "/srv/outbox"},
		{"camera.source", cfg.Camera.Source, "gstreamer"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if cfg.Camera.ReadTimeout.D != 250*time.Millisecond {
		t.Errorf("camera.read_timeout = %v, want 250ms", cfg.Camera.ReadTimeout.D)
	}
	if cfg.Camera.OpenTimeout.D != 10*time.Second {
		t.Errorf("camera.open_timeout default = %v, want 10s", cfg.Camera.OpenTimeout.D)
	}
}

func TestLoadUnreadableFileIsNotInvalid(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"))
	if err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("want a read error distinct from ErrInvalid, got %v", err)
	}
	if !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("error %q does not name the file", err)
	}
}

// TestSectionsListEveryTable: the explicit section list names every table
// field of Config exactly once, so none is skipped by defaults or
// validation.
func TestSectionsListEveryTable(t *testing.T) {
	var c Config
	listed := map[string]int{}
	for _, s := range c.sections() {
		listed[s.name]++
	}
	rt := reflect.TypeOf(c)
	tables := 0
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() || f.Type.Kind() != reflect.Struct {
			continue
		}
		tables++
		if name := tomlName(f); listed[name] != 1 {
			t.Errorf("table %s (field %s) is listed %d times in sections(), want 1", name, f.Name, listed[name])
		}
	}
	if tables != len(listed) {
		t.Errorf("sections() lists %d tables, Config has %d", len(listed), tables)
	}
}

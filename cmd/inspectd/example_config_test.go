package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/config"
)

const (
	exampleConfig = "../../config/inspectd.example.toml"
	demoConfig    = "../../testdata/demo/inspectd.toml"
	demoScript    = "../../scripts/demo.sh"
)

// absPath is path made absolute and clean.
func absPath(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// scriptVar returns the value of the line NAME=VALUE of the demo script,
// with $DEMO expanded.
func scriptVar(t *testing.T, script []byte, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("%s: no line %s=...", demoScript, name)
	}
	v := string(m[1])
	if name != "DEMO" {
		v = strings.ReplaceAll(v, "$DEMO", scriptVar(t, script, "DEMO"))
	}
	return v
}

// TestExampleConfigNamesTheDemoBundle keeps config/inspectd.example.toml
// checkable from a source tree: it is valid, and its model.bundle is the
// folder where `make demo` puts the bundle it trains (scripts/demo.sh
// trains into $DEMO/bundle, which the demo's own configuration runs with,
// and links the files into $EXAMPLE_BUNDLE), so that after `make demo`
// `inspectd check-config -c config/inspectd.example.toml` passes.
func TestExampleConfigNamesTheDemoBundle(t *testing.T) {
	example, err := config.Load(exampleConfig)
	if err != nil {
		t.Fatalf("the example configuration is invalid:\n%v", err)
	}
	script, err := os.ReadFile(demoScript)
	if err != nil {
		t.Fatal(err)
	}
	mirror := scriptVar(t, script, "EXAMPLE_BUNDLE")
	if got, want := absPath(t, example.Model.Bundle), absPath(t, filepath.Join("../..", mirror)); got != want {
		t.Errorf("%s: model.bundle %q is %s, but %s puts the demo bundle into %s: point the example at it",
			exampleConfig, example.Model.Bundle, got, demoScript, want)
	}

	// The demo trains its bundle where its own configuration reads it. The
	// file is only decoded here: config.Load needs the folders that the
	// demo creates when it runs.
	var demo struct {
		Model struct{ Bundle string } `toml:"model"`
	}
	if _, err := toml.DecodeFile(demoConfig, &demo); err != nil {
		t.Fatalf("the demo configuration: %v", err)
	}
	demo.Model.Bundle = filepath.Join(filepath.Dir(demoConfig), demo.Model.Bundle)
	out := regexp.MustCompile(`--out "([^"]+)"`).FindSubmatch(script)
	if out == nil {
		t.Fatalf("%s: no train --out \"...\" argument", demoScript)
	}
	trained := strings.ReplaceAll(string(out[1]), "$DEMO", scriptVar(t, script, "DEMO"))
	if got, want := absPath(t, filepath.Join("../..", trained)), absPath(t, demo.Model.Bundle); got != want {
		t.Errorf("%s trains the demo bundle into %s, but %s runs with %s", demoScript, got, demoConfig, want)
	}
}

// TestExampleConfigChecks runs `inspectd check-config` on the example
// itself once `make demo` has put the demo bundle where it points.
func TestExampleConfigChecks(t *testing.T) {
	example, err := config.Load(exampleConfig)
	if err != nil {
		t.Fatalf("the example configuration is invalid:\n%v", err)
	}
	if _, err := os.Stat(filepath.Join(example.Model.Bundle, "manifest.toml")); errors.Is(err, os.ErrNotExist) {
		t.Skipf("no demo bundle in %s: `make demo` puts it there", example.Model.Bundle)
	}
	code, stdout, stderr := runCLI(t, "check-config", "-c", exampleConfig)
	if code != 0 || !strings.Contains(stdout, "configuration is valid") {
		t.Errorf("check-config -c %s: exit %d\nstdout: %s\nstderr: %s", exampleConfig, code, stdout, stderr)
	}
}

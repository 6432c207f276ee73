package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/buildinfo"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	code = exitCode(err, &errb)
	return code, out.String(), errb.String()
}

// exampleWithBundle copies the example configuration into a temporary
// directory with model.bundle pointing at a freshly written random-weight
// bundle, so check-config's full bundle verification passes.
func exampleWithBundle(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := netdef.WriteRandomBundle(filepath.Join(dir, "bundle"), netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../config/inspectd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), `bundle = "../testdata/demo-bundle"`, `bundle = "bundle"`, 1)
	path := filepath.Join(dir, "inspectd.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// bundleLine is the line of the model.bundle key in the file at path.
func bundleLine(t *testing.T, path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "bundle = ") {
			return i + 1
		}
	}
	t.Fatal("no bundle key")
	return 0
}

func TestCLI(t *testing.T) {
	example := exampleWithBundle(t)
	corrupt := exampleWithBundle(t)
	if err := os.WriteFile(filepath.Join(filepath.Dir(corrupt), "bundle", "localize.onnx"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no command", nil, 2, "", "Usage: inspectd <command>"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"--help"}, 0, "check-config", ""},
		{"check-config example", []string{"check-config", "-c", example}, 0, "configuration is valid", ""},
		{"check-config long flag", []string{"check-config", "--config", example}, 0, "configuration is valid", ""},
		{"check-config invalid", []string{"check-config", "-c", "../../config/testdata/invalid/several_problems.toml"}, 1, "",
			"several_problems.toml:21: log.format: \"xml\" is not allowed"},
		{"check-config lists all problems", []string{"check-config", "-c", "../../config/testdata/invalid/several_problems.toml"}, 1, "",
			"several_problems.toml:8: camera.source"},
		{"check-config syntax", []string{"check-config", "-c", "../../config/testdata/invalid/syntax_missing_value.toml"}, 1, "",
			"syntax_missing_value.toml:10:6: syntax error"},
		{"check-config unreadable", []string{"check-config", "-c", "/nonexistent/inspectd.toml"}, 2, "", "/nonexistent/inspectd.toml"},
		{"check-config bad flag", []string{"check-config", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"check-config stray arg", []string{"check-config", "-c", example, "extra"}, 2, "", `unexpected argument "extra"`},
		{"check-config help", []string{"check-config", "--help"}, 0, "Exit status: 0 valid, 1 invalid, 2 unreadable", ""},
		{"run help", []string{"run", "-h"}, 0, "Usage: inspectd run", ""},
		{"check-config corrupt bundle", []string{"check-config", "-c", corrupt}, 1, "", fmt.Sprintf("inspectd.toml:%d: model.bundle: ", bundleLine(t, corrupt))},
		{"check-config names the tampered file", []string{"check-config", "-c", corrupt}, 1, "", "localize.onnx"},
		{"run corrupt bundle", []string{"run", "-c", corrupt}, 1, "", "localize.onnx"},
		{"run bad max-parts", []string{"run", "-c", example, "--max-parts", "-1"}, 2, "", "--max-parts -1"},
		{"run invalid config", []string{"run", "-c", "../../config/testdata/invalid/bad_duration.toml"}, 1, "", "camera.read_timeout"},
		{"version", []string{"version"}, 0, "flavour:  " + wantFlavour + "\n", ""}, // wantFlavour: flavour_*_test.go
		{"version flag", []string{"--version"}, 0, "inspectd ", ""},
		{"version help", []string{"version", "--help"}, 0, "Usage: inspectd version", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tc.wantStdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantStderr)
			}
		})
	}
}

// TestWorkstationCommandsInEdgeBuild checks that the edge build names the
// workstation-only commands and exits 2 for them.
func TestWorkstationCommandsInEdgeBuild(t *testing.T) {
	if buildinfo.Workstation {
		t.Skip("workstation build: these commands are built in")
	}
	for _, name := range []string{"train", "eval", "dataset"} {
		code, _, stderr := runCLI(t, name, "--help")
		if code != 2 || !strings.Contains(stderr, name+" needs the workstation build") {
			t.Errorf("%s: exit %d, stderr %q; want 2 and an explanation", name, code, stderr)
		}
	}
}

// TestEdgeBinaryDependencies proves the edge binary links neither GoMLX
// nor any training-only package.
func TestEdgeBinaryDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for dec.More() {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		for _, banned := range []string{
			"github.com/gomlx/gomlx", "github.com/gomlx/compute", "github.com/gomlx/onnx-gomlx",
			"github.com/inspectd/inspectd/models/train", "github.com/inspectd/inspectd/models/metrics",
			"github.com/inspectd/inspectd/models/dataset", "github.com/inspectd/inspectd/models/synth", "github.com/inspectd/inspectd/models/rto",
		} {
			if p.ImportPath == banned || strings.HasPrefix(p.ImportPath, banned+"/") {
				t.Errorf("edge binary links %s", p.ImportPath)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list -deps returned only %d packages; the check would prove nothing", n)
	}
}

// TestBenchRandomArchitecture: without --bundle, bench sizes the training
// default (IMM + a memory of the default's shared int8 entries); the flags
// size other recipes and the paper's ALM, and --save-bundle keeps what was
// timed.
func TestBenchRandomArchitecture(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		method, align string
		shared        int
	}{
		{nil, bundle.LocalizeMemory, bundle.AlignIMM, netdef.DefaultSharedEntries},
		{[]string{"--shared-entries", "64", "--align", "none"}, bundle.LocalizeMemory, bundle.AlignNone, 64},
		{[]string{"--localize", "centres"}, bundle.LocalizeCentres, bundle.AlignIMM, 0},
	} {
		dir := filepath.Join(t.TempDir(), "random")
		args := append([]string{"bench", "--size", "32", "--iterations", "1", "--threads", "1", "--json", "--save-bundle", dir}, tc.args...)
		code, stdout, stderr := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("bench %v: exit %d\nstderr: %s", tc.args, code, stderr)
		}
		b, err := bundle.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		l := b.Manifest.Localize
		method := l.Method
		if method == "" {
			method = bundle.LocalizeCentres
		}
		if method != tc.method || l.GlobalEntries != tc.shared || b.Manifest.Align.Method != tc.align {
			t.Errorf("bench %v timed localize %q with %d shared entries, align %q; want %q, %d, %q",
				tc.args, method, l.GlobalEntries, b.Manifest.Align.Method, tc.method, tc.shared, tc.align)
		}
		if tc.method == bundle.LocalizeMemory && (l.GlobalPrecision != bundle.PrecisionInt8 || l.Entries != 0 || fmt.Sprint(l.Layers) != "[2 3]") {
			t.Errorf("bench %v: memory %+v, want the training default's (int8 shared entries only, layers [2 3])", tc.args, l)
		}
		if aligned := strings.Contains(stdout, `"align"`); aligned != (tc.align == bundle.AlignIMM) {
			t.Errorf("bench %v: align stage timed %v, want %v: %s", tc.args, aligned, tc.align == bundle.AlignIMM, stdout)
		}
	}
}

// TestBenchCommand runs `inspectd bench` on a small random bundle and checks
// its JSON and its exit codes for bad flags.
func TestBenchCommand(t *testing.T) {
	code, stdout, stderr := runCLI(t, "bench", "--size", "32x48", "--iterations", "2", "--threads", "1", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d\nstderr: %s", code, stderr)
	}
	var got struct {
		Threads *int                           `json:"threads"`
		Size    any                            `json:"size"`
		Height  int                            `json:"height"`
		Width   int                            `json:"width"`
		Stages  map[string]map[string]*float64 `json:"stages"`
		Extra   map[string]json.RawMessage     `json:"-"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("bench --json printed %q: %v", stdout, err)
	}
	if got.Threads == nil || *got.Threads != 1 || got.Height != 32 || got.Width != 48 || got.Size != "32x48" {
		t.Errorf("header: threads %v, size %v, %dx%d; want 1, \"32x48\", 32x48", got.Threads, got.Size, got.Height, got.Width)
	}
	if len(got.Stages) == 0 {
		t.Fatalf("no stages in %s", stdout)
	}
	for _, stage := range []string{"align", "localize"} {
		if _, ok := got.Stages[stage]; !ok {
			t.Errorf("stage %q missing from %s", stage, stdout)
		}
	}
	for name, st := range got.Stages {
		for _, k := range []string{"min_ms", "median_ms", "p99_ms"} {
			if v := st[k]; v == nil || *v <= 0 {
				t.Errorf("stage %s: %s = %v, want a positive time", name, k, v)
			}
		}
		if *st["min_ms"] > *st["median_ms"] || *st["median_ms"] > *st["p99_ms"] {
			t.Errorf("stage %s: min %v ≤ median %v ≤ p99 %v does not hold", name, *st["min_ms"], *st["median_ms"], *st["p99_ms"])
		}
	}

	bundleDir := filepath.Join(t.TempDir(), "b")
	if _, err := netdef.WriteRandomBundle(bundleDir, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--threads", "0"}, "--threads 0 is out of range"},
		{[]string{"--threads", "65"}, "--threads 65 is out of range"},
		{[]string{"--iterations", "0"}, "--iterations 0 must be at least 1"},
		{[]string{"--size", "30"}, "--size"},
		{[]string{"--size", "abc"}, "--size"},
		{[]string{"--bundle", bundleDir, "--size", "64"}, "--size applies to the random bundle"},
		{[]string{"--bundle", bundleDir, "--save-bundle", filepath.Join(t.TempDir(), "x")}, "--save-bundle applies to the random bundle"},
		{[]string{"--bundle", bundleDir, "--shared-entries", "8192"}, "--shared-entries applies to the random bundle"},
		{[]string{"--bundle", bundleDir, "--align", "none"}, "--align applies to the random bundle"},
		{[]string{"--shared-entries", "0"}, "--shared-entries 0 is out of range; allowed 1 to 16384"},
		{[]string{"--shared-entries", "16385"}, "--shared-entries 16385 is out of range"},
		{[]string{"--localize", "centres", "--shared-entries", "512"}, "--shared-entries applies to --localize memory"},
		{[]string{"--localize", "knn"}, `--localize "knn"; allowed "memory" or "centres"`},
		{[]string{"--align", "ecc"}, `--align "ecc"; allowed "imm" or "none"`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"extra"}, ""},
	} {
		code, _, stderr := runCLI(t, append([]string{"bench"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

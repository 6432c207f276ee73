package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/infer"
)

// configWith writes a copy of the example configuration (with a valid
// random bundle, see exampleWithBundle) in which, for each pair, the first
// line equal to old is replaced by new, and returns its path. An old of
// the form "[section] line" names the first such line after [section].
func configWith(t *testing.T, replace ...string) string {
	t.Helper()
	path := exampleWithBundle(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(replace); i += 2 {
		old, from := replace[i], 0
		if strings.HasPrefix(old, "[") {
			section, line, _ := strings.Cut(old, "] ")
			from = slices.Index(lines, section+"]")
			if from < 0 {
				t.Fatalf("the example has no %s]", section)
			}
			old = line
		}
		at := slices.Index(lines[from:], old)
		if at < 0 {
			t.Fatalf("the example has no line %q", replace[i])
		}
		lines[from+at] = replace[i+1]
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// enableGPIO turns the example's [gpio] on with chip (reject_delay set,
// as time mode needs).
func enableGPIO(chip string) []string {
	return []string{
		"[gpio] enabled = false", "enabled = true",
		`[gpio] chip = "gpiochip0"`, fmt.Sprintf("chip = %q", chip),
		`[gpio] reject_line = ""`, `reject_line = "1"`,
		`[gpio] reject_delay = "0s"`, `reject_delay = "200ms"`,
	}
}

// lineOf is the 1-based line of the first line of path starting with prefix.
func lineOf(t *testing.T, path, prefix string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line starting with %q", path, prefix)
	return 0
}

// TestCheckConfigRefusesWhatRunRefuses (issue 24, finding 14): each of
// these passed check-config and was refused by run. check-config now
// refuses it, exit 1, with the key and its line.
func TestCheckConfigRefusesWhatRunRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(text, []byte("not a library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "images")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, "0001.png"), []byte("junk, not a PNG"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		replace []string
		key     string // the line the problem is reported at starts with key
		want    string
	}{
		{"empty station.id", []string{`id = "line1-cam1"`, `id = ""`}, `id = `,
			`station.id: must not be empty`},
		{"state_dir is /dev/null", []string{`state_dir = "/var/lib/inspectd"`, `state_dir = "/dev/null"`}, `state_dir = `,
			`state_dir: "/dev/null" is on /dev, a kernel filesystem that cannot hold data`},
		{"state_dir on /proc", []string{`state_dir = "/var/lib/inspectd"`, `state_dir = "/proc/self/inspectd"`}, `state_dir = `,
			`state_dir: "/proc/self/inspectd" is on /proc`},
		{"state_dir under a file", []string{`state_dir = "/var/lib/inspectd"`, fmt.Sprintf("state_dir = %q", filepath.Join(file, "state"))}, `state_dir = `,
			fmt.Sprintf(`state_dir: %q cannot be created: %s is a regular file, not a directory`, filepath.Join(file, "state"), file)},
		{"state_dir is a file", []string{`state_dir = "/var/lib/inspectd"`, fmt.Sprintf("state_dir = %q", file)}, `state_dir = `,
			fmt.Sprintf(`state_dir: %q is a regular file, not a directory`, file)},
		{"http.listen on a name that does not resolve", []string{`listen = "127.0.0.1:9120"`, `listen = "no-such-host.invalid:9120"`}, `listen = `,
			`http.listen: "no-such-host.invalid:9120": host "no-such-host.invalid" does not resolve on this machine`},
		{"http.listen on an address of another machine", []string{`listen = "127.0.0.1:9120"`, `listen = "192.0.2.1:9120"`}, `listen = `,
			`http.listen: "192.0.2.1:9120": cannot listen on host "192.0.2.1"`},
		{"onnxruntime_library is /dev/null", []string{`onnxruntime_library = ""`, `onnxruntime_library = "/dev/null"`}, `onnxruntime_library = `,
			`model.onnxruntime_library: "/dev/null" is a character device; expected a file`},
		{"onnxruntime_library is not a library", []string{`onnxruntime_library = ""`, fmt.Sprintf("onnxruntime_library = %q", text)}, `onnxruntime_library = `,
			fmt.Sprintf(`model.onnxruntime_library: %q is not a shared library (no ELF header)`, text)},
		{"onnxruntime_library is another program", []string{`onnxruntime_library = ""`, fmt.Sprintf("onnxruntime_library = %q", self)}, `onnxruntime_library = `,
			fmt.Sprintf(`model.onnxruntime_library: %q does not load as ONNX Runtime`, self)},
		{"gpio.chip is /dev/null", enableGPIO("/dev/null"), `chip = `,
			`gpio.chip: "/dev/null": not a GPIO chip; expected a GPIO chip such as "gpiochip0"`},
		{"mqtt.outbox_dir is /dev/null", []string{`outbox_dir = ""`, `outbox_dir = "/dev/null"`}, `outbox_dir = `,
			`mqtt.outbox_dir: "/dev/null" is on /dev, a kernel filesystem that cannot hold data`},
		{"archive.dir is a file", []string{`[archive] dir = ""`, fmt.Sprintf("dir = %q", file)}, `dir = `,
			fmt.Sprintf(`archive.dir: %q is a regular file, not a directory`, file)},
		{"images directory with nothing decodable", []string{`source = "v4l2"`, `source = "images"`, `path = ""`, fmt.Sprintf("path = %q", empty)}, `path = `,
			`camera.path: none of the 1 image files in ` + empty + ` can be replayed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := configWith(t, tc.replace...)
			code, stdout, stderr := runCLI(t, "check-config", "-c", path)
			want := fmt.Sprintf("%s:%d: %s", path, lineOf(t, path, tc.key), tc.want)
			if code != 1 || !strings.Contains(stderr, want) {
				t.Fatalf("check-config: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and %q", code, stdout, stderr, want)
			}
		})
	}
}

// providerAvailable reports whether ONNX Runtime on this machine runs a
// session on provider, asked directly of package infer.
func providerAvailable(t *testing.T, provider string) bool {
	t.Helper()
	lib, err := infer.DefaultLibraryPath()
	if err != nil {
		t.Skipf("no ONNX Runtime: %v", err)
	}
	rt, err := infer.OpenRuntime(lib)
	if err != nil {
		t.Skipf("no ONNX Runtime: %v", err)
	}
	defer rt.Close()
	model, err := providerProbe()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSession(model, infer.SessionOptions{Provider: provider})
	if err != nil {
		return false
	}
	s.Close()
	return true
}

// TestCheckConfigProvider (issue 24, finding 14): model.provider = "cuda"
// passed check-config on a machine without the CUDA provider, where run
// refuses it; with allow_fallback = true run starts on the CPU, and
// check-config passes.
func TestCheckConfigProvider(t *testing.T) {
	for _, provider := range []string{"cuda", "tensorrt"} {
		path := configWith(t, `provider = "cpu"`, fmt.Sprintf("provider = %q", provider))
		code, stdout, stderr := runCLI(t, "check-config", "-c", path)
		if providerAvailable(t, provider) {
			if code != 0 {
				t.Errorf("%s is available on this machine, but check-config: exit %d\n%s%s", provider, code, stdout, stderr)
			}
			continue
		}
		want := fmt.Sprintf(`%s:%d: model.provider: %q is not available on this machine`, path, lineOf(t, path, "provider = "), provider)
		if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "set model.allow_fallback = true") {
			t.Errorf("check-config with provider %s: exit %d\nstderr: %s\nwant exit 1 and %q", provider, code, stderr, want)
		}
		path = configWith(t, `provider = "cpu"`, fmt.Sprintf("provider = %q", provider), `allow_fallback = false`, `allow_fallback = true`)
		if code, _, stderr := runCLI(t, "check-config", "-c", path); code != 0 {
			t.Errorf("check-config with provider %s and allow_fallback: exit %d\n%s", provider, code, stderr)
		}
	}
}

// TestCheckConfigStateDirNotWritable (issue 24, finding 14): a state_dir
// the user running check-config cannot write is refused. Root writes
// anywhere, so this runs only for other users.
func TestCheckConfigStateDirNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write to any directory")
	}
	ro := filepath.Join(t.TempDir(), "read-only")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	path := configWith(t, `state_dir = "/var/lib/inspectd"`, fmt.Sprintf("state_dir = %q", filepath.Join(ro, "state")))
	code, _, stderr := runCLI(t, "check-config", "-c", path)
	want := fmt.Sprintf(`state_dir: %q cannot be created: %s is not writable`, filepath.Join(ro, "state"), ro)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d\n%s\nwant %q", code, stderr, want)
	}
}

// TestCheckConfigReportsEveryProblem: the problems of a valid
// configuration with this machine are listed together, in line order,
// with the bundle's. (A configuration with problems of its own is
// reported alone: its other values cannot be relied on.)
func TestCheckConfigReportsEveryProblem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path := configWith(t, `state_dir = "/var/lib/inspectd"`, fmt.Sprintf("state_dir = %q", filepath.Join(file, "state")),
		`listen = "127.0.0.1:9120"`, `listen = "192.0.2.1:9120"`, `outbox_dir = ""`, `outbox_dir = "/dev/null"`)
	if err := os.Remove(filepath.Join(filepath.Dir(path), "bundle", "localize.onnx")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "check-config", "-c", path)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var keys []string
	for _, l := range lines[1:] {
		if m := regexp.MustCompile(`^\S+:\d+: (\S+): `).FindStringSubmatch(l); m != nil {
			keys = append(keys, m[1])
		}
	}
	if want := "state_dir model.bundle mqtt.outbox_dir archive.dir http.listen"; code != 1 || strings.Join(keys, " ") != want {
		t.Errorf("exit %d, problems of %v, want %s in line order:\n%s", code, keys, want, stderr)
	}
}

// TestCheckConfigReadsOnlyRegularFiles (issue 24, finding 13):
// `check-config -c /dev/zero` grew to 22.9 GB ignoring SIGINT and a named
// pipe blocked it forever. Both are refused at once as unreadable (exit 2).
func TestCheckConfigReadsOnlyRegularFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "inspectd.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/dev/zero": "/dev/zero: not a regular file: it is a character device",
		fifo:        fifo + ": not a regular file: it is a named pipe (FIFO)",
	} {
		type result struct {
			code   int
			stderr string
		}
		done := make(chan result, 1)
		go func() {
			code, _, stderr := runCLI(t, "check-config", "-c", path)
			done <- result{code, stderr}
		}()
		select {
		case r := <-done:
			if r.code != 2 || !strings.Contains(r.stderr, want) {
				t.Errorf("check-config -c %s: exit %d, %s\nwant exit 2 and %q", path, r.code, r.stderr, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("check-config -c %s has not returned after 10 s", path)
		}
	}
}

// TestCheckConfigListsManyUnknownKeys (issue 24, finding 13): 40,000
// unknown keys took 10 s; all are listed (the unknown table once, each
// unknown key of a known table), in well under that. The file, 40,000
// lines, is within the 1 MiB limit.
func TestCheckConfigListsManyUnknownKeys(t *testing.T) {
	// Keys appended go into the example's last table.
	var b strings.Builder
	for i := range 20_000 {
		fmt.Fprintf(&b, "l%d = %d\n", i, i)
	}
	b.WriteString("[typo]\n")
	for i := range 20_000 {
		fmt.Fprintf(&b, "k%d = %d\n", i, i)
	}
	path := exampleWithBundle(t)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n" + b.String())
	f.Close()
	// The keys land in the example's last table (issue 26 added tables
	// after [log]).
	last := "log"
	if data, err := os.ReadFile("../../config/inspectd.example.toml"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "[") && !strings.HasPrefix(l, "[[") {
				last = strings.Trim(l, "[] ")
			}
		}
	}
	start := time.Now()
	code, _, stderr := runCLI(t, "check-config", "-c", path)
	took := time.Since(start)
	n := strings.Count(stderr, ": unknown key; check the spelling")
	if code != 1 || n != 20_001 || !strings.Contains(stderr, last+".l19999: unknown key") {
		t.Errorf("exit %d, %d unknown keys listed, want 20001 (the table typo and each %s.l*):\n%.500s", code, n, last, stderr)
	}
	t.Logf("check-config with 40,000 unknown keys: %v", took)
}

// TestCheckConfigBakedValues (issue 24, finding 15): a bundle whose
// manifest says another input.mean than its graph bakes in is refused as
// a problem of model.bundle naming both values.
func TestCheckConfigBakedValues(t *testing.T) {
	path := exampleWithBundle(t)
	manifest := filepath.Join(filepath.Dir(path), "bundle", "manifest.toml")
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte(strings.Replace(string(data), "mean = [0.485,", "mean = [0.5,", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "check-config", "-c", path)
	want := fmt.Sprintf("%s:%d: model.bundle: model bundle: %s: manifest input.mean is [0.5 0.456 0.406], but the graph normalises its input with [0.485 0.456 0.406]",
		path, bundleLine(t, path), filepath.Join(filepath.Dir(path), "bundle", "localize.onnx"))
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d\n%s\nwant %q", code, stderr, want)
	}
}

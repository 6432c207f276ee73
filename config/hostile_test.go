package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/tomlcheck"
)

// loadWithin runs Load(path) and fails the test if it has not returned
// within 10 s.
func loadWithin(t *testing.T, path string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(path)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("Load(%s) has not returned after 10 s", path)
		return nil
	}
}

// TestLoadRefusesWhatIsNotAConfigurationFile (issue 24, finding 13):
// `check-config -c /dev/zero` grew to 22.9 GB ignoring SIGINT and a named
// pipe blocked it forever. Only a regular file (or a link to one) of at
// most 1 MiB is read; anything else is refused at once with a read error
// (exit 2 in check-config, not ErrInvalid) naming the path and what it is.
func TestLoadRefusesWhatIsNotAConfigurationFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, append([]byte("config_version = 1\n"), bytes.Repeat([]byte("# comment\n"), 120_000)...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "read config: open /dev/zero: not a regular file: it is a character device"},
		{fifo, "fifo.toml: not a regular file: it is a named pipe (FIFO)"},
		{dir, "not a regular file: it is a directory"},
		{big, "big.toml: file too large: 1.1 MiB, the limit is 1 MiB"},
	} {
		err := loadWithin(t, tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%s) = %v, want %q", tc.path, err, tc.want)
		}
		if errors.Is(err, ErrInvalid) {
			t.Errorf("Load(%s): %v is ErrInvalid; it is a file that cannot be read", tc.path, err)
		}
	}
	if err := loadWithin(t, fifo); !errors.Is(err, tomlcheck.ErrNotRegular) {
		t.Errorf("Load(fifo) = %v, want tomlcheck.ErrNotRegular", err)
	}
}

// TestParseRefusesWhatRunRefuses (issue 24, finding 14, the checks that
// need no file system): an empty station.id or model.bundle, and a
// state_dir on a kernel filesystem, passed check-config.
func TestParseRefusesWhatRunRefuses(t *testing.T) {
	bundle := t.TempDir()
	for _, tc := range []struct {
		name, text, want string
	}{
		{"empty station.id", `state_dir = "/var/lib/inspectd"
[station]
id = ""
`, `c.toml:4: station.id: must not be empty; set a unique station identifier, e.g. "line1-cam1"`},
		{"empty model.bundle", `state_dir = "/var/lib/inspectd"
[model]
bundle = ""
`, "c.toml:4: model.bundle: must not be empty; set the path of the model bundle directory"},
		{"state_dir on /proc", `state_dir = "/proc/inspectd"
`, `c.toml:2: state_dir: "/proc/inspectd" is on /proc, a kernel filesystem that cannot hold data`},
		{"state_dir is /dev/null", `state_dir = "/dev/null"
`, `c.toml:2: state_dir: "/dev/null" is on /dev, a kernel filesystem that cannot hold data`},
		{"state_dir under /sys", `state_dir = "/sys/../sys/kernel"
`, `c.toml:2: state_dir: "/sys/../sys/kernel" is on /sys`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "config_version = 1\n" + tc.text
			if !strings.Contains(tc.text, "[station]") {
				text += "[station]\nid = \"s1\"\n"
			}
			if !strings.Contains(tc.text, "[model]") {
				text += fmt.Sprintf("[model]\nbundle = %q\n", bundle)
			}
			_, err := Parse("c.toml", []byte(text))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v\nwant an ErrInvalid containing %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("%d problems, want 1:\n%v", n, err)
			}
		})
	}
}

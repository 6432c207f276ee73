package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitVerifies runs systemd-analyze verify on the unit. The tool exits
// 0 even for bad lines, so any output at all is a failure. The binary paths
// are pointed at an executable stand-in, since verify checks they exist.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found; `make deps` installs the systemd package")
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "inspectd")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(Unit, "/usr/local/bin/inspectd", stand)
	path := filepath.Join(dir, "inspectd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify reported (err=%v):\n%s", err, out)
	}
}

// TestUnitHasRequiredSettings guards the settings the product relies on.
func TestUnitHasRequiredSettings(t *testing.T) {
	for _, want := range []string{
		"Type=notify", "WatchdogSec=", "Restart=on-failure",
		"ExecStartPre=/usr/local/bin/inspectd check-config",
		"StateDirectory=inspectd", "ConfigurationDirectory=inspectd",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "User=inspectd",
		"DevicePolicy=closed", "DeviceAllow=char-gpiochip", "DeviceAllow=char-video4linux",
	} {
		if !strings.Contains(Unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

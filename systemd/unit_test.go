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
	unit := strings.ReplaceAll(Unit, "/usr/bin/inspectd", stand)
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

// directives returns the unit's lines that are not comments or blank.
func directives() []string {
	var out []string
	for _, line := range strings.Split(Unit, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, ";") {
			out = append(out, line)
		}
	}
	return out
}

// TestUnitHasRequiredSettings guards the settings the product and the
// Debian package (scripts/package.sh installs the binary as
// /usr/bin/inspectd, the configuration as /etc/inspectd/inspectd.toml)
// rely on. Each entry is the start of a directive line; comments do not
// count.
func TestUnitHasRequiredSettings(t *testing.T) {
	lines := directives()
	for _, want := range []string{
		"Type=notify", "WatchdogSec=10s", "Restart=on-failure",
		"ExecStartPre=/usr/bin/inspectd check-config -c /etc/inspectd/inspectd.toml",
		"ExecStart=/usr/bin/inspectd run -c /etc/inspectd/inspectd.toml",
		"ExecReload=/bin/kill -HUP $MAINPID", "StartLimitBurst=", "StartLimitIntervalSec=",
		"StateDirectory=inspectd", "ConfigurationDirectory=inspectd",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "User=inspectd",
		"DevicePolicy=closed", "DeviceAllow=char-gpiochip", "DeviceAllow=char-video4linux",
	} {
		found := false
		for _, line := range lines {
			if strings.HasPrefix(line, want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("unit lacks a directive starting %q", want)
		}
	}
}

// TestUnitNamesNoOptionalGroup guards against SupplementaryGroups=: a
// group that does not exist on the machine (most have no gpio group) fails
// every start with status 216/GROUP. The package puts the user in the
// groups that exist instead, and User= brings them.
func TestUnitNamesNoOptionalGroup(t *testing.T) {
	for _, line := range directives() {
		if strings.HasPrefix(line, "SupplementaryGroups=") {
			t.Errorf("unit sets %q; the package adds the user to the groups that exist instead", line)
		}
	}
}

package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestInfoString(t *testing.T) {
	i := Info{Version: "1.2.3", Commit: "abc", Modified: true, GoVersion: "go1.26.8", Flavour: "edge", Platform: "linux/arm64"}
	got := i.String()
	want := "inspectd 1.2.3\ncommit:   abc (modified)\ngo:       go1.26.8\nflavour:  edge\nplatform: linux/arm64\n"
	if got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestGetFillsEveryField(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Commit == "" || i.GoVersion != runtime.Version() || i.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("Get() = %+v", i)
	}
	// wantFlavour comes from the test files' own build constraints
	// (flavour_*_test.go), not from the constant under test.
	if i.Flavour != wantFlavour || Workstation != (wantFlavour == "workstation") {
		t.Errorf("Flavour = %q, Workstation = %v; this build wants %q", i.Flavour, Workstation, wantFlavour)
	}
}

// TestLinkerStampAndBuildTag builds a program that prints Get() the way the
// Makefile builds inspectd (-ldflags -X), once per flavour, and checks the
// stamped version and commit and the flavour the build tag selects.
func TestLinkerStampAndBuildTag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, tc := range []struct{ tags, flavour, workstation string }{
		{"", "edge", "false"},
		{"workstation", "workstation", "true"},
	} {
		bin := filepath.Join(t.TempDir(), "printinfo")
		args := []string{"build", "-o", bin, "-ldflags",
			"-X github.com/inspectd/inspectd/buildinfo.Version=9.8.7-test -X github.com/inspectd/inspectd/buildinfo.Commit=c0ffee"}
		if tc.tags != "" {
			args = append(args, "-tags", tc.tags)
		}
		if out, err := exec.Command(goBin, append(args, "./testdata/printinfo")...).CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"inspectd 9.8.7-test\n", "commit:   c0ffee", "flavour:  " + tc.flavour + "\n", "workstation: " + tc.workstation + "\n"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("tags %q: output %q lacks %q", tc.tags, out, want)
			}
		}
	}
}

package buildinfo

import (
	"strings"
	"testing"
)

func TestInfoString(t *testing.T) {
	i := Info{Version: "1.2.3", Commit: "abc", Modified: true, GoVersion: "go1.26.8", Flavour: "edge", Platform: "linux/arm64"}
	got := i.String()
	for _, want := range []string{"inspectd 1.2.3\n", "abc (modified)", "go1.26.8", "flavour:  edge", "linux/arm64"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, missing %q", got, want)
		}
	}
}

func TestGetFillsEveryField(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Commit == "" || i.GoVersion == "" || i.Platform == "" {
		t.Errorf("Get() left a field empty: %+v", i)
	}
	if i.Flavour != Flavour {
		t.Errorf("Flavour = %q, want %q", i.Flavour, Flavour)
	}
}

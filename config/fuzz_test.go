package config

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/tomlcheck"
)

// FuzzParse: a station configuration is edited by hand. Whatever its
// bytes, Parse returns a valid configuration or an ErrInvalid (syntax error
// or problems with lines inside the file), and never panics.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"inspectd.example.toml", "testdata/invalid/several_problems.toml", "testdata/invalid/syntax_missing_value.toml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz/inspectd.toml", data)
		n := strings.Count(string(data), "\n") + 1
		if err == nil {
			if cfg.ConfigVersion < MinVersion || cfg.ConfigVersion > MaxVersion || strings.TrimSpace(cfg.Station.ID) == "" {
				t.Fatalf("accepted version %d, station %q", cfg.ConfigVersion, cfg.Station.ID)
			}
			return
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v (%T) is not ErrInvalid", err, err)
		}
		var ps tomlcheck.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				if p.Line < 0 || p.Line > n || p.Key == "" {
					t.Fatalf("problem %+v in a file of %d lines", p, n)
				}
			}
		}
	})
}

//go:build workstation

package alm

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" means valid
	}{
		{"default", func(c *Config) {}, ""},
		{"D", func(c *Config) { c.D = 0 }, "alm config: D = 0, want > 0"},
		{"D too large", func(c *Config) { c.D = 449 }, "alm config: D = 449"},
		{"layers", func(c *Config) { c.MappingLayers = 0 }, "MappingLayers = 0"},
		{"reduction", func(c *Config) { c.Reduction = "svd" }, `Reduction = "svd"`},
		{"centre", func(c *Config) { c.Centre = "" }, `Centre = ""`},
		{"epochs", func(c *Config) { c.Epochs = -1 }, "Epochs = -1"},
		{"zero epochs ok", func(c *Config) { c.Epochs = 0 }, ""},
		{"lr", func(c *Config) { c.LearningRate = 0 }, "LearningRate = 0"},
		{"locations", func(c *Config) { c.LocationsPerStep = 0 }, "LocationsPerStep = 0"},
		{"fraction", func(c *Config) { c.DGM.Fraction = 1 }, "DGM.Fraction = 1"},
		{"pool", func(c *Config) { c.DGM.PoolSize = 0 }, "DGM.PoolSize = 0"},
		{"refresh", func(c *Config) { c.DGM.RefreshEpochs = 0 }, "DGM.RefreshEpochs = 0"},
		{"shapes empty", func(c *Config) { c.DGM.Shapes = nil }, "DGM.Shapes is empty"},
		{"shape", func(c *Config) { c.DGM.Shapes = []string{"star"} }, `DGM.Shapes has "star"`},
		{"mode", func(c *Config) { c.DGM.Modes = []string{ModeDarken, "blur"} }, `DGM.Modes has "blur"`},
		{"delta", func(c *Config) { c.DGM.Delta = 0 }, "DGM.Delta = 0"},
		{"sizes", func(c *Config) { c.DGM.MinSize, c.DGM.MaxSize = 0.3, 0.2 }, "DGM.MinSize/MaxSize = 0.3/0.2"},
		{"source", func(c *Config) { c.DGM.SourceDir = "/nonexistent/alm" }, "DGM.SourceDir unusable"},
		{"DGM off ignores its fields", func(c *Config) { c.DGM = DGMConfig{} }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// Several bad fields are all reported.
	c := DefaultConfig()
	c.D, c.Epochs = -1, -2
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "D = -1") || !strings.Contains(err.Error(), "Epochs = -2") {
		t.Fatalf("joined error %v, want both D and Epochs", err)
	}
}

package bundle

import (
	"errors"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/tomlcheck"
)

// FuzzParseManifest: manifest.toml comes with a bundle copied from
// elsewhere. Whatever its bytes, parseManifest refuses it with an
// ErrInvalid naming lines inside the file, or returns a manifest whose
// every referenced file has a checksum and stays inside the bundle.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(manifestText(f)))
	f.Add([]byte("format_version = 1\n[files]\n\"../x\" = \"00\"\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := parseManifest("manifest.toml", raw)
		n := strings.Count(string(raw), "\n") + 1
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			var ps tomlcheck.Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					if p.Line < 0 || p.Line > n {
						t.Fatalf("problem at line %d of %d: %v", p.Line, n, p)
					}
				}
			}
			return
		}
		for name := range m.Files {
			if !plainName(name) {
				t.Fatalf("accepted file name %q", name)
			}
		}
		for _, ref := range []string{m.Localize.Graph, m.Align.Graph, m.Align.Template} {
			if _, ok := m.Files[ref]; ref != "" && !ok {
				t.Fatalf("accepted %q without a checksum", ref)
			}
		}
		if !(m.Calibration.ImageThreshold > 0 && m.Calibration.ImageThreshold <= 1) || m.Input.Height%16 != 0 || m.Input.Height < 16 {
			t.Fatalf("accepted calibration %v / input %dx%d", m.Calibration, m.Input.Width, m.Input.Height)
		}
	})
}

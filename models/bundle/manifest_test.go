package bundle

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/tomlcheck"
)

// manifestText is a valid manifest.toml whose files carry checksums.
func manifestText(t testing.TB) string {
	m := validManifest()
	m.FormatVersion = FormatVersion
	m.Files = map[string]string{AlignGraphName: strings.Repeat("0", 64), LocalizeGraphName: strings.Repeat("1", 64), TemplateName: strings.Repeat("2", 64)}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(m); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func lineOf(t *testing.T, text, sub string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	t.Fatalf("no line with %q", sub)
	return 0
}

// TestManifestReportsEveryProblem: every wrong value of a manifest is
// reported at once as manifest.toml:line: key: message, in line order.
func TestManifestReportsEveryProblem(t *testing.T) {
	text := manifestText(t)
	if _, err := parseManifest("manifest.toml", []byte(text)); err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
	for _, r := range [][2]string{
		{`product = "widget"`, `product = " "`},
		{`colour_order = "rgb"`, `colour_order = "bgr"`},
		{"channels = 1", "channels = 2"},
		{"d = 8", "d = 0"},
		{"pixel_threshold = 0.4", "pixel_threshold = nan"},
	} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("manifest has no %q:\n%s", r[0], text)
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	_, err := parseManifest("manifest.toml", []byte(text))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, tomlcheck.ErrInvalid) {
		t.Fatalf("err = %v; want ErrInvalid", err)
	}
	var ps tomlcheck.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("%T does not hold tomlcheck.Problems", err)
	}
	want := []struct {
		line int
		key  string
	}{
		{lineOf(t, text, `product = " "`), "product"},
		{lineOf(t, text, `colour_order = `), "input.colour_order"},
		{lineOf(t, text, "channels = 2"), "align.channels"},
		{lineOf(t, text, "d = 0"), "localize.d"},
		{lineOf(t, text, "pixel_threshold = nan"), "calibration.pixel_threshold"},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if ps[i].Line != w.line || ps[i].Key != w.key || ps[i].File != "manifest.toml" {
			t.Errorf("problem %d = %+v, want %s at line %d", i, ps[i], w.key, w.line)
		}
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "model bundle: manifest.toml:") || strings.Count(msg, "manifest.toml:") != len(want) {
		t.Errorf("rendering %q", msg)
	}
}

// TestManifestSyntaxErrorShowsTheLine: a syntax error keeps its column and
// the offending line.
func TestManifestSyntaxErrorShowsTheLine(t *testing.T) {
	text := strings.Replace(manifestText(t), `product = "widget"`, `product = "widget`, 1)
	_, err := parseManifest("manifest.toml", []byte(text))
	var se *tomlcheck.SyntaxError
	if !errors.As(err, &se) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v (%T); want a syntax error that is ErrInvalid", err, err)
	}
	if se.Line != lineOf(t, text, `product = "widget`) || !strings.Contains(err.Error(), `| product = "widget`) {
		t.Errorf("syntax error %v", err)
	}
}

// TestManifestLocalizeMethod: a memory bundle needs its entries and
// radius, and at most 4096 global entries; an unknown method is named with the two known ones; a bundle
// without a method (written before the local memory) is a centres bundle.
func TestManifestLocalizeMethod(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Manifest)
		want string // "" = valid
	}{
		{"no method", func(m *Manifest) { m.Localize.Method = "" }, ""},
		{"centres", func(m *Manifest) { m.Localize.Method = LocalizeCentres }, ""},
		{"memory", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 64, Entries: 32, Radius: 2, BlurSigma: 4}
		}, ""},
		{"memory of layers 2 and 3", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 384, Entries: 32, Radius: 1, Layers: []int{2, 3}, Reduction: "none", BlurSigma: 4}
		}, ""},
		{"memory of layers 1 and 2", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 192, Entries: 32, Radius: 1, Layers: []int{1, 2}}
		}, "localize.layers: [1 2], want [1, 2, 3], [2, 3] or [3]"},
		{"memory with global entries", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 448, Entries: 16, GlobalEntries: 256, Radius: 2, Reduction: "none", BlurSigma: 4}
		}, ""},
		{"memory with too many global entries", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 448, Entries: 16, GlobalEntries: 20000, Radius: 2}
		}, "localize.global_entries: 20000 is out of range; allowed 0 to 16384 shared by every location"},
		{"memory without entries", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 64, Radius: 2}
		}, "localize.entries: 0 and no global_entries either, want entries of either kind"},
		{"memory with an unknown average", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 384, GlobalEntries: 64, Average: "mean"}
		}, `localize.average: "mean", want "grid" or "each-layer"`},
		{"memory with an unknown precision", func(m *Manifest) {
			m.Localize = Localize{Graph: LocalizeGraphName, Method: LocalizeMemory, D: 384, GlobalEntries: 64, GlobalPrecision: "fp16"}
		}, `localize.global_precision: "fp16", want "float32" or "int8"`},
		{"unknown method", func(m *Manifest) { m.Localize.Method = "knn" }, `localize.method: "knn", want "centres" or "memory"`},
		{"ECC refinement", func(m *Manifest) { m.Align.Refine = RefineECC }, ""},
		{"no refinement", func(m *Manifest) { m.Align.Refine = RefineNone }, ""},
		{"ECC refinement of RGB inputs", func(m *Manifest) { m.Align.Refine, m.Align.Channels = RefineECC, 3 }, ""},
		{"ECC search", func(m *Manifest) { m.Align.Refine = RefineSearch }, ""},
		{"unknown refinement", func(m *Manifest) { m.Align.Refine = "lk" }, `align.refine: "lk", want "none", "ecc" or "ecc-search"`},
		{"refinement without alignment", func(m *Manifest) {
			m.Align = Align{Method: AlignNone, Refine: RefineECC}
			delete(m.Files, AlignGraphName)
			delete(m.Files, TemplateName)
		}, `align.refine: "ecc", but align.method is "none" (nothing to refine)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validManifest()
			m.FormatVersion = FormatVersion
			m.Files = map[string]string{AlignGraphName: strings.Repeat("0", 64), LocalizeGraphName: strings.Repeat("1", 64), TemplateName: strings.Repeat("2", 64)}
			tc.edit(m)
			var b bytes.Buffer
			if err := toml.NewEncoder(&b).Encode(m); err != nil {
				t.Fatal(err)
			}
			_, err := parseManifest("manifest.toml", b.Bytes())
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

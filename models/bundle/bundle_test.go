package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/models/onnx"
)

// tinyLocalize builds a stand-in localisation graph with the bundle's
// input/output contract at h×w.
func tinyLocalize(t *testing.T, h, w int64) []byte {
	t.Helper()
	g := onnx.NewGraph("localize")
	x := g.Input(InputImage, onnx.Float, 1, 3, h, w)
	hm := g.Op("ReduceMean", []string{x}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 1))
	g.Output(g.Rename(hm, OutputHeatmap), onnx.Float, 1, 1, h, w)
	flat := g.Op("Reshape", []string{OutputHeatmap, g.InitializerInt64("shape", []int64{2}, []int64{1, -1})})
	s := g.Op("ReduceMax", []string{flat}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 0))
	g.Output(g.Rename(s, OutputScore), onnx.Float, 1)
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func tinyAlign(t *testing.T, c, h, w int64) []byte {
	t.Helper()
	g := onnx.NewGraph("align")
	x := g.Input(InputImage, onnx.Float, 1, c, h, w)
	tp := g.Input(InputTemplate, onnx.Float, 1, c, h, w)
	d := g.Op("Sub", []string{x, tp})
	p := g.Op("GlobalAveragePool", []string{d})
	f := g.Op("Flatten", []string{p})
	y := g.Op("Gemm", []string{f, g.Initializer("w", []int64{c, 3}, make([]float32, c*3))})
	g.Output(g.Rename(y, OutputTransform), onnx.Float, 1, 3)
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func validManifest() *Manifest {
	return &Manifest{
		Product:   "widget",
		Created:   time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		CreatedBy: "bundle_test",
		Input:     Input{Height: 32, Width: 48, ColourOrder: "rgb", Mean: ImageNetMean(), Std: ImageNetStd()},
		Align: Align{Method: AlignIMM, Graph: AlignGraphName, Template: TemplateName,
			Height: 16, Width: 32, Channels: 1, TemplateSeed: 7, TemplateSource: "train/good/000.png"},
		Localize:    Localize{Graph: LocalizeGraphName, D: 8, Reduction: "random_orthogonal", Centre: "local", BlurSigma: 4},
		Backbone:    Backbone{Name: "resnet18-layer3", Fingerprint: strings.Repeat("ab", 32), Source: "test"},
		Calibration: Calibration{ImageThreshold: 0.3, PixelThreshold: 0.4, Rule: "max of holdout × 1.1", GoodScores: ScoreStats{Count: 3, Min: 0.1, Max: 0.27, Mean: 0.2, Std: 0.05, P99: 0.27}},
		Training:    Training{GoodImages: 10, HoldoutImages: 3, Seed: 1},
	}
}

func writeValid(t *testing.T, dir string) {
	t.Helper()
	files := map[string][]byte{
		LocalizeGraphName: tinyLocalize(t, 32, 48),
		AlignGraphName:    tinyAlign(t, 1, 16, 32),
		TemplateName:      pngBytes(t, 32, 16),
	}
	if err := Write(dir, validManifest(), files); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	writeValid(t, dir)
	b, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := validManifest()
	if b.Manifest.Product != want.Product || b.Manifest.Input.Height != want.Input.Height || b.Manifest.Input.Std[2] != want.Input.Std[2] || b.Manifest.Align != want.Align || b.Manifest.Calibration != want.Calibration {
		t.Errorf("manifest round trip: got %+v", b.Manifest)
	}
	if !b.Manifest.Created.Equal(want.Created) {
		t.Errorf("created = %v, want %v", b.Manifest.Created, want.Created)
	}
	if len(b.Manifest.Files) != 3 || len(b.Hash) != 64 || b.Template == nil || len(b.AlignGraph) == 0 || len(b.LocalizeGraph) == 0 {
		t.Errorf("bundle incomplete: files=%v hash=%q", b.Manifest.Files, b.Hash)
	}
	// Writing again replaces the bundle atomically and leaves no temp dirs.
	writeValid(t, dir)
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 1 {
		t.Errorf("after rewrite the parent holds %d entries, want only the bundle", len(entries))
	}
}

// rewriteFile replaces a bundle file and updates its checksum so that only
// the content check (not the checksum) can catch the change.
func rewriteFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	mpath := filepath.Join(dir, ManifestName)
	raw, _ := os.ReadFile(mpath)
	old, _ := os.ReadFile(filepath.Join(dir, name))
	os1 := sha256.Sum256(old)
	ns := sha256.Sum256(data)
	text := strings.Replace(string(raw), hex.EncodeToString(os1[:]), hex.EncodeToString(ns[:]), 1)
	must(t, os.WriteFile(mpath, []byte(text), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
}

func editManifest(t *testing.T, dir, old, new string) {
	t.Helper()
	mpath := filepath.Join(dir, ManifestName)
	raw, _ := os.ReadFile(mpath)
	if !strings.Contains(string(raw), old) {
		t.Fatalf("manifest has no %q:\n%s", old, raw)
	}
	must(t, os.WriteFile(mpath, []byte(strings.Replace(string(raw), old, new, 1)), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejectsBrokenBundles(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"missing directory", func(t *testing.T, dir string) { must(t, os.RemoveAll(dir)) }, "no such file or directory"},
		{"not a directory", func(t *testing.T, dir string) {
			must(t, os.RemoveAll(dir))
			must(t, os.WriteFile(dir, []byte("x"), 0o644))
		}, "not a directory"},
		{"missing manifest", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, ManifestName))) }, "manifest.toml: no such file"},
		{"manifest syntax error", func(t *testing.T, dir string) { editManifest(t, dir, "product = ", "product = = ") }, "manifest.toml:4:"},
		{"unknown format version", func(t *testing.T, dir string) { editManifest(t, dir, "format_version = 1", "format_version = 9") }, "manifest.toml:@format_version = @: format_version: format_version 9 is not supported"},
		{"missing format version", func(t *testing.T, dir string) { editManifest(t, dir, "format_version = 1\n", "") }, "manifest.toml: format_version: missing; every manifest starts with format_version = 1"},
		{"unknown key", func(t *testing.T, dir string) { editManifest(t, dir, "product = ", "colour = 1\nproduct = ") }, "manifest.toml:@colour = @: colour: unknown key"},
		{"listed file missing", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, AlignGraphName))) }, "align.onnx: listed in the manifest but missing from the bundle directory"},
		{"tampered file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, LocalizeGraphName)
			data, _ := os.ReadFile(p)
			data[len(data)/2] ^= 0xff
			must(t, os.WriteFile(p, data, 0o644))
		}, "localize.onnx: SHA-256 is"},
		{"truncated file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, LocalizeGraphName)
			data, _ := os.ReadFile(p)
			must(t, os.WriteFile(p, data[:len(data)/3], 0o644))
		}, "manifest says"},
		{"truncated graph with matching checksum", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, LocalizeGraphName))
			rewriteFile(t, dir, LocalizeGraphName, data[:len(data)-5])
		}, "localize.onnx: not a readable ONNX model"},
		{"localize graph of the wrong size", func(t *testing.T, dir string) {
			rewriteFile(t, dir, LocalizeGraphName, tinyLocalize(t, 48, 48))
		}, `localize.onnx: graph input "image" has shape [1 3 48 48], manifest implies [1 3 32 48]`},
		{"align graph with wrong channels", func(t *testing.T, dir string) {
			rewriteFile(t, dir, AlignGraphName, tinyAlign(t, 3, 16, 32))
		}, `align.onnx: graph input "image" has shape [1 3 16 32]`},
		{"graphs swapped", func(t *testing.T, dir string) {
			rewriteFile(t, dir, LocalizeGraphName, tinyAlign(t, 1, 16, 32))
		}, "localize.onnx: graph has 2 inputs (image, template), want 1 (image)"},
		{"template of the wrong size", func(t *testing.T, dir string) {
			rewriteFile(t, dir, TemplateName, pngBytes(t, 16, 16))
		}, "template.png: template is 16x16, manifest align size is 32x16"},
		{"template not an image", func(t *testing.T, dir string) {
			rewriteFile(t, dir, TemplateName, []byte("not a png"))
		}, "template.png: cannot decode the template image"},
		{"bad align method", func(t *testing.T, dir string) { editManifest(t, dir, `method = "imm"`, `method = "magic"`) }, `manifest.toml:@method = "magic"@: align.method: "magic", want`},
		{"threshold out of range", func(t *testing.T, dir string) {
			editManifest(t, dir, "image_threshold = 0.3", "image_threshold = 1.7")
		}, "manifest.toml:@image_threshold = @: calibration.image_threshold: 1.7, want a value in (0, 1]"},
		{"input not a multiple of 16", func(t *testing.T, dir string) { editManifest(t, dir, "height = 32", "height = 30") }, "must be positive multiples of 16"},
		{"file escaping the bundle", func(t *testing.T, dir string) {
			editManifest(t, dir, `"align.onnx" = `, `"../align.onnx" = `)
		}, `files: "../align.onnx" is not a plain file name`},
		{"graph without checksum", func(t *testing.T, dir string) {
			editManifest(t, dir, `graph = "localize.onnx"`, `graph = "other.onnx"`)
		}, `localize.graph: "other.onnx" has no checksum in [files]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			writeValid(t, dir)
			tc.break_(t, dir)
			tc.want = withManifestLine(t, dir, tc.want)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded on a broken bundle")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error is not ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.want)
			}
		})
	}
}

func TestWriteRefusesInvalidManifest(t *testing.T) {
	m := validManifest()
	m.Calibration.ImageThreshold = 0
	dir := filepath.Join(t.TempDir(), "b")
	err := Write(dir, m, map[string][]byte{LocalizeGraphName: tinyLocalize(t, 32, 48), AlignGraphName: tinyAlign(t, 1, 16, 32), TemplateName: pngBytes(t, 32, 16)})
	if err == nil || !strings.Contains(err.Error(), "calibration.image_threshold") {
		t.Fatalf("Write error = %v, want the threshold named", err)
	}
	if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
		t.Errorf("a refused bundle left %s behind", dir)
	}
}

// TestReplaceRefusesNonBundles: only a missing path, an empty directory or
// a directory holding a bundle may be replaced; everything else is left
// untouched with an error wrapping ErrNotReplaceable.
func TestReplaceRefusesNonBundles(t *testing.T) {
	root := t.TempDir()
	mk := func(p string, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk(filepath.Join(root, "images", "a.png"), "png")
	mk(filepath.Join(root, "config.toml"), "config_version = 1")
	mk(filepath.Join(root, "old", ManifestName), "format_version = 1")
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "old"), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, want string }{
		{"images", "non-empty directory without manifest.toml"},
		{"config.toml", "is a file"},
		{"pipe", "is a named pipe: not a model bundle"},
		{"link", "is a symbolic link"},
		{"old", ""},
		{"empty", ""},
		{"new", ""},
	}
	for _, c := range cases {
		src := filepath.Join(root, ".staged-"+c.name)
		mk(filepath.Join(src, ManifestName), "new")
		err := Replace(src, filepath.Join(root, c.name))
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else if b, _ := os.ReadFile(filepath.Join(root, c.name, ManifestName)); string(b) != "new" {
				t.Errorf("%s: not replaced", c.name)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrNotReplaceable) {
			t.Errorf("%s: error %v, want %q wrapping ErrNotReplaceable", c.name, err, c.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "images", "a.png")); string(b) != "png" {
		t.Error("the image folder was touched")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "config.toml")); string(b) != "config_version = 1" {
		t.Error("the config file was touched")
	}
}

// withManifestLine replaces "@text@" in want by the number of the first line
// of the bundle's manifest that contains text, so that expectations name
// the line a problem must be reported at.
func withManifestLine(t *testing.T, dir, want string) string {
	t.Helper()
	i := strings.Index(want, "@")
	if i < 0 {
		return want
	}
	j := strings.Index(want[i+1:], "@") + i + 1
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	for n, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, want[i+1:j]) {
			return want[:i] + strconv.Itoa(n+1) + want[j+1:]
		}
	}
	t.Fatalf("manifest has no line with %q", want[i+1:j])
	return ""
}

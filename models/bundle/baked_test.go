package bundle_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// TestUpsampleBlurMatrix: the matrices models/netdef bakes into a graph
// and Load expects are, bit for bit, the bilinear upsampling (as a dense
// float64 matrix) convolved tap by tap with the Gaussian under reflect
// padding; each row sums to 1.
func TestUpsampleBlurMatrix(t *testing.T) {
	for _, tc := range []struct {
		in, out int
		sigma   float64
	}{{8, 32, 4}, {4, 32, 2}, {2, 32, 0.5}, {64, 256, 4}, {16, 256, 7.3}, {8, 16, 1}} {
		k := bundle.GaussianKernel(tc.sigma)
		if len(k) != 2*int(math.Ceil(3*tc.sigma))+1 {
			t.Fatalf("%+v: %d taps", tc, len(k))
		}
		var sum float64
		for i := range k {
			if k[i] != k[len(k)-1-i] {
				t.Fatalf("%+v: kernel not symmetric: %v", tc, k)
			}
			sum += float64(k[i])
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("%+v: kernel sums to %v", tc, sum)
		}

		up := make([][]float64, tc.out) // bilinear, half_pixel, clamped
		for i := range up {
			up[i] = make([]float64, tc.in)
			x := math.Max((float64(i)+0.5)*float64(tc.in)/float64(tc.out)-0.5, 0)
			lo := int(math.Floor(x))
			hi := min(lo+1, tc.in-1)
			lo = min(lo, tc.in-1)
			up[i][lo] += 1 - (x - math.Floor(x))
			up[i][hi] += x - math.Floor(x)
		}
		period := 2 * (tc.out - 1)
		want := make([]float32, tc.out*tc.in)
		for i := range tc.out {
			for tap, g := range k {
				src := (i + tap - len(k)/2 + period) % period // reflect padding
				if src >= tc.out {
					src = period - src
				}
				for j := range tc.in {
					want[i*tc.in+j] += g * float32(up[src][j])
				}
			}
		}

		got := bundle.UpsampleBlurMatrix(tc.in, tc.out, k)
		if len(got) != len(want) {
			t.Fatalf("%+v: %d values, want %d", tc, len(got), len(want))
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%+v: value %d is %v, want %v", tc, i, got[i], want[i])
			}
		}
		for i := range tc.out {
			var row float64
			for _, v := range got[i*tc.in : (i+1)*tc.in] {
				row += float64(v)
			}
			if math.Abs(row-1) > 1e-5 {
				t.Fatalf("%+v: row %d sums to %v", tc, i, row)
			}
		}
	}
}

// randomBundles holds one random-weight bundle of each kind, written once
// (a graph of the standard architecture takes a while under -race).
var randomBundles = map[int]string{}

// writeRandom copies a random-weight bundle of the standard architecture
// into a new directory: the centre method (shared 0), or a memory of
// shared entries.
func writeRandom(t *testing.T, shared int) string {
	t.Helper()
	src, ok := randomBundles[shared]
	if !ok {
		src = filepath.Join(os.TempDir(), fmt.Sprintf("inspectd-bundle-test-%d-%d", os.Getpid(), shared))
		if _, err := netdef.WriteRandomBundle(src, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 1, SharedEntries: shared}); err != nil {
			t.Fatal(err)
		}
		randomBundles[shared] = src
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestMain removes the bundles writeRandom wrote.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range randomBundles {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func edit(t *testing.T, dir, old, new string) {
	t.Helper()
	p := filepath.Join(dir, bundle.ManifestName)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("manifest has no %q:\n%s", old, raw)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(raw), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadComparesBakedValues (issue 24, finding 15): the manifest values
// that the localisation graph bakes in (input.mean and input.std, the
// heatmap's blur_sigma, the memory's global_entries, entries,
// global_precision and d) were accepted when they disagreed with the
// graph. Load refuses the mismatch naming both values.
func TestLoadComparesBakedValues(t *testing.T) {
	for _, tc := range []struct {
		name     string
		shared   int
		old, new string
		want     string
	}{
		{"input.mean", 0, "mean = [0.485,", "mean = [0.5,",
			"localize.onnx: manifest input.mean is [0.5 0.456 0.406], but the graph normalises its input with [0.485 0.456 0.406] (initializer \"imagenet_mean\")"},
		{"input.std", 64, "std = [0.229, 0.224, 0.225]", "std = [1.0, 1.0, 1.0]",
			"manifest input.std is [1 1 1], but the graph normalises its input with [0.229 0.224 0.225] (initializer \"imagenet_std\")"},
		{"blur_sigma of the centre method", 0, "blur_sigma = 4.0", "blur_sigma = 2.0",
			"manifest localize.blur_sigma is 2, but the graph blurs its heatmap with σ ≈ 4 (initializer \"upsample_blur_rows\")"},
		{"blur_sigma of a memory", 64, "blur_sigma = 4.0", "blur_sigma = 6.5",
			"manifest localize.blur_sigma is 6.5, but the graph blurs its heatmap with σ ≈ 4 (initializer \"upsample_blur_rows\")"},
		{"global_entries", 64, "global_entries = 64", "global_entries = 6144",
			"manifest localize.global_entries is 6144, but the graph holds 64 shared entries (initializer \"memory_global_int8\")"},
		{"entries", 64, "entries = 0", "entries = 8",
			"manifest localize.entries is 8, but the graph holds 0 memory entries per location (it has no initializer \"memory_bank\")"},
		{"global_precision", 64, `global_precision = "int8"`, `global_precision = "float32"`,
			"manifest localize.global_precision is \"float32\", but the graph holds its shared entries in int8"},
		{"stride", 64, "stride = 8", "stride = 4",
			"the graph's heatmap upsampling (initializer \"upsample_blur_rows\") has shape [32 4], but input.height 32 on a grid of stride 4 implies [32 8]"},
		{"d of a memory", 64, "d = 384", "d = 448", "manifest localize.d is 448, but the graph compares features of 384 channels"},
		{"d of the centre method", 0, "d = 4", "d = 8", "manifest localize.d is 8, but the graph compares features of 4 channels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRandom(t, tc.shared)
			if _, err := bundle.Load(dir); err != nil {
				t.Fatalf("the bundle as written: %v", err)
			}
			edit(t, dir, tc.old, tc.new)
			_, err := bundle.Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("Load = %v\nwant an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

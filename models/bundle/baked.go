package bundle

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/models/onnx"
)

// DefaultBlurSigma is the heatmap blur σ, in pixels, of a bundle whose
// manifest leaves localize.blur_sigma at 0 (models/netdef's default).
const DefaultBlurSigma = 4

// Initializer names under which models/netdef bakes manifest values into a
// localisation graph. Load compares each with the manifest when the graph
// holds it; a graph that holds none of them (not built by models/netdef)
// is checked for its interface only.
const (
	initMean      = "imagenet_mean"        // input.mean, [1,3,1,1]
	initStd       = "imagenet_std"         // input.std, [1,3,1,1]
	initBlurRows  = "upsample_blur_rows"   // localize.blur_sigma and stride, [H, gridH]
	initBlurCols  = "upsample_blur_cols_t" // the same along x, [gridW, W]
	initBank      = "memory_bank"          // localize.entries and d, [cells, D, K]
	initGlobal    = "memory_global"        // localize.global_entries and d, [D, G] float32
	initGlobalInt = "memory_global_int8"   // the same, global_precision "int8"
	initCentre    = "centre"               // localize.d of the centre method, [1, D, gridH, gridW]
)

// checkBakedValues compares the manifest values that the localisation
// graph bakes in — the input normalisation, the heatmap blur, the memory's
// entries and width — with the graph itself. The manifest describes the
// graph to everything that reads it (the daemon's margins, other runtimes,
// people); a manifest edited to say something else, or a graph swapped
// under an old manifest, is refused naming both values.
func checkBakedValues(path string, graph []byte, m *Manifest) error {
	inits, err := onnx.ReadInitializers(graph, initMean, initStd, initBlurRows, initBlurCols, initBank, initGlobal, initGlobalInt, initCentre)
	if err != nil {
		return invalid(path, "not a readable ONNX model: %v", err)
	}
	for _, n := range []struct {
		key, init string
		want      []float64
	}{{"input.mean", initMean, m.Input.Mean}, {"input.std", initStd, m.Input.Std}} {
		t, ok := inits[n.init]
		if !ok {
			continue
		}
		got, err := floats(t)
		if err != nil {
			return invalid(path, "initializer %q: %v", n.init, err)
		}
		if !sameValues(got, n.want) {
			return invalid(path, "manifest %s is %v, but the graph normalises its input with %v (initializer %q); the manifest must describe the graph it ships with (re-copy the bundle or train it again)",
				n.key, n.want, fmtFloats(got), n.init)
		}
	}
	if err := checkBlur(path, inits, m); err != nil {
		return err
	}
	return checkMemory(path, inits, m)
}

// checkBlur compares the graph's upsampling-and-blur matrices with the
// ones the manifest's input size, grid stride and blur σ give.
func checkBlur(path string, inits map[string]onnx.StoredTensor, m *Manifest) error {
	sigma := m.Localize.BlurSigma
	if !(sigma > 0) {
		sigma = DefaultBlurSigma
	}
	stride := m.Localize.GridStride()
	for _, ax := range []struct {
		init       string
		out, in    int
		transposed bool
		key        string
	}{
		{initBlurRows, m.Input.Height, m.Input.Height / stride, false, "input.height"},
		{initBlurCols, m.Input.Width, m.Input.Width / stride, true, "input.width"},
	} {
		t, ok := inits[ax.init]
		if !ok {
			continue
		}
		want := []int64{int64(ax.out), int64(ax.in)}
		if ax.transposed {
			want = []int64{int64(ax.in), int64(ax.out)}
		}
		if !slices.Equal(t.Dims, want) {
			return invalid(path, "the graph's heatmap upsampling (initializer %q) has shape %v, but %s %d on a grid of stride %d implies %v: the manifest's input size or localize.stride does not match the graph",
				ax.init, t.Dims, ax.key, ax.out, stride, want)
		}
		values, err := floats(t)
		if err != nil {
			return invalid(path, "initializer %q: %v", ax.init, err)
		}
		a := blurMatrix{values: values, in: ax.in, out: ax.out, transposed: ax.transposed}
		if !a.matches(GaussianKernel(sigma), 1e-5) {
			return invalid(path, "manifest localize.blur_sigma is %v, but the graph blurs its heatmap %s (initializer %q)",
				m.Localize.BlurSigma, a.describe(), ax.init)
		}
	}
	return nil
}

// blurMatrix is an upsample-and-blur matrix as a graph holds it: out×in
// row-major, or its transpose.
type blurMatrix struct {
	values     []float32
	in, out    int
	transposed bool
}

// row returns row i of the out×in matrix.
func (a blurMatrix) row(i int, buf []float32) []float32 {
	if !a.transposed {
		return a.values[i*a.in : (i+1)*a.in]
	}
	for j := range a.in {
		buf[j] = a.values[j*a.out+i]
	}
	return buf
}

// matches reports whether a is the matrix kernel gives, to tol.
func (a blurMatrix) matches(kernel []float32, tol float64) bool {
	if len(kernel)/2 >= a.out {
		return false // models/netdef refuses a kernel wider than the input
	}
	buf := make([]float32, a.in)
	for i := range a.out {
		if maxAbsDiff(a.row(i, buf), upsampleBlurRow(a.in, a.out, i, kernel)) > tol {
			return false
		}
	}
	return true
}

// describe says which Gaussian σ a was built with, judged from its middle
// row.
func (a blurMatrix) describe() string {
	i := a.out / 2
	row := a.row(i, make([]float32, a.in))
	best, bestDiff := 0.0, math.Inf(1)
	for s := 0.1; s <= 32.0001; s += 0.05 {
		if radius(s) >= a.out {
			break
		}
		if d := maxAbsDiff(row, upsampleBlurRow(a.in, a.out, i, GaussianKernel(s))); d < bestDiff {
			best, bestDiff = s, d
		}
	}
	if bestDiff > 1e-4 {
		return "with no Gaussian of σ from 0.1 to 32 pixels"
	}
	return fmt.Sprintf("with σ ≈ %.2g", best)
}

// checkMemory compares the memory's entries (per location and shared),
// their precision and width, and the method, with the manifest.
func checkMemory(path string, inits map[string]onnx.StoredTensor, m *Manifest) error {
	l := m.Localize
	bank, hasBank := inits[initBank]
	global, hasGlobal := inits[initGlobal]
	if g, ok := inits[initGlobalInt]; ok {
		global, hasGlobal = g, true
	}
	_, int8Global := inits[initGlobalInt]
	centre, hasCentre := inits[initCentre]
	isMemory := hasBank || hasGlobal
	method := l.Method
	if method == "" {
		method = LocalizeCentres
	}
	switch {
	case isMemory && method != LocalizeMemory:
		return invalid(path, "manifest localize.method is %q, but the graph compares with a memory (initializers %s)", method, presentNames(inits, initBank, initGlobal, initGlobalInt))
	case hasCentre && !isMemory && method == LocalizeMemory:
		return invalid(path, "manifest localize.method is %q, but the graph compares with one centre per location (initializer %q)", method, initCentre)
	}
	var d []int64 // the feature width, from every initializer that holds it
	if hasCentre && len(centre.Dims) == 4 {
		d = append(d, centre.Dims[1])
	}
	if !isMemory {
		return checkWidth(path, l.D, d)
	}
	var entries, shared int64
	if hasBank {
		if len(bank.Dims) != 3 {
			return invalid(path, "initializer %q has shape %v, want [cells, D, K]", initBank, bank.Dims)
		}
		d, entries = append(d, bank.Dims[1]), bank.Dims[2]
	}
	name := initGlobal
	if int8Global {
		name = initGlobalInt
	}
	if hasGlobal {
		if len(global.Dims) != 2 {
			return invalid(path, "initializer %q has shape %v, want [D, G]", name, global.Dims)
		}
		d, shared = append(d, global.Dims[0]), global.Dims[1]
	}
	if int64(l.Entries) != entries {
		return invalid(path, "manifest localize.entries is %d, but the graph holds %d memory entries per location (%s)", l.Entries, entries, initializerNote(hasBank, initBank))
	}
	if int64(l.GlobalEntries) != shared {
		return invalid(path, "manifest localize.global_entries is %d, but the graph holds %d shared entries (%s)", l.GlobalEntries, shared, initializerNote(hasGlobal, name))
	}
	if shared > 0 {
		precision := PrecisionFloat32
		if int8Global {
			precision = PrecisionInt8
		}
		want := l.GlobalPrecision
		if want == "" {
			want = PrecisionFloat32
		}
		if want != precision {
			return invalid(path, "manifest localize.global_precision is %q, but the graph holds its shared entries in %s (initializer %q)", want, precision, name)
		}
	}
	return checkWidth(path, l.D, d)
}

// checkWidth compares localize.d with the feature widths the graph holds.
func checkWidth(path string, want int, got []int64) error {
	for _, g := range got {
		if g != int64(want) {
			return invalid(path, "manifest localize.d is %d, but the graph compares features of %d channels", want, g)
		}
	}
	return nil
}

// initializerNote names where a count was read: the initializer, or its
// absence.
func initializerNote(present bool, name string) string {
	if present {
		return fmt.Sprintf("initializer %q", name)
	}
	return fmt.Sprintf("it has no initializer %q", name)
}

func presentNames(inits map[string]onnx.StoredTensor, names ...string) string {
	var out []string
	for _, n := range names {
		if _, ok := inits[n]; ok {
			out = append(out, fmt.Sprintf("%q", n))
		}
	}
	return strings.Join(out, ", ")
}

// sameValues reports whether the graph's float32 values equal the
// manifest's to float32 precision.
func sameValues(got []float32, want []float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i, g := range got {
		w := want[i]
		if math.IsNaN(w) || math.Abs(float64(g)-w) > 1e-6*math.Max(1, math.Abs(w)) {
			return false
		}
	}
	return true
}

func fmtFloats(v []float32) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = fmt.Sprint(f)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		x := math.Abs(float64(a[i]) - float64(b[i]))
		if !(x <= d) { // NaN counts as the largest difference
			d = x
			if math.IsNaN(x) {
				return math.Inf(1)
			}
		}
	}
	return d
}

// radius is the Gaussian kernel's half width for σ, ⌈3σ⌉.
func radius(sigma float64) int { return int(math.Ceil(3 * sigma)) }

// GaussianKernel returns the normalised 1-D Gaussian of standard deviation
// sigma with 2·⌈3σ⌉+1 taps: the heatmap blur of a localisation graph, as
// models/netdef bakes it in and Load expects it.
func GaussianKernel(sigma float64) []float32 {
	r := radius(sigma)
	k := make([]float64, 2*r+1)
	var sum float64
	for i := range k {
		x := float64(i - r)
		k[i] = math.Exp(-x * x / (2 * sigma * sigma))
		sum += k[i]
	}
	out := make([]float32, len(k))
	for i, v := range k {
		out[i] = float32(v / sum)
	}
	return out
}

// reflectIndex mirrors j into [0, n) as torch's reflect padding does.
func reflectIndex(j, n int) int {
	for j < 0 || j >= n {
		if j < 0 {
			j = -j
		}
		if j >= n {
			j = 2*(n-1) - j
		}
	}
	return j
}

// UpsampleBlurMatrix returns, row-major (out × in), the 1-D linear map that
// resizes a signal of length in to out samples bilinearly (half_pixel
// coordinates, clamped at the edges, as ONNX Resize and torch's
// interpolate(align_corners=False)) and then convolves it with kernel under
// reflect padding (as torch's F.pad(mode="reflect")). A localisation graph
// upsamples and blurs its heatmap with two such matrices (models/netdef
// bakes them in; Load compares them with the manifest's blur_sigma).
func UpsampleBlurMatrix(in, out int, kernel []float32) []float32 {
	a := make([]float32, 0, out*in)
	for i := range out {
		a = append(a, upsampleBlurRow(in, out, i, kernel)...)
	}
	return a
}

// upsampleBlurRow is row i of UpsampleBlurMatrix(in, out, kernel): for
// each tap of kernel in order, the tap times the bilinear weights (float64,
// rounded to float32) of the reflected source sample, summed in float32.
func upsampleBlurRow(in, out, i int, kernel []float32) []float32 {
	scale := float64(in) / float64(out)
	r := len(kernel) / 2
	a := make([]float32, in)
	for k, g := range kernel {
		src := reflectIndex(i+k-r, out)
		x := max((float64(src)+0.5)*scale-0.5, 0)
		x0 := int(math.Floor(x))
		f := x - float64(x0)
		x0 = min(x0, in-1)
		x1 := min(x0+1, in-1)
		if x0 == x1 {
			a[x0] += g * float32((1-f)+f)
			continue
		}
		a[x0] += g * float32(1-f)
		a[x1] += g * float32(f)
	}
	return a
}

// floats returns a float32 initializer's values.
func floats(t onnx.StoredTensor) ([]float32, error) {
	v, err := t.Floats()
	if errors.Is(err, onnx.ErrExternalData) {
		return nil, fmt.Errorf("%w, which a bundle does not support", err)
	}
	return v, err
}

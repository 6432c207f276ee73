package backbone

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nlpodyssey/gopickle/pytorch"
	"github.com/nlpodyssey/gopickle/types"
	"github.com/sbinet/npyio/npy"
)

// BatchNormEps is the epsilon torchvision's BatchNorm2d uses, applied when folding.
const BatchNormEps = 1e-5

// EnvDir is the environment variable that names the backbone weights directory.
const EnvDir = "INSPECTD_BACKBONE"

// SystemDir is the last place [Locate] looks.
const SystemDir = "/usr/share/inspectd/backbones/resnet18"

// LoadNPYDir reads <dir>/<name>.npy for every tensor of [Spec]. Every expected
// file must be present, float32, C order and of the expected shape. Other files
// are ignored; unexpected *.npy files are listed in Weights.Ignored.
func LoadNPYDir(dir string) (*Weights, error) {
	w := &Weights{Source: dir}
	expected := map[string]bool{}
	for _, s := range Spec() {
		expected[s.Name+".npy"] = true
		path := filepath.Join(dir, s.Name+".npy")
		data, shape, err := readNPY(path)
		if err != nil {
			return nil, fmt.Errorf("backbone: %w", err)
		}
		if !slices.Equal(shape, s.Shape) {
			return nil, fmt.Errorf("backbone: %s: shape %v, want %v", path, shape, s.Shape)
		}
		w.Tensors = append(w.Tensors, Tensor{Name: s.Name, Shape: shape, Data: data})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backbone: list %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".npy") && !expected[e.Name()] {
			w.Ignored = append(w.Ignored, e.Name())
		}
	}
	return w, nil
}

func readNPY(path string) ([]float32, []int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err // *PathError names the file
	}
	defer f.Close()
	r, err := npy.NewReader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Header.Descr.Type != "<f4" {
		return nil, nil, fmt.Errorf("%s: dtype %q, want little-endian float32 \"<f4\"", path, r.Header.Descr.Type)
	}
	if r.Header.Descr.Fortran {
		return nil, nil, fmt.Errorf("%s: Fortran order, want C order", path)
	}
	shape := make([]int64, len(r.Header.Descr.Shape))
	for i, d := range r.Header.Descr.Shape {
		shape[i] = int64(d)
	}
	// npy.Reader consumed exactly the header from f; the rest is the raw data.
	// Decoding it directly is ~100x faster than npyio's reflection-based Read.
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(raw)) != 4*numel(shape) {
		return nil, nil, fmt.Errorf("%s: %d data bytes for shape %v, want %d", path, len(raw), shape, 4*numel(shape))
	}
	data := make([]float32, len(raw)/4)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return data, shape, nil
}

// LoadTorchvisionPTH reads a torchvision resnet18 state_dict saved with
// torch.save and folds every BatchNorm into its convolution:
// w' = w·γ/√(var+eps), b' = β − μ·γ/√(var+eps), eps = 1e-5.
// layer4.*, fc.* and num_batches_tracked entries are ignored; a "module." prefix
// (DataParallel) is stripped.
func LoadTorchvisionPTH(path string) (*Weights, error) {
	obj, err := pytorch.Load(path)
	if err != nil {
		return nil, fmt.Errorf("backbone: load %s: %w", path, err)
	}
	sd, err := stateDict(obj)
	if err != nil {
		return nil, fmt.Errorf("backbone: %s: %w", path, err)
	}
	w := &Weights{Source: path}
	used := map[string]bool{}
	var missing []string
	get := func(key string, shape []int64) []float32 {
		used[key] = true
		t, ok := sd[key]
		if !ok {
			missing = append(missing, key)
			return nil
		}
		data, err := tensorData(t)
		if err == nil && !slices.Equal(toInt64(t.Size), shape) {
			err = fmt.Errorf("shape %v, want %v", t.Size, shape)
		}
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (%v)", key, err))
			return nil
		}
		return data
	}
	for _, c := range Convs() {
		wshape := []int64{c.Out, c.In, c.Kernel, c.Kernel}
		cw := get(c.Name+".weight", wshape)
		bn := c.BatchNormKeyPrefix
		gamma := get(bn+".weight", []int64{c.Out})
		beta := get(bn+".bias", []int64{c.Out})
		mean := get(bn+".running_mean", []int64{c.Out})
		variance := get(bn+".running_var", []int64{c.Out})
		used[bn+".num_batches_tracked"] = true
		if cw == nil || gamma == nil || beta == nil || mean == nil || variance == nil {
			continue
		}
		fw := make([]float32, len(cw))
		fb := make([]float32, c.Out)
		per := len(cw) / int(c.Out)
		for o := 0; o < int(c.Out); o++ {
			scale := float64(gamma[o]) / math.Sqrt(float64(variance[o])+BatchNormEps)
			for i := o * per; i < (o+1)*per; i++ {
				fw[i] = float32(float64(cw[i]) * scale)
			}
			fb[o] = float32(float64(beta[o]) - float64(mean[o])*scale)
		}
		w.Tensors = append(w.Tensors,
			Tensor{Name: c.Name + ".weight", Shape: wshape, Data: fw},
			Tensor{Name: c.Name + ".bias", Shape: []int64{c.Out}, Data: fb})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("backbone: %s is not a torchvision resnet18 state_dict: missing or bad keys: %s", path, strings.Join(missing, ", "))
	}
	for k := range sd {
		if !used[k] && !strings.HasPrefix(k, "layer4.") && !strings.HasPrefix(k, "fc.") {
			w.Ignored = append(w.Ignored, k)
		}
	}
	sort.Strings(w.Ignored)
	return w, nil
}

func stateDict(obj any) (map[string]*pytorch.Tensor, error) {
	out := map[string]*pytorch.Tensor{}
	add := func(k, v any) error {
		key, ok := k.(string)
		if !ok {
			return fmt.Errorf("state_dict key %v is a %T, want string", k, k)
		}
		key = strings.TrimPrefix(key, "module.")
		if t, ok := v.(*pytorch.Tensor); ok {
			out[key] = t
		}
		return nil
	}
	switch d := obj.(type) {
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			entry := e.Value.(*types.OrderedDictEntry)
			if err := add(entry.Key, entry.Value); err != nil {
				return nil, err
			}
		}
	case *types.Dict:
		for _, e := range *d {
			if err := add(e.Key, e.Value); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("top-level object is a %T, want a state_dict (OrderedDict of tensors)", obj)
	}
	return out, nil
}

// tensorData copies a float32 tensor out of its storage, honouring offset and strides.
func tensorData(t *pytorch.Tensor) ([]float32, error) {
	st, ok := t.Source.(*pytorch.FloatStorage)
	if !ok {
		return nil, fmt.Errorf("storage %T, want float32", t.Source)
	}
	n := 1
	for _, d := range t.Size {
		n *= d
	}
	out := make([]float32, n)
	idx := make([]int, len(t.Size))
	for i := range out {
		off := t.StorageOffset
		for d := range idx {
			off += idx[d] * t.Stride[d]
		}
		if off < 0 || off >= len(st.Data) {
			return nil, fmt.Errorf("element %d outside storage of %d values", i, len(st.Data))
		}
		out[i] = st.Data[off]
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < t.Size[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out, nil
}

func toInt64(s []int) []int64 {
	out := make([]int64, len(s))
	for i, v := range s {
		out[i] = int64(v)
	}
	return out
}

// Locate returns the directory holding the backbone .npy files. It looks, in
// order, at $INSPECTD_BACKBONE (authoritative when set), at
// ../shared/backbones/resnet18 relative to the working directory and to each of
// its parents up to the filesystem root, and at [SystemDir]. A candidate counts
// when it contains conv1.weight.npy. The error lists every place looked at.
func Locate() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("backbone: locate weights: %w", err)
	}
	return locate(os.Getenv(EnvDir), wd, SystemDir)
}

func locate(env, wd, system string) (string, error) {
	if env != "" {
		if isWeightsDir(env) {
			return env, nil
		}
		return "", fmt.Errorf("backbone: $%s=%s has no conv1.weight.npy", EnvDir, env)
	}
	var tried []string
	for d := filepath.Clean(wd); ; d = filepath.Dir(d) {
		c := filepath.Join(d, "..", "shared", "backbones", "resnet18")
		if isWeightsDir(c) {
			return c, nil
		}
		tried = append(tried, c)
		if filepath.Dir(d) == d {
			break
		}
	}
	if isWeightsDir(system) {
		return system, nil
	}
	tried = append(tried, system)
	return "", fmt.Errorf("backbone: no ResNet-18 weights (conv1.weight.npy) found; set $%s or install them; looked in: %s", EnvDir, strings.Join(tried, ", "))
}

func isWeightsDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "conv1.weight.npy"))
	return err == nil && st.Mode().IsRegular()
}

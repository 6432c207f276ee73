// Package backbone holds the frozen ImageNet ResNet-18 feature extractor that
// inspectd uses, truncated after layer3, as plain Go data.
//
// Weights are in PyTorch layout (conv weights OIHW) with every BatchNorm folded
// into the preceding convolution, so each convolution has a bias and there are
// no BN layers. They load from a directory of .npy files ([LoadNPYDir], the layout
// of shared/backbones/resnet18) or from a torchvision resnet18 state_dict
// ([LoadTorchvisionPTH], folded here). [Locate] finds the default weights
// directory; [Weights.Fingerprint] identifies a set of weights in a model bundle;
// [Random] gives correctly shaped weights for benchmarks and tests.
package backbone

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Tensor is one named weight tensor.
type Tensor struct {
	// Name is the PyTorch parameter name, e.g. "layer2.0.downsample.0.weight".
	Name string
	// Shape is the tensor shape, OIHW for convolution weights.
	Shape []int64
	// Data holds the values in row-major (C) order.
	Data []float32
}

// Weights is a complete, ordered set of backbone tensors (see [Spec]).
type Weights struct {
	// Tensors are in Spec order.
	Tensors []Tensor
	// Source describes where the weights came from (a path or "random(seed)").
	Source string
	// Ignored lists files or keys found at the source but not used.
	Ignored []string
}

// TensorSpec names one expected tensor and its shape.
type TensorSpec struct {
	Name  string
	Shape []int64
}

// Conv describes one convolution of the backbone, in execution order.
type Conv struct {
	// Name is the parameter prefix, e.g. "layer1.0.conv1"; the tensors are
	// Name+".weight" and Name+".bias".
	Name               string
	Out, In, Kernel    int64
	Stride, Pad        int64
	BatchNormKeyPrefix string // torchvision name of the BN that follows (for .pth folding)
}

// Convs returns the convolutions of conv1..layer3 in order. Within each residual
// block the order is conv1, conv2, then the downsample shortcut if present.
func Convs() []Conv {
	cs := []Conv{{Name: "conv1", Out: 64, In: 3, Kernel: 7, Stride: 2, Pad: 3, BatchNormKeyPrefix: "bn1"}}
	in := int64(64)
	for l, out := range []int64{64, 128, 256} {
		for b := 0; b < 2; b++ {
			p := fmt.Sprintf("layer%d.%d.", l+1, b)
			stride := int64(1)
			if b == 0 && l > 0 {
				stride = 2
			}
			cs = append(cs,
				Conv{Name: p + "conv1", Out: out, In: in, Kernel: 3, Stride: stride, Pad: 1, BatchNormKeyPrefix: p + "bn1"},
				Conv{Name: p + "conv2", Out: out, In: out, Kernel: 3, Stride: 1, Pad: 1, BatchNormKeyPrefix: p + "bn2"})
			if stride == 2 {
				cs = append(cs, Conv{Name: p + "downsample.0", Out: out, In: in, Kernel: 1, Stride: 2, Pad: 0, BatchNormKeyPrefix: p + "downsample.1"})
			}
			in = out
		}
	}
	return cs
}

// Spec returns every expected tensor with its shape, in canonical order.
func Spec() []TensorSpec {
	var s []TensorSpec
	for _, c := range Convs() {
		s = append(s,
			TensorSpec{Name: c.Name + ".weight", Shape: []int64{c.Out, c.In, c.Kernel, c.Kernel}},
			TensorSpec{Name: c.Name + ".bias", Shape: []int64{c.Out}})
	}
	return s
}

// Tensor returns the tensor with the given name.
func (w *Weights) Tensor(name string) (Tensor, error) {
	for _, t := range w.Tensors {
		if t.Name == name {
			return t, nil
		}
	}
	return Tensor{}, fmt.Errorf("backbone weights (%s): no tensor %q", w.Source, name)
}

// Validate checks that w holds exactly the tensors of [Spec], in order, with the
// expected shapes and data lengths.
func (w *Weights) Validate() error {
	spec := Spec()
	if len(w.Tensors) != len(spec) {
		return fmt.Errorf("backbone weights (%s): %d tensors, want %d", w.Source, len(w.Tensors), len(spec))
	}
	for i, s := range spec {
		t := w.Tensors[i]
		if t.Name != s.Name {
			return fmt.Errorf("backbone weights (%s): tensor %d is %q, want %q", w.Source, i, t.Name, s.Name)
		}
		if !slices.Equal(t.Shape, s.Shape) {
			return fmt.Errorf("backbone weights (%s): %s has shape %v, want %v", w.Source, s.Name, t.Shape, s.Shape)
		}
		if int64(len(t.Data)) != numel(s.Shape) {
			return fmt.Errorf("backbone weights (%s): %s has %d values, want %d", w.Source, s.Name, len(t.Data), numel(s.Shape))
		}
	}
	return nil
}

// Fingerprint returns "sha256:" and the hex SHA-256 over every tensor's name,
// shape and little-endian float32 data, in order. It identifies the backbone in
// a model bundle independently of the file format the weights came from.
func (w *Weights) Fingerprint() string {
	h := sha256.New()
	var buf [8]byte
	for _, t := range w.Tensors {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(t.Name)))
		h.Write(buf[:])
		h.Write([]byte(t.Name))
		binary.LittleEndian.PutUint64(buf[:], uint64(len(t.Shape)))
		h.Write(buf[:])
		for _, d := range t.Shape {
			binary.LittleEndian.PutUint64(buf[:], uint64(d))
			h.Write(buf[:])
		}
		data := make([]byte, 4*len(t.Data))
		for i, v := range t.Data {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
		h.Write(data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Random returns He-initialised weights (normal, std sqrt(2/fan_in)) with zero
// biases, deterministic for a seed. Useful for benchmarks without real weights.
func Random(seed uint64) *Weights {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	w := &Weights{Source: fmt.Sprintf("random(%d)", seed)}
	for _, s := range Spec() {
		t := Tensor{Name: s.Name, Shape: slices.Clone(s.Shape), Data: make([]float32, numel(s.Shape))}
		if len(s.Shape) == 4 {
			std := math.Sqrt(2 / float64(s.Shape[1]*s.Shape[2]*s.Shape[3]))
			for i := range t.Data {
				t.Data[i] = float32(r.NormFloat64() * std)
			}
		}
		w.Tensors = append(w.Tensors, t)
	}
	return w
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

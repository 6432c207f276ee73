package netdef

import (
	"fmt"
	"slices"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/onnx"
)

// TFLiteTwins re-emits a loaded bundle's graphs as TFLite twins: the
// weights are read back from the ONNX graphs' initializers into the
// network definitions' weight structs (the emitters' own names), and the
// twins are written by [LocalizeTFLite] or [MemoryTFLite] and
// [AlignTFLite]. It returns the files by bundle name
// (bundle.LocalizeTFLiteName and, for an IMM bundle, bundle.AlignTFLiteName).
func TFLiteTwins(b *bundle.Bundle) (map[string][]byte, error) {
	out := map[string][]byte{}
	loc, err := localizeTwin(b)
	if err != nil {
		return nil, fmt.Errorf("tflite twin of %s: %w", b.Manifest.Localize.Graph, err)
	}
	out[bundle.LocalizeTFLiteName] = loc
	if b.Manifest.Align.Method == bundle.AlignIMM {
		al, err := alignTwin(b)
		if err != nil {
			return nil, fmt.Errorf("tflite twin of %s: %w", b.Manifest.Align.Graph, err)
		}
		out[bundle.AlignTFLiteName] = al
	}
	return out, nil
}

// inits reads a graph's initializers once.
type inits map[string]onnx.StoredTensor

func (in inits) floats(name string) ([]float32, error) {
	t, ok := in[name]
	if !ok {
		return nil, fmt.Errorf("no initializer %q", name)
	}
	return t.Floats()
}

func (in inits) has(name string) bool { _, ok := in[name]; return ok }

func (in inits) conv(name string, out, inCh, k int) (ConvWeights, error) {
	w, err := in.floats(name + ".weight")
	if err != nil {
		return ConvWeights{}, err
	}
	b, err := in.floats(name + ".bias")
	if err != nil {
		return ConvWeights{}, err
	}
	c := ConvWeights{Out: out, In: inCh, Kernel: k, Weight: w, Bias: b}
	return c, c.check(name, out, inCh, k)
}

func (in inits) dense(name string, out, inN int) (DenseWeights, error) {
	w, err := in.floats(name + ".weight")
	if err != nil {
		return DenseWeights{}, err
	}
	b, err := in.floats(name + ".bias")
	if err != nil {
		return DenseWeights{}, err
	}
	d := DenseWeights{Out: out, In: inN, Weight: w, Bias: b}
	return d, d.check(name, out, inN)
}

func (in inits) backbone() (*backbone.Weights, error) {
	w := &backbone.Weights{Source: "bundle graph initializers"}
	for _, c := range backbone.Convs() {
		for _, suffix := range []string{".weight", ".bias"} {
			t, ok := in[c.Name+suffix]
			if !ok {
				return nil, fmt.Errorf("no initializer %q", c.Name+suffix)
			}
			v, err := t.Floats()
			if err != nil {
				return nil, err
			}
			w.Tensors = append(w.Tensors, backbone.Tensor{Name: c.Name + suffix, Shape: slices.Clone(t.Dims), Data: v})
		}
	}
	return w, w.Validate()
}

// splitConv joins the per-layer weight columns emitFirstMapping splits a
// 448→D 1×1 convolution into (prefix.layerN.weight, prefix.bias) back into
// one layer over the given layers' channels.
func (in inits) splitConv(wPrefix, biasName string, layers []int, d int) (ConvWeights, error) {
	total := 0
	for _, l := range layers {
		total += layerChannels[l-1]
	}
	c := ConvWeights{Out: d, In: total, Kernel: 1, Weight: make([]float32, d*total)}
	from := 0
	for _, l := range layers {
		n := layerChannels[l-1]
		w, err := in.floats(fmt.Sprintf("%s.layer%d.weight", wPrefix, l))
		if err != nil {
			return ConvWeights{}, err
		}
		if len(w) != d*n {
			return ConvWeights{}, fmt.Errorf("%s.layer%d.weight: %d values, want %d", wPrefix, l, len(w), d*n)
		}
		for o := range d {
			copy(c.Weight[o*total+from:o*total+from+n], w[o*n:(o+1)*n])
		}
		from += n
	}
	b, err := in.floats(biasName)
	if err != nil {
		return ConvWeights{}, err
	}
	c.Bias = b
	return c, c.check("projection", d, total, 1)
}

func readInits(graph []byte) (inits, error) {
	m, err := onnx.ReadInitializers(graph)
	if err != nil {
		return nil, err
	}
	return inits(m), nil
}

func localizeTwin(b *bundle.Bundle) ([]byte, error) {
	in, err := readInits(b.LocalizeGraph)
	if err != nil {
		return nil, err
	}
	bb, err := in.backbone()
	if err != nil {
		return nil, err
	}
	m := b.Manifest
	H, W := m.Input.Height, m.Input.Width
	if m.Localize.Method != bundle.LocalizeMemory {
		spec := LocalizeSpec{Height: H, Width: W, D: m.Localize.D, BlurSigma: m.Localize.BlurSigma}
		first, err := in.splitConv("mapping.0", "mapping.0.bias", []int{1, 2, 3}, spec.D)
		if err != nil {
			return nil, err
		}
		head := MappingWeights{Layers: []ConvWeights{first}}
		for i := 1; in.has(fmt.Sprintf("mapping.%d.weight", i)); i++ {
			c, err := in.conv(fmt.Sprintf("mapping.%d", i), spec.D, spec.D, 1)
			if err != nil {
				return nil, err
			}
			head.Layers = append(head.Layers, c)
		}
		centre, err := in.floats("centre")
		if err != nil {
			return nil, err
		}
		return LocalizeTFLite(spec, bb, head, centre)
	}
	mm, err := readMemoryModel(in, m, bb)
	if err != nil {
		return nil, err
	}
	return MemoryTFLite(mm.Spec, mm.Backbone, mm.Projection, mm.Bank, mm.Global)
}

// MemoryModel is a memory localisation network as [ReadMemoryModel]
// reads it back from a bundle's ONNX graph: [MemoryGraph]'s arguments.
type MemoryModel struct {
	Spec       MemorySpec
	Backbone   *backbone.Weights
	Projection ConvWeights
	// Bank is location-major [gridH·gridW][K][D]; Global is [G][D] (for an
	// int8 memory, the int8 values times Spec.GlobalScale).
	Bank, Global []float32
}

// ReadMemoryModel reads the memory network of a bundle whose
// localize.method is "memory" back from its ONNX graph's initializers.
func ReadMemoryModel(b *bundle.Bundle) (MemoryModel, error) {
	if b.Manifest.Localize.Method != bundle.LocalizeMemory {
		return MemoryModel{}, fmt.Errorf("read memory model: localize.method is %q, want %q", b.Manifest.Localize.Method, bundle.LocalizeMemory)
	}
	in, err := readInits(b.LocalizeGraph)
	if err != nil {
		return MemoryModel{}, fmt.Errorf("read memory model: %w", err)
	}
	bb, err := in.backbone()
	if err != nil {
		return MemoryModel{}, fmt.Errorf("read memory model: %w", err)
	}
	mm, err := readMemoryModel(in, b.Manifest, bb)
	if err != nil {
		return MemoryModel{}, fmt.Errorf("read memory model: %w", err)
	}
	return mm, nil
}

func readMemoryModel(in inits, m bundle.Manifest, bb *backbone.Weights) (MemoryModel, error) {
	H, W := m.Input.Height, m.Input.Width
	l := m.Localize
	spec := MemorySpec{Height: H, Width: W, Layers: l.Layers, Stride: l.Stride, D: l.D, Entries: l.Entries,
		Global: l.GlobalEntries, AverageEachLayer: l.Average == bundle.AverageEachLayer,
		GlobalInt8: l.GlobalPrecision == bundle.PrecisionInt8, BlurSigma: l.BlurSigma}
	scale, err := in.floats("heatmap_scale")
	if err != nil {
		return MemoryModel{}, err
	}
	spec.Scale = float64(scale[0])
	var projection ConvWeights
	layers := spec.MemoryLayers()
	switch {
	case in.has("mapping.0.layer1.weight"):
		projection, err = in.splitConv("mapping.0", "mapping.0.bias", layers, spec.D)
	case in.has("projection.bias"):
		projection, err = in.splitConv("projection", "projection.bias", layers, spec.D)
	}
	if err != nil {
		return MemoryModel{}, err
	}
	gh, gw := spec.Grid()
	n, D, K, G := gh*gw, spec.D, spec.Entries, spec.Global
	var bank, global []float32
	if K > 0 {
		bt, err := in.floats("memory_bank") // [n][D][K]
		if err != nil {
			return MemoryModel{}, err
		}
		if len(bt) != n*D*K {
			return MemoryModel{}, fmt.Errorf("memory_bank: %d values, want %d", len(bt), n*D*K)
		}
		bank = make([]float32, len(bt))
		for p := range n {
			for c := range D {
				for k := range K {
					bank[(p*K+k)*D+c] = bt[(p*D+c)*K+k]
				}
			}
		}
	}
	if G > 0 {
		var gt []float32 // [D][G]
		if spec.GlobalInt8 {
			t, ok := in["memory_global_int8"]
			if !ok {
				return MemoryModel{}, fmt.Errorf("no initializer %q", "memory_global_int8")
			}
			q, err := t.Int8s()
			if err != nil {
				return MemoryModel{}, err
			}
			ps, err := in.floats("global_product_scale")
			if err != nil {
				return MemoryModel{}, err
			}
			spec.GlobalScale = ps[0] / -2
			gt = make([]float32, len(q))
			for i, v := range q {
				gt[i] = float32(v) * spec.GlobalScale
			}
		} else if gt, err = in.floats("memory_global"); err != nil {
			return MemoryModel{}, err
		}
		if len(gt) != D*G {
			return MemoryModel{}, fmt.Errorf("global entries: %d values, want %d", len(gt), D*G)
		}
		global = make([]float32, len(gt))
		for c := range D {
			for j := range G {
				global[j*D+c] = gt[c*G+j]
			}
		}
	}
	return MemoryModel{Spec: spec, Backbone: bb, Projection: projection, Bank: bank, Global: global}, nil
}

func alignTwin(b *bundle.Bundle) ([]byte, error) {
	in, err := readInits(b.AlignGraph)
	if err != nil {
		return nil, err
	}
	al := b.Manifest.Align
	var w AlignWeights
	ch := al.Channels
	for i, out := range AlignFeatureChannels() {
		if w.Features[i], err = in.conv(fmt.Sprintf("features.%d", i), out, ch, 3); err != nil {
			return nil, err
		}
		ch = out
	}
	ch *= 2
	for i := range w.Regress {
		if w.Regress[i], err = in.conv(fmt.Sprintf("regress.%d", i), AlignRegressChannels, ch, 3); err != nil {
			return nil, err
		}
		ch = AlignRegressChannels
	}
	if w.Hidden, err = in.dense("hidden", AlignHidden, AlignRegressChannels); err != nil {
		return nil, err
	}
	if w.Out, err = in.dense("out", 3, AlignHidden); err != nil {
		return nil, err
	}
	return AlignTFLite(AlignSpec{Channels: al.Channels, Height: al.Height, Width: al.Width}, w)
}

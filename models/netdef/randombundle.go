package netdef

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"time"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
)

// RandomBundleOptions shapes a random-weight bundle.
type RandomBundleOptions struct {
	// Height, Width of the model input (multiples of 16); default 256×256.
	Height, Width int
	// D is the mapped feature width; default 256 (the training default).
	D int
	// MappingLayers is the depth of N_M; default 1 (the training default).
	MappingLayers int
	// AlignSize is the IMM input size (square); default 128. 0 with
	// NoAlign set writes a bundle with align method "none".
	AlignSize int
	// AlignChannels is 1 or 3; default 1.
	AlignChannels int
	// NoAlign writes align method "none" (no align graph).
	NoAlign bool
	// SharedEntries, when positive, makes the localisation graph the
	// training default's memory instead of the paper's ALM: layers 2–3 of
	// every channel, each averaged at its own resolution, compared on an
	// 8-pixel grid with this many random int8 shared entries and none per
	// cell. D and MappingLayers do not apply to it.
	SharedEntries int
	// Backbone weights; nil means backbone.Random(Seed).
	Backbone *backbone.Weights
	// Seed for every random weight.
	Seed uint64
}

func (o *RandomBundleOptions) setDefaults() {
	if o.Height == 0 {
		o.Height = 256
	}
	if o.Width == 0 {
		o.Width = 256
	}
	if o.D == 0 {
		o.D = 256
	}
	if o.MappingLayers == 0 {
		o.MappingLayers = 1
	}
	if o.AlignSize == 0 {
		o.AlignSize = 128
	}
	if o.AlignChannels == 0 {
		o.AlignChannels = 1
	}
}

// WriteRandomBundle writes a bundle of the standard architecture with
// random weights to dir, so that any machine can be sized (timed) before a
// model is trained. Its product name says it is not a trained model; its
// scores mean nothing.
func WriteRandomBundle(dir string, o RandomBundleOptions) (*bundle.Manifest, error) {
	o.setDefaults()
	bb := o.Backbone
	if bb == nil {
		bb = backbone.Random(o.Seed)
	}
	localize := bundle.Localize{Graph: bundle.LocalizeGraphName, D: o.D, Reduction: "random", Centre: "local", BlurSigma: DefaultBlurSigma}
	var loc []byte
	var err error
	if o.SharedEntries > 0 {
		localize, loc, err = randomMemory(o, bb)
	} else {
		spec := LocalizeSpec{Height: o.Height, Width: o.Width, D: o.D, BlurSigma: DefaultBlurSigma}
		centre := randomCentre(o.Seed+1, o.D, o.Height/4, o.Width/4)
		loc, err = LocalizeGraph(spec, bb, RandomMapping(o.Seed+2, o.D, o.MappingLayers), centre)
	}
	if err != nil {
		return nil, fmt.Errorf("random bundle: %w", err)
	}
	m := &bundle.Manifest{
		Product:   "random-weights-benchmark",
		Created:   time.Now().UTC().Truncate(time.Second),
		CreatedBy: "inspectd random bundle (timing only; not a trained model)",
		Input:     bundle.Input{Height: o.Height, Width: o.Width, ColourOrder: "rgb", Mean: bundle.ImageNetMean(), Std: bundle.ImageNetStd()},
		Align:     bundle.Align{Method: bundle.AlignNone, TemplateSeed: -1},
		Localize:  localize,
		Backbone:  bundle.Backbone{Name: "resnet18-layer3", Fingerprint: bb.Fingerprint(), Source: "random"},
		Calibration: bundle.Calibration{ImageThreshold: 0.5, PixelThreshold: 0.5,
			Rule: "none: random weights"},
		Training: bundle.Training{Seed: int64(o.Seed), Notes: "random weights for benchmarking"},
	}
	files := map[string][]byte{bundle.LocalizeGraphName: loc}
	if !o.NoAlign {
		al, err := AlignGraph(AlignSpec{Channels: o.AlignChannels, Height: o.AlignSize, Width: o.AlignSize}, NewAlignWeights(o.Seed+3, o.AlignChannels))
		if err != nil {
			return nil, fmt.Errorf("random bundle: %w", err)
		}
		tpl, err := templatePNG(o.AlignSize, o.AlignSize)
		if err != nil {
			return nil, fmt.Errorf("random bundle: %w", err)
		}
		files[bundle.AlignGraphName] = al
		files[bundle.TemplateName] = tpl
		m.Align = bundle.Align{Method: bundle.AlignIMM, Graph: bundle.AlignGraphName, Template: bundle.TemplateName,
			Height: o.AlignSize, Width: o.AlignSize, Channels: o.AlignChannels, TemplateSeed: -1, TemplateSource: "synthetic"}
	}
	if err := bundle.Write(dir, m, files); err != nil {
		return nil, err
	}
	return m, nil
}

// randomMemory returns the manifest section and graph of a memory with
// o.SharedEntries random int8 shared entries (see RandomBundleOptions).
func randomMemory(o RandomBundleOptions, bb *backbone.Weights) (bundle.Localize, []byte, error) {
	layers := []int{2, 3}
	d, err := MemoryChannels(layers)
	if err != nil {
		return bundle.Localize{}, nil, err
	}
	const step = 1.0 / 64
	spec := MemorySpec{Height: o.Height, Width: o.Width, Layers: layers, Stride: 8, D: d, Global: o.SharedEntries,
		AverageEachLayer: true, GlobalInt8: true, GlobalScale: step, BlurSigma: DefaultBlurSigma, Scale: 1}
	r := newRand(o.Seed + 1)
	global := make([]float32, o.SharedEntries*d)
	for i := range global {
		global[i] = float32(r.IntN(128)) * step // whole int8 steps, like features after a ReLU
	}
	g, err := MemoryGraph(spec, bb, ConvWeights{}, nil, global)
	if err != nil {
		return bundle.Localize{}, nil, err
	}
	return bundle.Localize{Graph: bundle.LocalizeGraphName, Method: bundle.LocalizeMemory, D: d, GlobalEntries: o.SharedEntries,
		Radius: 0, Layers: layers, Stride: spec.Stride, Average: bundle.AverageEachLayer, GlobalPrecision: bundle.PrecisionInt8,
		Reduction: "none", BlurSigma: DefaultBlurSigma}, g, nil
}

// randomCentre returns unit-length random centre vectors, D×h×w (CHW).
func randomCentre(seed uint64, d, h, w int) []float32 {
	r := newRand(seed)
	c := make([]float32, d*h*w)
	for i := range c {
		c[i] = float32(r.NormFloat64())
	}
	for p := range h * w {
		var n float64
		for k := range d {
			n += float64(c[k*h*w+p]) * float64(c[k*h*w+p])
		}
		inv := float32(1 / math.Sqrt(n))
		for k := range d {
			c[k*h*w+p] *= inv
		}
	}
	return c
}

// templatePNG draws a simple part-like template (a bright disc with a notch).
func templatePNG(w, h int) ([]byte, error) {
	img := image.NewGray(image.Rect(0, 0, w, h))
	cx, cy, r := float64(w)/2, float64(h)/2, float64(min(w, h))/3
	for y := range h {
		for x := range w {
			dx, dy := float64(x)-cx, float64(y)-cy
			v := uint8(40)
			if dx*dx+dy*dy < r*r && !(dx > 0 && math.Abs(dy) < r/6) {
				v = 200
			}
			img.Pix[y*img.Stride+x] = v
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

package tflite

import (
	"fmt"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/models/bundle"
)

// Twins are the TFLite twins of a bundle's graphs.
type Twins struct {
	// Localize is localize.tflite.
	Localize []byte
	// Align is align.tflite (nil unless the bundle aligns with an IMM).
	Align []byte
}

// ReadTwins returns the TFLite twins of b, as bundle.Load verified them
// (checksums and interface). A bundle without them is an error naming the
// bundle and the command that writes them.
func ReadTwins(b *bundle.Bundle) (Twins, error) {
	tw := Twins{Localize: b.LocalizeTFLite}
	if tw.Localize == nil {
		return Twins{}, missingTwin(b, bundle.LocalizeTFLiteName, "localize")
	}
	if b.Manifest.Align.Method == bundle.AlignIMM {
		if tw.Align = b.AlignTFLite; tw.Align == nil {
			return Twins{}, missingTwin(b, bundle.AlignTFLiteName, "align")
		}
	}
	return tw, nil
}

func missingTwin(b *bundle.Bundle, name, graph string) error {
	return fmt.Errorf("tflite runtime: bundle %s has no TFLite twin of its %s graph (%s); run `inspectd export-tflite` on the bundle, or set model.runtime = \"onnxruntime\"", b.Dir, graph, name)
}

// NewEngine builds the one [infer.Engine] over b's TFLite twins, run by
// lib with opts. The align regressor runs on one thread.
func NewEngine(lib *Library, b *bundle.Bundle, opts Options) (*infer.Engine, error) {
	tw, err := ReadTwins(b)
	if err != nil {
		return nil, err
	}
	if _, err := plan(opts); err != nil {
		return nil, err
	}
	return infer.NewEngineWithSessions(b, func(g infer.Graph) (infer.GraphSession, error) {
		o, model, want := opts, tw.Localize, localizeShapes(b.Manifest)
		if g == infer.GraphAlign {
			o.Threads, model, want = 1, tw.Align, alignShapes(b.Manifest)
		}
		s, err := lib.NewSession(model, o)
		if err != nil {
			return nil, err
		}
		if err := s.checkShapes(want); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	})
}

// shapes are the tensors a twin must have: exact dims, or (elems > 0) an
// element count where the twin may be [1] or [1,1] as its ONNX graph.
type shapes struct {
	inputs, outputs map[string]wantShape
}

type wantShape struct {
	dims  []int
	elems int
}

func localizeShapes(m bundle.Manifest) shapes {
	h, w := m.Input.Height, m.Input.Width
	return shapes{
		inputs:  map[string]wantShape{bundle.InputImage: {dims: []int{1, h, w, 3}}},
		outputs: map[string]wantShape{bundle.OutputHeatmap: {dims: []int{1, h, w, 1}}, bundle.OutputScore: {elems: 1}},
	}
}

func alignShapes(m bundle.Manifest) shapes {
	img := wantShape{dims: []int{1, m.Align.Height, m.Align.Width, m.Align.Channels}}
	return shapes{
		inputs:  map[string]wantShape{bundle.InputImage: img, bundle.InputTemplate: img},
		outputs: map[string]wantShape{bundle.OutputTransform: {elems: 3}},
	}
}

// checkShapes compares the interpreter's tensors with want: the same names,
// and NHWC images of the manifest's sizes.
func (s *Session) checkShapes(want shapes) error {
	for _, side := range []struct {
		kind string
		got  []tensorInfo
		want map[string]wantShape
	}{{"input", s.it.inputs(), want.inputs}, {"output", s.it.outputs(), want.outputs}} {
		var names []string
		for n := range side.want {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(side.got) != len(side.want) {
			return fmt.Errorf("tflite session: the twin has %d %ss, want %d (%s)", len(side.got), side.kind, len(side.want), strings.Join(names, ", "))
		}
		for _, t := range side.got {
			w, ok := side.want[t.name]
			if !ok {
				return fmt.Errorf("tflite session: unexpected %s %q, want %s", side.kind, t.name, strings.Join(names, ", "))
			}
			n := 1
			for _, d := range t.dims {
				n *= d
			}
			if (w.dims != nil && !slices.Equal(t.dims, w.dims)) || (w.elems > 0 && n != w.elems) {
				wanted := fmt.Sprint(w.dims)
				if w.dims == nil {
					wanted = fmt.Sprintf("%d value(s)", w.elems)
				}
				return fmt.Errorf("tflite session: %s %q has shape %v, the manifest implies %s (NHWC)", side.kind, t.name, t.dims, wanted)
			}
		}
	}
	return nil
}

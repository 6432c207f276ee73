package infer

import (
	"errors"
	"image"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
)

// fakeSession is a GraphSession whose Run fills every output with fill.
type fakeSession struct {
	in, out  map[string][]float32
	fill     float32
	runs     int
	closed   bool
	provider string
}

func (s *fakeSession) Input(name string) ([]float32, error)  { return lookupFake(s.in, name) }
func (s *fakeSession) Output(name string) ([]float32, error) { return lookupFake(s.out, name) }
func (s *fakeSession) Provider() string                      { return s.provider }
func (s *fakeSession) Close() error                          { s.closed = true; return nil }
func (s *fakeSession) Run() error {
	s.runs++
	for _, o := range s.out {
		for i := range o {
			o[i] = s.fill
		}
	}
	return nil
}

func lookupFake(m map[string][]float32, name string) ([]float32, error) {
	if d, ok := m[name]; ok {
		return d, nil
	}
	return nil, errors.New("no tensor " + name)
}

// TestEngineWithSessions runs the one Engine over sessions that are not
// ONNX Runtime's, as infer/tflite plugs in: the opener's errors and
// tensors that disagree with the manifest are start-up errors naming the
// graph, and Localize reads the session's outputs.
func TestEngineWithSessions(t *testing.T) {
	b := testBundle(t, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 8, NoAlign: true, Seed: 2})
	hw := b.Manifest.Input.Width * b.Manifest.Input.Height
	good := func() *fakeSession {
		return &fakeSession{
			in:   map[string][]float32{bundle.InputImage: make([]float32, 3*hw)},
			out:  map[string][]float32{bundle.OutputHeatmap: make([]float32, hw), bundle.OutputScore: make([]float32, 1)},
			fill: 0.25, provider: "fake",
		}
	}

	for _, tc := range []struct {
		name string
		open SessionOpener
		want string
	}{
		{"opener error", func(Graph) (GraphSession, error) { return nil, errors.New("no twin") },
			"engine: localize graph of bundle " + b.Dir + ": no twin"},
		{"no session", func(Graph) (GraphSession, error) { return nil, nil },
			"engine: localize graph of bundle " + b.Dir + ": the session opener returned no session"},
		{"short heatmap", func(Graph) (GraphSession, error) {
			s := good()
			s.out[bundle.OutputHeatmap] = make([]float32, hw/4)
			return s, nil
		}, `engine: localize graph of bundle ` + b.Dir + `: tensor "heatmap" has 256 values, the manifest implies 1024`},
		{"empty score", func(Graph) (GraphSession, error) {
			s := good()
			s.out[bundle.OutputScore] = nil
			return s, nil
		}, `tensor "score" has 0 values, the manifest implies 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewEngineWithSessions(b, tc.open)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}

	s := good()
	var opened []Graph
	e, err := NewEngineWithSessions(b, func(g Graph) (GraphSession, error) { opened = append(opened, g); return s, nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(opened) != 1 || opened[0] != GraphLocalize {
		t.Errorf("opened %v, want [localize] for a bundle without alignment", opened)
	}
	if e.Provider() != "fake" {
		t.Errorf("Provider = %q, want the session's", e.Provider())
	}
	hm := e.NewHeatmap()
	score, err := e.Localize(partFrame(), image.Rectangle{}, preprocess.Transform{}, hm)
	if err != nil {
		t.Fatal(err)
	}
	if s.runs != 1 || score != 0.25 || hm.Values[hw/2] != 0.25 {
		t.Errorf("runs %d, score %v, heatmap %v; want 1 run, the session's 0.25", s.runs, score, hm.Values[hw/2])
	}
	if err := e.Close(); err != nil || !s.closed {
		t.Errorf("Close = %v, session closed %v", err, s.closed)
	}
}

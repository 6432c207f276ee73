package infer

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/onnx"
)

// TestFuseNearestEntryGraphs checks which graphs the rewrite fuses: the
// int8 shared-entry comparison alone, and nothing else (float32 entries,
// entries per cell beside the shared ones, a graph of another kind), and
// that a fused graph has one NearestEntry node in place of the
// comparison's operators and imports its domain.
func TestFuseNearestEntryGraphs(t *testing.T) {
	const d, global = 8, 20
	entries := make([]float32, global*d)
	for i := range entries {
		entries[i] = float32(i%17) / 16
	}
	base := netdef.MemorySpec{Height: 32, Width: 48, Layers: []int{2, 3}, Stride: 8, D: d, Global: global, GlobalScale: 1.0 / 16}
	gh, gw := base.Grid()
	for _, c := range []struct {
		name      string
		int8      bool
		perCell   int
		wantFused bool
	}{
		{"int8 shared entries", true, 0, true},
		{"float32 shared entries", false, 0, false},
		{"int8 shared entries and 2 per cell", true, 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := base
			spec.GlobalInt8, spec.Entries = c.int8, c.perCell
			bank := make([]float32, gh*gw*c.perCell*d)
			model, err := netdef.MemoryDistanceGraph(spec, bank, entries)
			if err != nil {
				t.Fatal(err)
			}
			fused, ok, err := fuseNearestEntry(model)
			if err != nil {
				t.Fatal(err)
			}
			if ok != c.wantFused {
				t.Fatalf("fused = %v, want %v", ok, c.wantFused)
			}
			if !ok {
				if !bytes.Equal(fused, model) {
					t.Error("a graph left standard was changed")
				}
				return
			}
			info, err := onnx.ReadModelInfo(fused)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{nearestOpName: 1}
			for op, n := range info.Ops {
				if n != want[op] {
					t.Errorf("fused graph has %d %s nodes, want %d (ops %v)", n, op, want[op], info.Ops)
				}
			}
			if info.Opsets[nearestDomain] != nearestOpsetLevel || info.Opsets[""] != onnx.OpsetVersion {
				t.Errorf("fused graph imports %v, want the standard opset and %s", info.Opsets, nearestDomain)
			}
			if len(info.Outputs) != 1 || info.Outputs[0].Name != "distances" {
				t.Errorf("fused graph outputs %v, want distances", info.Outputs)
			}
		})
	}
	t.Run("an intermediate read outside", func(t *testing.T) {
		spec := base
		spec.GlobalInt8 = true
		model, err := netdef.MemoryDistanceGraph(spec, nil, entries)
		if err != nil {
			t.Fatal(err)
		}
		// Another node reads the quantised rows: the comparison cannot go.
		model = appendNode(t, model, "Identity", "DynamicQuantizeLinear", "extra")
		if _, ok, err := fuseNearestEntry(model); ok || err != nil {
			t.Errorf("fused %v, error %v; want neither", ok, err)
		}
	})
	t.Run("backbone graph", func(t *testing.T) {
		model, err := netdef.BackboneGraph(backbone.Random(1), 32, 32)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := fuseNearestEntry(model); ok || err != nil {
			t.Errorf("backbone graph: fused %v, error %v; want neither", ok, err)
		}
	})
}

// appendNode returns model with a node op added at the end of its graph,
// reading the first output of the first node of type from and writing to.
func appendNode(t *testing.T, model []byte, op, from, to string) []byte {
	t.Helper()
	graph, err := fieldBytes(model, pbModelGraph)
	if err != nil {
		t.Fatal(err)
	}
	var src string
	if err := walkFields(graph, func(num protowire.Number, b []byte) error {
		if num != pbGraphNode || src != "" {
			return nil
		}
		n, err := readGraphNode(b)
		if n.op == from {
			src = n.outputs[0]
		}
		return err
	}); err != nil || src == "" {
		t.Fatalf("no %s node (%v)", from, err)
	}
	var node []byte
	for _, f := range []struct {
		num protowire.Number
		s   string
	}{{pbNodeInput, src}, {pbNodeOutput, to}, {pbNodeOpType, op}} {
		node = protowire.AppendTag(node, f.num, protowire.BytesType)
		node = protowire.AppendString(node, f.s)
	}
	graph = protowire.AppendTag(append([]byte(nil), graph...), pbGraphNode, protowire.BytesType)
	graph = protowire.AppendBytes(graph, node)
	var out []byte
	if err := walkRaw(model, func(num protowire.Number, raw []byte) {
		if num != pbModelGraph {
			out = append(out, raw...)
			return
		}
		out = protowire.AppendTag(out, pbModelGraph, protowire.BytesType)
		out = protowire.AppendBytes(out, graph)
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFuseNearestEntryErrors checks that bytes that are no ONNX model are
// refused, with the rewrite named in the error.
func TestFuseNearestEntryErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		model []byte
		want  string
	}{
		{"truncated tag", []byte{0x80}, "nearest-entry rewrite: "},
		{"graph longer than the model", []byte{0x3a, 0x10, 0x0a}, "nearest-entry rewrite: "},
		{"node longer than the graph", []byte{0x3a, 0x02, 0x0a, 0x05}, "nearest-entry rewrite: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ok, err := fuseNearestEntry(c.model)
			if err == nil || ok || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("fused %v, error %v; want an error starting %q", ok, err, c.want)
			}
		})
	}
}

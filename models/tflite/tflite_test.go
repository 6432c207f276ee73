package tflite

import (
	"slices"
	"strings"
	"testing"
)

func tinyModel(t testing.TB) []byte {
	t.Helper()
	m := NewModel("tiny")
	x := m.Input("image", Float32, 1, 4, 6, 3)
	w := m.Const("w", []int{2, 1, 1, 3}, make([]float32, 6))
	b := m.Const("b", []int{2}, []float32{1, 2})
	y := m.Op(OpConv2D, Conv2D(1, Valid, true), []Tensor{x, w, b}, 1, 4, 6, 2)
	q := m.ConstInt8("q", []int{5, 2}, make([]int8, 10), 0.5)
	r := m.Op(OpReshape, Reshape(24, 2), []Tensor{y, m.ConstInt32("s", []int{2}, []int32{24, 2})}, 24, 2)
	z := m.Op(OpFullyConnected, FullyConnected(false, true), []Tensor{r, q, NoTensor}, 24, 5)
	s := m.Op(OpBatchMatMul, BatchMatMul(), []Tensor{z, z}, 24, 24)
	m.Output(m.Rename(s, "heatmap"), m.Rename(m.Op(OpReduceMax, Reducer(false), []Tensor{z}, 1), "score"))
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	info, err := ReadModelInfo(tinyModel(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != SchemaVersion || info.Subgraph != "tiny" {
		t.Errorf("version %d subgraph %q", info.Version, info.Subgraph)
	}
	in, ok := info.Input("image")
	if !ok || !slices.Equal(in.Shape, []int{1, 4, 6, 3}) || in.Type != Float32 || len(info.Inputs) != 1 {
		t.Errorf("inputs %+v", info.Inputs)
	}
	hm, ok := info.Output("heatmap")
	if !ok || !slices.Equal(hm.Shape, []int{24, 24}) {
		t.Errorf("outputs %+v", info.Outputs)
	}
	if _, ok := info.Output("score"); !ok || len(info.Outputs) != 2 {
		t.Errorf("outputs %+v", info.Outputs)
	}
	want := map[string]int{"CONV_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1, "BATCH_MATMUL": 1, "REDUCE_MAX": 1}
	for op, n := range want {
		if info.Ops[op] != n {
			t.Errorf("ops %v, want %v", info.Ops, want)
		}
	}
}

// Constant data is 16-byte aligned in the file.
func TestBufferAlignment(t *testing.T) {
	m := NewModel("a")
	x := m.Input("x", Float32, 3)
	c := m.Const("c", []int{3}, []float32{1.5, 2.5, 3.5})
	m.Output(m.Op(OpAdd, Add(), []Tensor{x, c}, 3))
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pat := []byte{0, 0, 0xc0, 0x3f, 0, 0, 0x20, 0x40} // 1.5, 2.5
	i := strings.Index(string(data), string(pat))
	if i < 0 || i%bufferAlign != 0 {
		t.Fatalf("constant at offset %d, want a multiple of %d", i, bufferAlign)
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(m *Model)
		want  string
	}{
		{"no output", func(m *Model) { m.Input("x", Float32, 1) }, `tflite model "t": 1 inputs and 0 outputs, want at least one of each`},
		{"short constant", func(m *Model) {
			x := m.Input("x", Float32, 2)
			m.Output(m.Op(OpAdd, Add(), []Tensor{x, m.Const("c", []int{2, 2}, []float32{1})}, 2))
		}, `tflite model "t": constant "c": 1 values for shape [2 2]`},
		{"missing input", func(m *Model) {
			m.Input("x", Float32, 2)
			m.Output(m.Op(OpAdd, Add(), []Tensor{7}, 2))
		}, `tflite model "t": ADD: input tensor 7 does not exist`},
		{"name taken", func(m *Model) {
			x := m.Input("x", Float32, 2)
			m.Output(m.Rename(m.Op(OpRelu, Options{}, []Tensor{x}, 2), "x"))
		}, `tflite model "t": rename to "x": the name is taken`},
		{"negative dim", func(m *Model) {
			x := m.Input("x", Float32, 2, -3)
			m.Output(m.Op(OpRelu, Options{}, []Tensor{x}, 2))
		}, `tflite model "t": tensor "x": negative dimension in [2 -1]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewModel("t")
			tc.build(m)
			_, err := m.Marshal()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadModelInfoHostile(t *testing.T) {
	good := tinyModel(t)
	trunc := func(n int) []byte { return good[:n] }
	badRoot := slices.Clone(good)
	badRoot[0], badRoot[1], badRoot[2], badRoot[3] = 0xff, 0xff, 0xff, 0x7f
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, `tflite model: not a TensorFlow Lite flatbuffer (no "TFL3" identifier)`},
		{"onnx", []byte("\x08\x08\x12\x08inspectd"), `not a TensorFlow Lite flatbuffer`},
		{"root outside", badRoot, `tflite model: version: offset outside the file`},
		{"truncated", trunc(len(good) / 2), `offset outside the file`},
		{"header only", trunc(8), `tflite model: version: offset outside the file`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadModelInfo(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

package onnx

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestMarshalRoundTrip(t *testing.T) {
	g := NewGraph("tiny")
	x := g.Input("image", Float, 1, 3, 32, 48)
	w := g.Initializer("w", []int64{4, 3, 1, 1}, make([]float32, 12))
	b := g.Initializer("w", []int64{4}, []float32{1, 2, 3, 4}) // name clash -> w_1
	if b != "w_1" {
		t.Fatalf("second initializer named %q, want w_1", b)
	}
	shape := g.InitializerInt64("shape", []int64{2}, []int64{1, -1})
	y := g.Op("Conv", []string{x, w, b}, AttrInts("kernel_shape", 1, 1))
	y = g.Rename(g.Op("Relu", []string{y}), "features")
	z := g.Op("Reshape", []string{y, shape})
	g.Output(y, Float, 1, 4, 32, 48)
	g.Output(z, Float, 1, 4*32*48)
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadModelInfo(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &ModelInfo{
		IRVersion:    8,
		Producer:     "inspectd",
		Opsets:       map[string]int64{"": 17},
		GraphName:    "tiny",
		Inputs:       []ValueInfo{{Name: "image", Type: Float, Dims: []int64{1, 3, 32, 48}}},
		Outputs:      []ValueInfo{{Name: "features", Type: Float, Dims: []int64{1, 4, 32, 48}}, {Name: "reshape", Type: Float, Dims: []int64{1, 6144}}},
		Initializers: []string{"w", "w_1", "shape"},
		Ops:          map[string]int{"Conv": 1, "Relu": 1, "Reshape": 1},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("ReadModelInfo:\n got %+v\nwant %+v", m, want)
	}
	if in, ok := m.Input("image"); !ok || in.Dims[3] != 48 {
		t.Fatalf("Input(image) = %+v, %v", in, ok)
	}
	if _, ok := m.Output("nope"); ok {
		t.Fatal("Output(nope) found")
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(g *Graph)
		want  string
	}{
		{"undefined input names node", func(g *Graph) {
			x := g.Input("x", Float, 1)
			y := g.Op("Add", []string{x, "ghost"})
			g.Output(y, Float, 1)
		}, `node Add (Add): input "ghost" is not defined`},
		{"use before definition", func(g *Graph) {
			x := g.Input("x", Float, 1)
			g.Node("Relu", []string{"later"}, []string{"early"})
			g.Node("Relu", []string{x}, []string{"later"})
			g.Output("early", Float, 1)
		}, `input "later" is not defined before it`},
		{"undefined output", func(g *Graph) {
			g.Input("x", Float, 1)
			g.Output("y", Float, 1)
		}, `output "y" is not produced`},
		{"duplicate value name", func(g *Graph) {
			x := g.Input("x", Float, 1)
			g.Node("Relu", []string{x}, []string{"x"})
			g.Output("x", Float, 1)
		}, `"x": name already used`},
		{"wrong initializer size", func(g *Graph) {
			x := g.Input("x", Float, 2)
			c := g.Initializer("c", []int64{2}, []float32{1})
			g.Output(g.Op("Add", []string{x, c}), Float, 2)
		}, `initializer "c": dims [2] need 2 values, got 1`},
		{"dynamic dim", func(g *Graph) {
			x := g.Input("x", Float, -1, 3)
			g.Output(g.Op("Relu", []string{x}), Float, 1, 3)
		}, `dim 0 is -1`},
		{"no outputs", func(g *Graph) {
			g.Input("x", Float, 1)
		}, `needs at least one input and one output`},
		{"rename unknown", func(g *Graph) {
			x := g.Input("x", Float, 1)
			g.Output(g.Rename("nothing", "y"), Float, 1)
			_ = x
		}, `no node produces "nothing"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGraph("bad")
			tc.build(g)
			_, err := g.Marshal()
			if err == nil {
				t.Fatalf("Marshal succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestOptionalEmptyInput(t *testing.T) {
	g := NewGraph("resize")
	x := g.Input("x", Float, 1, 1, 2, 2)
	sizes := g.InitializerInt64("sizes", []int64{4}, []int64{1, 1, 4, 4})
	y := g.Op("Resize", []string{x, "", "", sizes}, AttrString("mode", "linear"))
	g.Output(y, Float, 1, 1, 4, 4)
	if _, err := g.Marshal(); err != nil {
		t.Fatalf("empty optional inputs must be allowed: %v", err)
	}
}

func TestUnique(t *testing.T) {
	g := NewGraph("u")
	got := []string{g.Unique("a"), g.Unique("a"), g.Unique("a"), g.Unique("a_1"), g.Unique("")}
	want := []string{"a", "a_1", "a_2", "a_1_1", "v"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Unique = %v, want %v", got, want)
	}
}

// TestEncoding checks byte-exact encodings worked out by hand from onnx.proto.
func TestEncoding(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		// dims=2 (08 02), data_type=FLOAT (10 01), name="a" (42 01 61),
		// raw_data = 1.0f, -2.0f little-endian (4a 08 0000803f 000000c0).
		{"float tensor", encodeTensor(Tensor{Name: "a", Type: Float, Dims: []int64{2}, Float: []float32{1, -2}}),
			"0802" + "1001" + "420161" + "4a08" + "0000803f" + "000000c0"},
		// int64_data packed: 3, -1 (ten-byte varint).
		{"int64 tensor", encodeTensor(Tensor{Name: "s", Type: Int64, Dims: []int64{2}, Int64: []int64{3, -1}}),
			"0802" + "1007" + "420173" + "3a0b" + "03" + "ffffffffffffffffff01"},
		// data_type=INT8 (10 03), raw_data = -1, 2 as bytes (4a 02 ff02).
		{"int8 tensor", encodeTensor(Tensor{Name: "q", Type: Int8, Dims: []int64{2}, Bytes: []byte{0xff, 2}}),
			"0802" + "1003" + "420171" + "4a02" + "ff02"},
		// A rank-0 UINT8 (10 02): no dims, one raw byte.
		{"uint8 scalar", encodeTensor(Tensor{Name: "z", Type: Uint8, Bytes: []byte{0}}),
			"1002" + "42017a" + "4a01" + "00"},
		// name "k" (0a 01 6b), floats 0.5 (3d 0000003f), type FLOATS=6 (a0 01 06).
		{"floats attr", encodeAttr(AttrFloats("k", 0.5)), "0a016b" + "3d0000003f" + "a00106"},
		// ints 1,2 (40 01 40 02), type INTS=7.
		{"ints attr", encodeAttr(AttrInts("k", 1, 2)), "0a016b" + "4001" + "4002" + "a00107"},
		// f=1.5 (15 0000c03f), type FLOAT=1.
		{"float attr", encodeAttr(AttrFloat("k", 1.5)), "0a016b" + "150000c03f" + "a00101"},
		// i=5 (18 05), type INT=2.
		{"int attr", encodeAttr(AttrInt("k", 5)), "0a016b" + "1805" + "a00102"},
		// s="ab" (22 02 6162), type STRING=3.
		{"string attr", encodeAttr(AttrString("k", "ab")), "0a016b" + "22026162" + "a00103"},
		// name "x" (0a 01 78), type {tensor_type {elem_type 1, shape {dim{1} dim{3}}}}.
		{"value info", encodeValueInfo(ValueInfo{Name: "x", Type: Float, Dims: []int64{1, 3}}),
			"0a0178" + "120e" + "0a0c" + "0801" + "1208" + "0a020801" + "0a020803"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tc.got, want) {
				t.Fatalf("got  %x\nwant %x", tc.got, want)
			}
		})
	}
}

func TestTensorAttribute(t *testing.T) {
	g := NewGraph("const")
	x := g.Input("x", Float, 1)
	c := g.Op("Constant", nil, AttrTensor("value", Tensor{Name: "c", Type: Float, Dims: []int64{1}, Float: []float32{2}}))
	g.Output(g.Op("Mul", []string{x, c}), Float, 1)
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The serialized tensor must appear verbatim inside the model.
	if !bytes.Contains(data, encodeTensor(Tensor{Name: "c", Type: Float, Dims: []int64{1}, Float: []float32{2}})) {
		t.Fatal("tensor attribute not found in model bytes")
	}
}

func TestReadModelInfoErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}, "onnx model"},
		{"no graph", appendInt(nil, modelIRVersion, 8), "no graph"},
		{"truncated", protowire.AppendTag(nil, modelGraph, protowire.BytesType), "onnx model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadModelInfo(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want containing %q", err, tc.want)
			}
		})
	}
}

// TestInitializerInt8 stores int8 values as their two's-complement bytes
// and records a wrong element count.
func TestInitializerInt8(t *testing.T) {
	g := NewGraph("q")
	name := g.InitializerInt8("w", []int64{3}, []int8{-128, 0, 127})
	if got := g.initializers[0]; got.Name != name || got.Type != Int8 || string(got.Bytes) != "\x80\x00\x7f" {
		t.Errorf("initializer = %+v", got)
	}
	g.InitializerUint8("z", []int64{2}, []uint8{1})
	if len(g.errs) != 1 || !strings.Contains(g.errs[0].Error(), `initializer "z": dims [2] need 2 values, got 1`) {
		t.Errorf("errors %v, want the count of z's values named", g.errs)
	}
}

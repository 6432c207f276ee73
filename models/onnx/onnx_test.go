package onnx

import (
	"bytes"
	"encoding/hex"
	"math"
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

// TestReadInitializers reads back the initializers a Graph wrote: only the
// ones asked for, with their types and dims, float32 data decoded.
func TestReadInitializers(t *testing.T) {
	g := NewGraph("inits")
	x := g.Input("x", Float, 2, 3)
	w := g.Initializer("w", []int64{2, 3}, []float32{1, -2, 3.5, 0, 1e-7, -0.25})
	q := g.InitializerInt8("q", []int64{3}, []int8{-1, 0, 1})
	s := g.InitializerInt64("s", []int64{1}, []int64{6})
	g.Output(g.Op("Reshape", []string{g.Op("Mul", []string{x, w}), s}), Float, 6)
	g.Output(g.Op("Cast", []string{q}, AttrInt("to", int64(Float))), Float, 3)
	model, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	got, err := ReadInitializers(model, "w", "q", "absent")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d initializers, want w and q: %v", len(got), got)
	}
	wt := got["w"]
	if wt.Name != "w" || wt.Type != Float || !reflect.DeepEqual(wt.Dims, []int64{2, 3}) || wt.External {
		t.Fatalf("w = %+v", wt)
	}
	if v, err := wt.Floats(); err != nil || !reflect.DeepEqual(v, []float32{1, -2, 3.5, 0, 1e-7, -0.25}) {
		t.Fatalf("w.Floats() = %v, %v", v, err)
	}
	qt := got["q"]
	if qt.Type != Int8 || !reflect.DeepEqual(qt.Dims, []int64{3}) {
		t.Fatalf("q = %+v", qt)
	}
	if _, err := qt.Floats(); err == nil || err.Error() != "element type int8, want float32" {
		t.Fatalf("q.Floats() error %v", err)
	}

	all, err := ReadInitializers(model)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all["s"].Type != Int64 {
		t.Fatalf("ReadInitializers(model) = %v, want w, q and s", all)
	}

	if _, err := ReadInitializers(model[:len(model)-1]); err == nil {
		t.Fatal("a truncated model read without error")
	}
}

// TestStoredTensorFloats decodes float_data, packed and not, and refuses
// data that does not fit the dims or lies outside the file.
func TestStoredTensorFloats(t *testing.T) {
	tensor := func(fields func(b []byte) []byte, dims ...int64) []byte {
		var b []byte
		for _, d := range dims {
			b = appendInt(b, tensorDims, d)
		}
		b = appendInt(b, tensorDataType, int64(Float))
		b = appendString(b, tensorName, "t")
		return fields(b)
	}
	model := func(tensor []byte) []byte {
		return appendMessage(nil, modelGraph, appendMessage(nil, graphInitializer, tensor))
	}
	fixed := func(v ...float32) []byte {
		var b []byte
		for _, f := range v {
			b = protowire.AppendFixed32(b, math.Float32bits(f))
		}
		return b
	}
	tests := []struct {
		name    string
		tensor  []byte
		want    []float32
		wantErr string
	}{
		{"packed float_data", tensor(func(b []byte) []byte { return appendMessage(b, tensorFloatData, fixed(1, 2, 3)) }, 3), []float32{1, 2, 3}, ""},
		{"unpacked float_data", tensor(func(b []byte) []byte {
			for _, f := range []float32{4, 5} {
				b = protowire.AppendTag(b, tensorFloatData, protowire.Fixed32Type)
				b = protowire.AppendFixed32(b, math.Float32bits(f))
			}
			return b
		}, 1, 2), []float32{4, 5}, ""},
		{"empty", tensor(func(b []byte) []byte { return b }, 0), nil, ""},
		{"too few values", tensor(func(b []byte) []byte { return appendMessage(b, tensorFloatData, fixed(1)) }, 2), nil, "1 values for shape [2] (2 values)"},
		{"raw_data of the wrong size", tensor(func(b []byte) []byte { return appendMessage(b, tensorRawData, make([]byte, 7)) }, 2), nil, "7 bytes of data for shape [2] (2 values)"},
		{"no data", tensor(func(b []byte) []byte { return b }, 2), nil, "no data for shape [2]"},
		{"negative dim", tensor(func(b []byte) []byte { return b }, -1), nil, "shape [-1] is not a plausible constant"},
		{"external", tensor(func(b []byte) []byte { return appendInt(b, tensorDataLocation, 1) }, 2), nil, ErrExternalData.Error()},
	}
	for _, tc := range tests {
		got, err := ReadInitializers(model(tc.tensor), "t")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		v, err := got["t"].Floats()
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(v, tc.want) {
			t.Errorf("%s: Floats() = %v, %v, want %v", tc.name, v, err, tc.want)
		}
	}
}

// Package onnx writes and inspects ONNX models without generated protobuf code.
//
// The writer encodes the small subset of onnx.proto that inspectd's network
// definitions need, by hand, with google.golang.org/protobuf/encoding/protowire:
// ModelProto (ir_version 8, one opset_import for the default domain at version 17,
// producer "inspectd"), GraphProto, NodeProto, TensorProto (float32 as little-endian
// raw_data, int64 as int64_data), ValueInfoProto with fixed dimensions and
// AttributeProto of kinds int, ints, float, floats, string and tensor.
//
// Graphs are built with a [Graph]:
//
//	g := onnx.NewGraph("localize")
//	x := g.Input("image", onnx.Float, 1, 3, 256, 256)
//	w := g.Initializer("w", []int64{8, 3, 3, 3}, weights)
//	y := g.Op("Conv", []string{x, w}, onnx.AttrInts("pads", 1, 1, 1, 1))
//	g.Output(g.Rename(y, "features"), onnx.Float, 1, 8, 256, 256)
//	model, err := g.Marshal()
//
// The reader ([ReadModelInfo]) decodes only what a loader needs to check a model
// without cgo: opsets, graph inputs and outputs with their dimensions, initializer
// names and the operator types used. [ReadInitializers] finds named initializers
// with their element types and dims, and decodes float32 data on demand.
package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Fixed model header values written by [Graph.Marshal].
const (
	// IRVersion is the ONNX IR version written into every model.
	IRVersion = 8
	// OpsetVersion is the version of the default ("ai.onnx") operator set imported.
	OpsetVersion = 17
	// Producer is the producer_name written into every model.
	Producer = "inspectd"
)

// ElemType is an ONNX TensorProto.DataType.
type ElemType int32

// Element types used by inspectd graphs.
const (
	// Float is TensorProto.FLOAT (float32).
	Float ElemType = 1
	// Uint8 is TensorProto.UINT8.
	Uint8 ElemType = 2
	// Int8 is TensorProto.INT8.
	Int8 ElemType = 3
	// Int64 is TensorProto.INT64.
	Int64 ElemType = 7
)

// String returns the ONNX name of the element type.
func (t ElemType) String() string {
	switch t {
	case Float:
		return "float32"
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int64:
		return "int64"
	default:
		return "elem_type(" + strconv.Itoa(int(t)) + ")"
	}
}

// AttrType is an ONNX AttributeProto.AttributeType.
type AttrType int32

// Attribute kinds supported by the writer.
const (
	AttrTypeFloat   AttrType = 1
	AttrTypeInt     AttrType = 2
	AttrTypeString  AttrType = 3
	AttrTypeTensor  AttrType = 4
	AttrTypeFloats  AttrType = 6
	AttrTypeInts    AttrType = 7
	attrTypeInvalid AttrType = 0
)

// Tensor is a constant tensor: an initializer or a tensor-valued attribute.
// Exactly one of Float, Int64 and Bytes holds the data, matching Type
// (Bytes for Uint8 and Int8, one byte per element, two's complement for Int8).
type Tensor struct {
	Name  string
	Type  ElemType
	Dims  []int64
	Float []float32
	Int64 []int64
	Bytes []byte
}

// Attribute is one node attribute. Build it with AttrInt, AttrInts, AttrFloat,
// AttrFloats, AttrString or AttrTensor.
type Attribute struct {
	Name   string
	Type   AttrType
	Int    int64
	Ints   []int64
	Float  float32
	Floats []float32
	String string
	Tensor *Tensor
}

// AttrInt returns an INT attribute.
func AttrInt(name string, v int64) Attribute {
	return Attribute{Name: name, Type: AttrTypeInt, Int: v}
}

// AttrInts returns an INTS attribute.
func AttrInts(name string, v ...int64) Attribute {
	return Attribute{Name: name, Type: AttrTypeInts, Ints: append([]int64(nil), v...)}
}

// AttrFloat returns a FLOAT attribute.
func AttrFloat(name string, v float32) Attribute {
	return Attribute{Name: name, Type: AttrTypeFloat, Float: v}
}

// AttrFloats returns a FLOATS attribute.
func AttrFloats(name string, v ...float32) Attribute {
	return Attribute{Name: name, Type: AttrTypeFloats, Floats: append([]float32(nil), v...)}
}

// AttrString returns a STRING attribute.
func AttrString(name, v string) Attribute {
	return Attribute{Name: name, Type: AttrTypeString, String: v}
}

// AttrTensor returns a TENSOR attribute (as used by the Constant operator).
func AttrTensor(name string, t Tensor) Attribute {
	return Attribute{Name: name, Type: AttrTypeTensor, Tensor: &t}
}

// ValueInfo names a graph input or output with its element type and fixed dims.
type ValueInfo struct {
	Name string
	Type ElemType
	Dims []int64
}

// Node is one operator application in a graph.
type Node struct {
	Name    string
	OpType  string
	Inputs  []string
	Outputs []string
	Attrs   []Attribute
}

// Graph builds an ONNX graph. The zero value is not usable; call NewGraph.
// Builder methods never fail: problems are recorded and reported by Marshal.
type Graph struct {
	name         string
	inputs       []ValueInfo
	outputs      []ValueInfo
	initializers []Tensor
	nodes        []Node
	used         map[string]bool // every value and node name taken so far
	counters     map[string]int
	errs         []error
}

// NewGraph returns an empty graph with the given name.
func NewGraph(name string) *Graph {
	return &Graph{name: name, used: map[string]bool{}, counters: map[string]int{}}
}

// Unique returns a name starting with prefix that no value or node of the graph
// uses yet, and reserves it.
func (g *Graph) Unique(prefix string) string {
	if prefix == "" {
		prefix = "v"
	}
	if !g.used[prefix] {
		g.used[prefix] = true
		return prefix
	}
	for {
		g.counters[prefix]++
		n := prefix + "_" + strconv.Itoa(g.counters[prefix])
		if !g.used[n] {
			g.used[n] = true
			return n
		}
	}
}

func (g *Graph) claim(name, what string) {
	if name == "" {
		g.errs = append(g.errs, fmt.Errorf("%s with an empty name", what))
		return
	}
	if g.used[name] {
		g.errs = append(g.errs, fmt.Errorf("%s %q: name already used in graph %q", what, name, g.name))
		return
	}
	g.used[name] = true
}

// Input declares a graph input with fixed dims and returns its name.
func (g *Graph) Input(name string, t ElemType, dims ...int64) string {
	g.claim(name, "input")
	g.inputs = append(g.inputs, ValueInfo{Name: name, Type: t, Dims: append([]int64(nil), dims...)})
	return name
}

// Output declares an existing value (a node output, input or initializer) as a
// graph output with the given element type and fixed dims.
func (g *Graph) Output(name string, t ElemType, dims ...int64) {
	g.outputs = append(g.outputs, ValueInfo{Name: name, Type: t, Dims: append([]int64(nil), dims...)})
}

// Initializer adds a float32 constant. If name is taken a unique variant is used;
// the returned name is the one to reference. len(data) must equal the product of dims.
func (g *Graph) Initializer(name string, dims []int64, data []float32) string {
	name = g.Unique(name)
	if n := numel(dims); n != int64(len(data)) {
		g.errs = append(g.errs, fmt.Errorf("initializer %q: dims %v need %d values, got %d", name, dims, n, len(data)))
	}
	g.initializers = append(g.initializers, Tensor{Name: name, Type: Float, Dims: append([]int64(nil), dims...), Float: data})
	return name
}

// InitializerInt64 adds an int64 constant, like Initializer.
func (g *Graph) InitializerInt64(name string, dims []int64, data []int64) string {
	name = g.Unique(name)
	if n := numel(dims); n != int64(len(data)) {
		g.errs = append(g.errs, fmt.Errorf("initializer %q: dims %v need %d values, got %d", name, dims, n, len(data)))
	}
	g.initializers = append(g.initializers, Tensor{Name: name, Type: Int64, Dims: append([]int64(nil), dims...), Int64: data})
	return name
}

// InitializerInt8 adds an int8 constant, like Initializer.
func (g *Graph) InitializerInt8(name string, dims []int64, data []int8) string {
	raw := make([]byte, len(data))
	for i, v := range data {
		raw[i] = byte(v)
	}
	return g.initializerBytes(name, Int8, dims, raw)
}

// InitializerUint8 adds a uint8 constant, like Initializer.
func (g *Graph) InitializerUint8(name string, dims []int64, data []uint8) string {
	return g.initializerBytes(name, Uint8, dims, append([]byte(nil), data...))
}

func (g *Graph) initializerBytes(name string, t ElemType, dims []int64, raw []byte) string {
	name = g.Unique(name)
	if n := numel(dims); n != int64(len(raw)) {
		g.errs = append(g.errs, fmt.Errorf("initializer %q: dims %v need %d values, got %d", name, dims, n, len(raw)))
	}
	g.initializers = append(g.initializers, Tensor{Name: name, Type: t, Dims: append([]int64(nil), dims...), Bytes: raw})
	return name
}

// Node appends an operator. Empty strings in outputs are replaced by generated
// unique names; the actual output names are returned in order. An empty string
// in inputs denotes an omitted optional input.
func (g *Graph) Node(opType string, inputs, outputs []string, attrs ...Attribute) []string {
	outs := make([]string, len(outputs))
	for i, o := range outputs {
		if o == "" {
			outs[i] = g.Unique(lowerOp(opType))
			continue
		}
		g.claim(o, "output of "+opType+" node")
		outs[i] = o
	}
	g.nodes = append(g.nodes, Node{
		Name:    g.Unique(opType),
		OpType:  opType,
		Inputs:  append([]string(nil), inputs...),
		Outputs: outs,
		Attrs:   attrs,
	})
	return outs
}

// Op appends an operator with a single, generated output and returns its name.
func (g *Graph) Op(opType string, inputs []string, attrs ...Attribute) string {
	return g.Node(opType, inputs, []string{""}, attrs...)[0]
}

// Rename renames the value produced by the most recent node that has it as an
// output (typically to give a graph output its public name) and returns newName.
// Later references must use newName.
func (g *Graph) Rename(value, newName string) string {
	for i := len(g.nodes) - 1; i >= 0; i-- {
		for j, o := range g.nodes[i].Outputs {
			if o == value {
				g.claim(newName, "renamed value")
				delete(g.used, value)
				g.nodes[i].Outputs[j] = newName
				return newName
			}
		}
	}
	g.errs = append(g.errs, fmt.Errorf("rename %q to %q: no node produces %q", value, newName, value))
	return newName
}

// Nodes returns the nodes added so far (read-only view).
func (g *Graph) Nodes() []Node { return g.nodes }

func lowerOp(op string) string {
	b := []byte(op)
	if len(b) > 0 && b[0] >= 'A' && b[0] <= 'Z' {
		b[0] += 'a' - 'A'
	}
	return string(b)
}

func numel(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// Validate checks the graph: recorded builder errors, every node input defined
// (graph input, initializer or output of an earlier node), every graph output
// defined, positive dims, and at least one input and output.
func (g *Graph) Validate() error {
	if len(g.errs) > 0 {
		return fmt.Errorf("onnx graph %q: %w", g.name, errors.Join(g.errs...))
	}
	defined := map[string]bool{}
	for _, in := range g.inputs {
		defined[in.Name] = true
		if err := checkDims(in); err != nil {
			return fmt.Errorf("onnx graph %q: input %w", g.name, err)
		}
	}
	for _, t := range g.initializers {
		defined[t.Name] = true
	}
	for _, n := range g.nodes {
		for _, in := range n.Inputs {
			if in != "" && !defined[in] {
				return fmt.Errorf("onnx graph %q: node %s (%s): input %q is not defined before it", g.name, n.Name, n.OpType, in)
			}
		}
		for _, a := range n.Attrs {
			if a.Type == attrTypeInvalid || a.Name == "" {
				return fmt.Errorf("onnx graph %q: node %s (%s): invalid attribute %q", g.name, n.Name, n.OpType, a.Name)
			}
		}
		for _, o := range n.Outputs {
			defined[o] = true
		}
	}
	if len(g.inputs) == 0 || len(g.outputs) == 0 {
		return fmt.Errorf("onnx graph %q: needs at least one input and one output (have %d and %d)", g.name, len(g.inputs), len(g.outputs))
	}
	seen := map[string]bool{}
	for _, o := range g.outputs {
		if !defined[o.Name] {
			return fmt.Errorf("onnx graph %q: output %q is not produced by any node, input or initializer", g.name, o.Name)
		}
		if seen[o.Name] {
			return fmt.Errorf("onnx graph %q: output %q declared twice", g.name, o.Name)
		}
		seen[o.Name] = true
		if err := checkDims(o); err != nil {
			return fmt.Errorf("onnx graph %q: output %w", g.name, err)
		}
	}
	return nil
}

func checkDims(v ValueInfo) error {
	for i, d := range v.Dims {
		if d <= 0 {
			return fmt.Errorf("%q: dim %d is %d, want a fixed positive size", v.Name, i, d)
		}
	}
	return nil
}

// Field numbers of onnx.proto.
const (
	modelIRVersion   = 1
	modelProducer    = 2
	modelGraph       = 7
	modelOpsetImport = 8

	opsetDomain  = 1
	opsetVersion = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5

	attrName   = 1
	attrF      = 2
	attrI      = 3
	attrS      = 4
	attrT      = 5
	attrFloats = 7
	attrInts   = 8
	attrType   = 20

	tensorDims         = 1
	tensorDataType     = 2
	tensorFloatData    = 4
	tensorInt64Data    = 7
	tensorName         = 8
	tensorRawData      = 9
	tensorDataLocation = 14

	valueInfoName = 1
	valueInfoType = 2

	typeTensorType = 1
	ttElemType     = 1
	ttShape        = 2
	shapeDim       = 1
	dimValue       = 1
	dimParam       = 2
)

// Marshal validates the graph and encodes it as a complete ModelProto.
func (g *Graph) Marshal() ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	var gb []byte
	for _, n := range g.nodes {
		gb = appendMessage(gb, graphNode, encodeNode(n))
	}
	gb = appendString(gb, graphName, g.name)
	for _, t := range g.initializers {
		gb = appendMessage(gb, graphInitializer, encodeTensor(t))
	}
	for _, v := range g.inputs {
		gb = appendMessage(gb, graphInput, encodeValueInfo(v))
	}
	for _, v := range g.outputs {
		gb = appendMessage(gb, graphOutput, encodeValueInfo(v))
	}

	var mb []byte
	mb = protowire.AppendTag(mb, modelIRVersion, protowire.VarintType)
	mb = protowire.AppendVarint(mb, IRVersion)
	mb = appendString(mb, modelProducer, Producer)
	mb = appendMessage(mb, modelGraph, gb)
	var ob []byte
	ob = appendString(ob, opsetDomain, "")
	ob = protowire.AppendTag(ob, opsetVersion, protowire.VarintType)
	ob = protowire.AppendVarint(ob, OpsetVersion)
	mb = appendMessage(mb, modelOpsetImport, ob)
	return mb, nil
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func encodeNode(n Node) []byte {
	var b []byte
	for _, in := range n.Inputs {
		b = appendString(b, nodeInput, in)
	}
	for _, o := range n.Outputs {
		b = appendString(b, nodeOutput, o)
	}
	b = appendString(b, nodeName, n.Name)
	b = appendString(b, nodeOpType, n.OpType)
	for _, a := range n.Attrs {
		b = appendMessage(b, nodeAttribute, encodeAttr(a))
	}
	return b
}

func encodeAttr(a Attribute) []byte {
	var b []byte
	b = appendString(b, attrName, a.Name)
	switch a.Type {
	case AttrTypeFloat:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.Float))
	case AttrTypeInt:
		b = appendInt(b, attrI, a.Int)
	case AttrTypeString:
		b = appendString(b, attrS, a.String)
	case AttrTypeTensor:
		b = appendMessage(b, attrT, encodeTensor(*a.Tensor))
	case AttrTypeFloats:
		for _, f := range a.Floats {
			b = protowire.AppendTag(b, attrFloats, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, math.Float32bits(f))
		}
	case AttrTypeInts:
		for _, v := range a.Ints {
			b = appendInt(b, attrInts, v)
		}
	}
	return appendInt(b, attrType, int64(a.Type))
}

func encodeTensor(t Tensor) []byte {
	var b []byte
	for _, d := range t.Dims {
		b = appendInt(b, tensorDims, d)
	}
	b = appendInt(b, tensorDataType, int64(t.Type))
	b = appendString(b, tensorName, t.Name)
	switch t.Type {
	case Float:
		raw := make([]byte, 4*len(t.Float))
		for i, f := range t.Float {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
		b = appendMessage(b, tensorRawData, raw)
	case Int64:
		var packed []byte
		for _, v := range t.Int64 {
			packed = protowire.AppendVarint(packed, uint64(v))
		}
		b = appendMessage(b, tensorInt64Data, packed)
	case Uint8, Int8:
		b = appendMessage(b, tensorRawData, t.Bytes)
	}
	return b
}

func encodeValueInfo(v ValueInfo) []byte {
	var shape []byte
	for _, d := range v.Dims {
		shape = appendMessage(shape, shapeDim, appendInt(nil, dimValue, d))
	}
	var tt []byte
	tt = appendInt(tt, ttElemType, int64(v.Type))
	tt = appendMessage(tt, ttShape, shape)
	var b []byte
	b = appendString(b, valueInfoName, v.Name)
	b = appendMessage(b, valueInfoType, appendMessage(nil, typeTensorType, tt))
	return b
}

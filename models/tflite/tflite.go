// Package tflite writes and inspects TensorFlow Lite models without
// generated flatbuffers code.
//
// The writer encodes the subset of TensorFlow Lite's schema.fbs (version 3)
// that inspectd's network definitions need, by hand, with the
// github.com/google/flatbuffers Go runtime: one subgraph, fixed shapes,
// float32 activations, constant tensors of float32, int32 and int8 (with a
// per-tensor scale: the weights of a hybrid FULLY_CONNECTED) and the builtin
// operators listed in [Op]. Constant data lives in the model's buffers,
// aligned to 16 bytes; buffer 0 is the empty sentinel the format requires.
//
// Graphs are built with a [Model]:
//
//	m := tflite.NewModel("localize")
//	x := m.Input("image", tflite.Float32, 1, 256, 256, 3)
//	w := m.Const("w", []int{8, 1, 1, 3}, weights)
//	b := m.Const("b", []int{8}, bias)
//	y := m.Op(tflite.OpConv2D, tflite.Conv2D(1, tflite.Valid, false), []tflite.Tensor{x, w, b}, 1, 256, 256, 8)
//	m.Output(m.Rename(y, "features"))
//	model, err := m.Marshal()
//
// The reader ([ReadModelInfo]) decodes what a loader needs to check a model:
// the first subgraph's inputs and outputs with names, shapes and types, and
// the operators used. It checks every offset it follows, so any bytes give a
// result or an error, never a panic.
package tflite

import (
	"errors"
	"fmt"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"
)

// Tensor is a tensor of a [Model] (its index in the subgraph); NoTensor
// marks an omitted optional operator input.
type Tensor int

// NoTensor is an omitted optional input (written as -1).
const NoTensor Tensor = -1

// bufferAlign is the alignment of constant data in the file: what the
// interpreters' kernels expect of memory-mapped weights.
const bufferAlign = 16

// MaxModelBytes is the largest model the writer produces: flatbuffers
// offsets are 32-bit signed.
const MaxModelBytes = math.MaxInt32

type tensor struct {
	name   string
	shape  []int32
	typ    TensorType
	buffer int
	scale  []float32
	zero   []int64
}

type operator struct {
	opcode  int
	in, out []Tensor
	opts    Options
}

// Model is a TensorFlow Lite model under construction: one subgraph. The
// zero value is not usable; use [NewModel]. Errors (a bad shape or tensor)
// are kept and returned by [Model.Marshal].
type Model struct {
	name    string
	tensors []tensor
	buffers [][]byte
	opcodes []Op
	opIndex map[Op]int
	ops     []operator
	inputs  []Tensor
	outputs []Tensor
	names   map[string]bool
	err     error
}

// NewModel returns an empty model whose subgraph has the given name.
func NewModel(name string) *Model {
	return &Model{name: name, buffers: [][]byte{nil}, opIndex: map[Op]int{}, names: map[string]bool{}}
}

func (m *Model) fail(format string, args ...any) {
	if m.err == nil {
		m.err = fmt.Errorf("tflite model %q: "+format, append([]any{m.name}, args...)...)
	}
}

// unique returns name, or name with a numeric suffix when it is taken.
func (m *Model) unique(name string) string {
	n := name
	for i := 1; m.names[n]; i++ {
		n = fmt.Sprintf("%s_%d", name, i)
	}
	m.names[n] = true
	return n
}

func (m *Model) add(t tensor) Tensor {
	for _, d := range t.shape {
		if d < 0 {
			m.fail("tensor %q: negative dimension in %v", t.name, t.shape)
		}
	}
	t.name = m.unique(t.name)
	m.tensors = append(m.tensors, t)
	return Tensor(len(m.tensors) - 1)
}

func dims(shape []int) []int32 {
	d := make([]int32, len(shape))
	for i, v := range shape {
		d[i] = int32(min(max(v, -1), math.MaxInt32))
	}
	return d
}

func elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Input declares a graph input.
func (m *Model) Input(name string, typ TensorType, shape ...int) Tensor {
	t := m.add(tensor{name: name, shape: dims(shape), typ: typ})
	m.inputs = append(m.inputs, t)
	return t
}

func (m *Model) constant(name string, shape []int, typ TensorType, data []byte, n int) Tensor {
	if elements(shape) != n {
		m.fail("constant %q: %d values for shape %v", name, n, shape)
	}
	m.buffers = append(m.buffers, data)
	return m.add(tensor{name: name, shape: dims(shape), typ: typ, buffer: len(m.buffers) - 1})
}

// Const declares a float32 constant (row-major data).
func (m *Model) Const(name string, shape []int, data []float32) Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		putUint32(b[4*i:], math.Float32bits(v))
	}
	return m.constant(name, shape, Float32, b, len(data))
}

// ConstInt32 declares an int32 constant (shapes, axes, paddings).
func (m *Model) ConstInt32(name string, shape []int, data []int32) Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		putUint32(b[4*i:], uint32(v))
	}
	return m.constant(name, shape, Int32, b, len(data))
}

// ConstInt8 declares a symmetrically quantised int8 constant: value =
// scale × data (zero point 0, one scale for the tensor), as the weights of
// a hybrid FULLY_CONNECTED.
func (m *Model) ConstInt8(name string, shape []int, data []int8, scale float32) Tensor {
	b := make([]byte, len(data))
	for i, v := range data {
		b[i] = byte(v)
	}
	t := m.constant(name, shape, Int8, b, len(data))
	m.tensors[t].scale = []float32{scale}
	m.tensors[t].zero = []int64{0}
	return t
}

// Op appends an operator on the inputs and returns its one float32 output
// of the given shape, named after the operator until renamed.
func (m *Model) Op(op Op, opts Options, in []Tensor, shape ...int) Tensor {
	for _, t := range in {
		if t != NoTensor && (t < 0 || int(t) >= len(m.tensors)) {
			m.fail("%s: input tensor %d does not exist", op, t)
			return NoTensor
		}
	}
	idx, ok := m.opIndex[op]
	if !ok {
		idx = len(m.opcodes)
		m.opIndex[op] = idx
		m.opcodes = append(m.opcodes, op)
	}
	out := m.add(tensor{name: fmt.Sprintf("%s_%d", lower(op.String()), len(m.ops)), shape: dims(shape), typ: Float32})
	m.ops = append(m.ops, operator{opcode: idx, in: append([]Tensor(nil), in...), out: []Tensor{out}, opts: opts})
	return out
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Shape returns a tensor's shape.
func (m *Model) Shape(t Tensor) []int {
	if t < 0 || int(t) >= len(m.tensors) {
		return nil
	}
	s := make([]int, len(m.tensors[t].shape))
	for i, d := range m.tensors[t].shape {
		s[i] = int(d)
	}
	return s
}

// Rename gives tensor t the name (which must be free) and returns t.
func (m *Model) Rename(t Tensor, name string) Tensor {
	if t < 0 || int(t) >= len(m.tensors) {
		m.fail("rename to %q: tensor %d does not exist", name, t)
		return t
	}
	if m.names[name] {
		m.fail("rename to %q: the name is taken", name)
		return t
	}
	delete(m.names, m.tensors[t].name)
	m.names[name] = true
	m.tensors[t].name = name
	return t
}

// Output declares graph outputs.
func (m *Model) Output(ts ...Tensor) {
	for _, t := range ts {
		if t < 0 || int(t) >= len(m.tensors) {
			m.fail("output tensor %d does not exist", t)
			continue
		}
		m.outputs = append(m.outputs, t)
	}
}

// Marshal serialises the model (file identifier "TFL3").
func (m *Model) Marshal() ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	if len(m.inputs) == 0 || len(m.outputs) == 0 {
		return nil, fmt.Errorf("tflite model %q: %d inputs and %d outputs, want at least one of each", m.name, len(m.inputs), len(m.outputs))
	}
	size := 1 << 10
	for _, b := range m.buffers {
		size += len(b) + bufferAlign + 16
	}
	if size > MaxModelBytes {
		return nil, fmt.Errorf("tflite model %q: %d bytes of constants, more than a flatbuffer holds", m.name, size)
	}
	b := flatbuffers.NewBuilder(size + 64*len(m.tensors) + 64*len(m.ops))

	// Buffers first (the bulk of the file), each data vector 16-aligned.
	bufs := make([]flatbuffers.UOffsetT, len(m.buffers))
	for i := len(m.buffers) - 1; i >= 0; i-- {
		var data flatbuffers.UOffsetT
		if len(m.buffers[i]) > 0 {
			b.Prep(bufferAlign, len(m.buffers[i]))
			data = b.CreateByteVector(m.buffers[i])
		}
		b.StartObject(bufferFields)
		if data != 0 {
			b.PrependUOffsetTSlot(bufferData, data, 0)
		}
		bufs[i] = b.EndObject()
	}
	buffers := tableVector(b, bufs)

	tensors := make([]flatbuffers.UOffsetT, len(m.tensors))
	for i, t := range m.tensors {
		name := b.CreateString(t.name)
		shape := int32Vector(b, t.shape)
		var quant flatbuffers.UOffsetT
		if len(t.scale) > 0 {
			b.StartVector(4, len(t.scale), 4)
			for j := len(t.scale) - 1; j >= 0; j-- {
				b.PrependFloat32(t.scale[j])
			}
			scale := b.EndVector(len(t.scale))
			b.StartVector(8, len(t.zero), 8)
			for j := len(t.zero) - 1; j >= 0; j-- {
				b.PrependInt64(t.zero[j])
			}
			zero := b.EndVector(len(t.zero))
			b.StartObject(quantFields)
			b.PrependUOffsetTSlot(quantScale, scale, 0)
			b.PrependUOffsetTSlot(quantZeroPoint, zero, 0)
			quant = b.EndObject()
		}
		b.StartObject(tensorFields)
		b.PrependUOffsetTSlot(tensorShape, shape, 0)
		b.PrependInt8Slot(tensorType, int8(t.typ), -1) // always written
		b.PrependUint32Slot(tensorBuffer, uint32(t.buffer), 0)
		b.PrependUOffsetTSlot(tensorName, name, 0)
		if quant != 0 {
			b.PrependUOffsetTSlot(tensorQuantization, quant, 0)
		}
		tensors[i] = b.EndObject()
	}
	tensorVec := tableVector(b, tensors)

	ops := make([]flatbuffers.UOffsetT, len(m.ops))
	for i, op := range m.ops {
		in := int32Vector(b, tensorIDs(op.in))
		out := int32Vector(b, tensorIDs(op.out))
		var opts flatbuffers.UOffsetT
		if op.opts.write != nil {
			opts = op.opts.write(b)
		}
		b.StartObject(operatorFields)
		b.PrependUint32Slot(operatorOpcodeIndex, uint32(op.opcode), math.MaxUint32) // always written
		b.PrependUOffsetTSlot(operatorInputs, in, 0)
		b.PrependUOffsetTSlot(operatorOutputs, out, 0)
		if opts != 0 {
			b.PrependByteSlot(operatorBuiltinOptionsType, op.opts.typ, 0)
			b.PrependUOffsetTSlot(operatorBuiltinOptions, opts, 0)
		}
		ops[i] = b.EndObject()
	}
	opVec := tableVector(b, ops)

	name := b.CreateString(m.name)
	inputs := int32Vector(b, tensorIDs(m.inputs))
	outputs := int32Vector(b, tensorIDs(m.outputs))
	b.StartObject(subgraphFields)
	b.PrependUOffsetTSlot(subgraphTensors, tensorVec, 0)
	b.PrependUOffsetTSlot(subgraphInputs, inputs, 0)
	b.PrependUOffsetTSlot(subgraphOutputs, outputs, 0)
	b.PrependUOffsetTSlot(subgraphOperators, opVec, 0)
	b.PrependUOffsetTSlot(subgraphName, name, 0)
	subgraphs := tableVector(b, []flatbuffers.UOffsetT{b.EndObject()})

	codes := make([]flatbuffers.UOffsetT, len(m.opcodes))
	for i, op := range m.opcodes {
		b.StartObject(operatorCodeFields)
		// deprecated_builtin_code is a byte: codes ≥ 127 are written as
		// 127 (PLACEHOLDER_FOR_GREATER_OP_CODES) and read from builtin_code.
		b.PrependInt8Slot(operatorCodeDeprBC, int8(min(op, 127)), -1)
		b.PrependInt32Slot(operatorCodeVersion, 1, 0)
		b.PrependInt32Slot(operatorCodeBuiltin, int32(op), -1)
		codes[i] = b.EndObject()
	}
	codeVec := tableVector(b, codes)

	desc := b.CreateString("inspectd")
	b.StartObject(modelNumFields)
	b.PrependUint32Slot(modelVersion, SchemaVersion, 0)
	b.PrependUOffsetTSlot(modelOperatorCodes, codeVec, 0)
	b.PrependUOffsetTSlot(modelSubgraphs, subgraphs, 0)
	b.PrependUOffsetTSlot(modelDescription, desc, 0)
	b.PrependUOffsetTSlot(modelBuffers, buffers, 0)
	b.FinishWithFileIdentifier(b.EndObject(), []byte(FileIdentifier))
	out := b.FinishedBytes()
	if len(out) > MaxModelBytes {
		return nil, errors.New("tflite model: larger than a flatbuffer holds")
	}
	return out, nil
}

func tensorIDs(ts []Tensor) []int32 {
	d := make([]int32, len(ts))
	for i, t := range ts {
		d[i] = int32(t)
	}
	return d
}

func int32Vector(b *flatbuffers.Builder, v []int32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt32(v[i])
	}
	return b.EndVector(len(v))
}

func tableVector(b *flatbuffers.Builder, offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// Options are an operator's builtin options (the schema's union
// BuiltinOptions); the zero value writes none (RELU, SQRT).
type Options struct {
	typ   byte
	write func(b *flatbuffers.Builder) flatbuffers.UOffsetT
}

// Padding is the schema's enum Padding.
type Padding byte

// Paddings: Same pads as TensorFlow does (asymmetric at stride 2, unlike
// PyTorch: pad explicitly with OpPad and use Valid to match it).
const (
	Same  Padding = padSame
	Valid Padding = padValid
)

func activation(relu bool) int8 {
	if relu {
		return activationRelu
	}
	return activationNone
}

func table(typ byte, fields int, body func(b *flatbuffers.Builder)) Options {
	return Options{typ: typ, write: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
		b.StartObject(fields)
		body(b)
		return b.EndObject()
	}}
}

// Conv2D options: stride on both axes, padding, ReLU fused or not
// (dilation 1, written explicitly).
func Conv2D(stride int, pad Padding, relu bool) Options {
	return table(optConv2D, conv2DFields, func(b *flatbuffers.Builder) {
		b.PrependInt8Slot(conv2DPadding, int8(pad), -1)
		b.PrependInt32Slot(conv2DStrideW, int32(stride), 0)
		b.PrependInt32Slot(conv2DStrideH, int32(stride), 0)
		b.PrependInt8Slot(conv2DActivation, activation(relu), -1)
		b.PrependInt32Slot(conv2DDilationW, 1, 0)
		b.PrependInt32Slot(conv2DDilationH, 1, 0)
	})
}

// DepthwiseConv2D options: stride, padding, depth multiplier 1, no activation.
func DepthwiseConv2D(stride int, pad Padding) Options {
	return table(optDepthwiseConv2D, dwFields, func(b *flatbuffers.Builder) {
		b.PrependInt8Slot(dwPadding, int8(pad), -1)
		b.PrependInt32Slot(dwStrideW, int32(stride), 0)
		b.PrependInt32Slot(dwStrideH, int32(stride), 0)
		b.PrependInt32Slot(dwDepthMultiplier, 1, 0)
		b.PrependInt8Slot(dwActivation, activationNone, -1)
		b.PrependInt32Slot(dwDilationW, 1, 0)
		b.PrependInt32Slot(dwDilationH, 1, 0)
	})
}

// Pool2D options (MAX_POOL_2D): square filter, stride, padding.
func Pool2D(filter, stride int, pad Padding) Options {
	return table(optPool2D, poolFields, func(b *flatbuffers.Builder) {
		b.PrependInt8Slot(poolPadding, int8(pad), -1)
		b.PrependInt32Slot(poolStrideW, int32(stride), 0)
		b.PrependInt32Slot(poolStrideH, int32(stride), 0)
		b.PrependInt32Slot(poolFilterW, int32(filter), 0)
		b.PrependInt32Slot(poolFilterH, int32(filter), 0)
		b.PrependInt8Slot(poolActivation, activationNone, -1)
	})
}

// FullyConnected options: y = x·Wᵀ (+ b), ReLU fused or not;
// asymmetricQuantizeInputs quantises the float input per row (its own
// range and zero point) for int8 weights (a hybrid operator).
func FullyConnected(relu, asymmetricQuantizeInputs bool) Options {
	return table(optFullyConnected, fcFields, func(b *flatbuffers.Builder) {
		b.PrependInt8Slot(fcActivation, activation(relu), -1)
		b.PrependBoolSlot(fcKeepNumDims, false, true)
		b.PrependBoolSlot(fcAsymmetricQuant, asymmetricQuantizeInputs, !asymmetricQuantizeInputs)
	})
}

// Concatenation options along axis.
func Concatenation(axis int) Options {
	return table(optConcatenation, concatFields, func(b *flatbuffers.Builder) {
		b.PrependInt32Slot(concatAxis, int32(axis), math.MinInt32)
		b.PrependInt8Slot(concatActivation, activationNone, -1)
	})
}

// Add options (no activation; pot_scale_int16 written as its default true).
func Add() Options {
	return table(optAdd, addFields, func(b *flatbuffers.Builder) {
		b.PrependInt8Slot(addActivation, activationNone, -1)
		b.PrependBoolSlot(addPotScaleInt16, true, false)
	})
}

// Sub options (as Add).
func Sub() Options {
	return table(optSub, addFields, func(b *flatbuffers.Builder) {
		b.PrependInt8Slot(addActivation, activationNone, -1)
		b.PrependBoolSlot(addPotScaleInt16, true, false)
	})
}

// Mul options (no activation).
func Mul() Options {
	return table(optMul, mulFields, func(b *flatbuffers.Builder) { b.PrependInt8Slot(mulActivation, activationNone, -1) })
}

// Div options (no activation).
func Div() Options {
	return table(optDiv, mulFields, func(b *flatbuffers.Builder) { b.PrependInt8Slot(mulActivation, activationNone, -1) })
}

// ResizeBilinear options; halfPixel true with alignCorners false is
// PyTorch's interpolate(mode="bilinear", align_corners=False) and ONNX
// Resize's half_pixel.
func ResizeBilinear(alignCorners, halfPixel bool) Options {
	return table(optResizeBilinear, resizeFields, func(b *flatbuffers.Builder) {
		b.PrependBoolSlot(resizeAlignCorners, alignCorners, !alignCorners)
		b.PrependBoolSlot(resizeHalfPixel, halfPixel, !halfPixel)
	})
}

// Reshape options: the new shape (also given as the shape input tensor).
func Reshape(shape ...int) Options {
	return Options{typ: optReshape, write: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
		v := int32Vector(b, dims(shape))
		b.StartObject(reshapeFields)
		b.PrependUOffsetTSlot(reshapeNewShape, v, 0)
		return b.EndObject()
	}}
}

// Reducer options (MEAN, REDUCE_MAX, REDUCE_MIN).
func Reducer(keepDims bool) Options {
	return table(optReducer, reducerFields, func(b *flatbuffers.Builder) {
		b.PrependBoolSlot(reducerKeepDims, keepDims, !keepDims)
	})
}

// BatchMatMul options (no adjoints).
func BatchMatMul() Options {
	return table(optBatchMatMul, batchMatMulFields, func(b *flatbuffers.Builder) {
		b.PrependBoolSlot(batchMatMulAdjX, false, true)
		b.PrependBoolSlot(batchMatMulAdjY, false, true)
	})
}

// Pad options (an empty table).
func Pad() Options { return table(optPad, 0, func(*flatbuffers.Builder) {}) }

// Transpose options (an empty table).
func Transpose() Options { return table(optTranspose, 0, func(*flatbuffers.Builder) {}) }

// MaximumMinimum options (an empty table) for MAXIMUM and MINIMUM.
func MaximumMinimum() Options { return table(optMaximumMinimum, 0, func(*flatbuffers.Builder) {}) }

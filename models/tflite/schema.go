package tflite

import "strconv"

// Field ids (vtable slots, in declaration order) of the tables of
// TensorFlow Lite's schema.fbs (schema version 3) that this package writes
// or reads, named as the schema names them. They are facts of the format,
// written by hand; no generated code is used.
const (
	// table Model
	modelVersion        = 0
	modelOperatorCodes  = 1
	modelSubgraphs      = 2
	modelDescription    = 3
	modelBuffers        = 4
	modelNumFields      = 8 // …, metadata_buffer, metadata, signature_defs
	operatorCodeDeprBC  = 0 // deprecated_builtin_code: byte
	operatorCodeVersion = 2
	operatorCodeBuiltin = 3 // builtin_code: BuiltinOperator (int32)
	operatorCodeFields  = 4

	// table SubGraph
	subgraphTensors   = 0
	subgraphInputs    = 1
	subgraphOutputs   = 2
	subgraphOperators = 3
	subgraphName      = 4
	subgraphFields    = 5

	// table Tensor
	tensorShape        = 0
	tensorType         = 1
	tensorBuffer       = 2
	tensorName         = 3
	tensorQuantization = 4
	tensorFields       = 5

	// table QuantizationParameters
	quantScale     = 2
	quantZeroPoint = 3
	quantFields    = 7

	// table Operator
	operatorOpcodeIndex        = 0
	operatorInputs             = 1
	operatorOutputs            = 2
	operatorBuiltinOptionsType = 3
	operatorBuiltinOptions     = 4
	operatorFields             = 5

	// table Buffer
	bufferData   = 0
	bufferFields = 1
)

// FileIdentifier is the flatbuffers file identifier of a .tflite model.
const FileIdentifier = "TFL3"

// SchemaVersion is the Model.version written.
const SchemaVersion = 3

// TensorType is the schema's enum TensorType.
type TensorType int8

// Tensor types used by inspectd's graphs.
const (
	Float32 TensorType = 0
	Int32   TensorType = 2
	Uint8   TensorType = 3
	Int64   TensorType = 4
	Int8    TensorType = 9
)

// String names the type as the schema does.
func (t TensorType) String() string {
	switch t {
	case Float32:
		return "FLOAT32"
	case 1:
		return "FLOAT16"
	case Int32:
		return "INT32"
	case Uint8:
		return "UINT8"
	case Int64:
		return "INT64"
	case 5:
		return "STRING"
	case 6:
		return "BOOL"
	case 7:
		return "INT16"
	case Int8:
		return "INT8"
	default:
		return "TensorType(" + strconv.Itoa(int(t)) + ")"
	}
}

// Op is the schema's enum BuiltinOperator.
type Op int32

// Builtin operators used by inspectd's graphs.
const (
	OpAdd             Op = 0
	OpConcatenation   Op = 2
	OpConv2D          Op = 3
	OpDepthwiseConv2D Op = 4
	OpDequantize      Op = 6
	OpFullyConnected  Op = 9
	OpMaxPool2D       Op = 17
	OpMul             Op = 18
	OpRelu            Op = 19
	OpReshape         Op = 22
	OpResizeBilinear  Op = 23
	OpPad             Op = 34
	OpTranspose       Op = 39
	OpMean            Op = 40
	OpSub             Op = 41
	OpDiv             Op = 42
	OpMaximum         Op = 55
	OpMinimum         Op = 57
	OpSqrt            Op = 75
	OpReduceMax       Op = 82
	OpReduceMin       Op = 89
	OpQuantize        Op = 114
	OpBatchMatMul     Op = 126
)

var opNames = map[Op]string{
	OpAdd: "ADD", OpConcatenation: "CONCATENATION", OpConv2D: "CONV_2D", OpDepthwiseConv2D: "DEPTHWISE_CONV_2D",
	OpDequantize: "DEQUANTIZE", OpFullyConnected: "FULLY_CONNECTED", OpMaxPool2D: "MAX_POOL_2D", OpMul: "MUL",
	OpRelu: "RELU", OpReshape: "RESHAPE", OpResizeBilinear: "RESIZE_BILINEAR", OpPad: "PAD", OpTranspose: "TRANSPOSE",
	OpMean: "MEAN", OpSub: "SUB", OpDiv: "DIV", OpMaximum: "MAXIMUM", OpMinimum: "MINIMUM", OpSqrt: "SQRT",
	OpReduceMax: "REDUCE_MAX", OpReduceMin: "REDUCE_MIN", OpQuantize: "QUANTIZE", OpBatchMatMul: "BATCH_MATMUL",
}

// String names the operator as the schema does (BUILTIN(n) for others).
func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return "BUILTIN(" + strconv.Itoa(int(o)) + ")"
}

// The schema's union BuiltinOptions: the type tags used.
const (
	optNone             = 0
	optConv2D           = 1
	optDepthwiseConv2D  = 2
	optPool2D           = 5
	optFullyConnected   = 8
	optConcatenation    = 10
	optAdd              = 11
	optResizeBilinear   = 15
	optReshape          = 17
	optMul              = 21
	optPad              = 22
	optTranspose        = 26
	optReducer          = 27
	optSub              = 28
	optDiv              = 29
	optMaximumMinimum   = 39
	optBatchMatMul      = 101
	optDequantize       = 38
	optQuantize         = 89
	padSame             = 0 // enum Padding
	padValid            = 1
	activationNone      = 0 // enum ActivationFunctionType
	activationRelu      = 1
	conv2DPadding       = 0 // table Conv2DOptions
	conv2DStrideW       = 1
	conv2DStrideH       = 2
	conv2DActivation    = 3
	conv2DDilationW     = 4
	conv2DDilationH     = 5
	conv2DFields        = 7
	dwPadding           = 0 // table DepthwiseConv2DOptions
	dwStrideW           = 1
	dwStrideH           = 2
	dwDepthMultiplier   = 3
	dwActivation        = 4
	dwDilationW         = 5
	dwDilationH         = 6
	dwFields            = 7
	poolPadding         = 0 // table Pool2DOptions
	poolStrideW         = 1
	poolStrideH         = 2
	poolFilterW         = 3
	poolFilterH         = 4
	poolActivation      = 5
	poolFields          = 6
	fcActivation        = 0 // table FullyConnectedOptions
	fcKeepNumDims       = 2
	fcAsymmetricQuant   = 3
	fcFields            = 5
	concatAxis          = 0 // table ConcatenationOptions
	concatActivation    = 1
	concatFields        = 2
	addActivation       = 0 // table AddOptions / SubOptions
	addPotScaleInt16    = 1
	addFields           = 2
	mulActivation       = 0 // table MulOptions / DivOptions
	mulFields           = 1
	resizeAlignCorners  = 2 // table ResizeBilinearOptions
	resizeHalfPixel     = 3
	resizeFields        = 4
	reshapeNewShape     = 0 // table ReshapeOptions
	reshapeFields       = 1
	reducerKeepDims     = 0 // table ReducerOptions
	reducerFields       = 1
	batchMatMulAdjX     = 0 // table BatchMatMulOptions
	batchMatMulAdjY     = 1
	batchMatMulAsymQuan = 2
	batchMatMulFields   = 3
)

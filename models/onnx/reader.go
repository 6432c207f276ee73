package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ModelInfo is what [ReadModelInfo] extracts from a serialized ModelProto.
type ModelInfo struct {
	// IRVersion is the model's ir_version.
	IRVersion int64
	// Producer is producer_name.
	Producer string
	// Opsets maps an opset domain ("" for the default ai.onnx domain) to its version.
	Opsets map[string]int64
	// GraphName is the main graph's name.
	GraphName string
	// Inputs are the graph inputs that are not initializers, in order.
	// A symbolic or missing dimension is reported as -1.
	Inputs []ValueInfo
	// Outputs are the graph outputs, in order.
	Outputs []ValueInfo
	// Initializers are the names of the graph's initializers, in order.
	Initializers []string
	// Ops counts the nodes of the main graph by operator type.
	Ops map[string]int
}

// Input returns the graph input with the given name.
func (m *ModelInfo) Input(name string) (ValueInfo, bool) { return find(m.Inputs, name) }

// Output returns the graph output with the given name.
func (m *ModelInfo) Output(name string) (ValueInfo, bool) { return find(m.Outputs, name) }

func find(vs []ValueInfo, name string) (ValueInfo, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v, true
		}
	}
	return ValueInfo{}, false
}

// ReadModelInfo decodes the parts of a serialized ModelProto that a loader needs
// to check a model's interface: IR version, opsets, graph inputs and outputs with
// dims, initializer names and operator counts. Tensor data is skipped.
func ReadModelInfo(data []byte) (*ModelInfo, error) {
	m := &ModelInfo{Opsets: map[string]int64{}, Ops: map[string]int{}}
	var graph []byte
	err := walk(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == modelIRVersion && typ == protowire.VarintType:
			m.IRVersion = int64(v)
		case num == modelProducer && typ == protowire.BytesType:
			m.Producer = string(b)
		case num == modelGraph && typ == protowire.BytesType:
			graph = b
		case num == modelOpsetImport && typ == protowire.BytesType:
			var domain string
			var version int64
			if err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				switch {
				case num == opsetDomain && typ == protowire.BytesType:
					domain = string(b)
				case num == opsetVersion && typ == protowire.VarintType:
					version = int64(v)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("opset_import: %w", err)
			}
			if domain == "ai.onnx" {
				domain = ""
			}
			m.Opsets[domain] = version
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("onnx model: %w", err)
	}
	if graph == nil {
		return nil, fmt.Errorf("onnx model: no graph (not an ONNX ModelProto?)")
	}
	var inputs []ValueInfo
	inits := map[string]bool{}
	err = walk(graph, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case graphName:
			m.GraphName = string(b)
		case graphInput, graphOutput:
			vi, err := readValueInfo(b)
			if err != nil {
				return err
			}
			if num == graphInput {
				inputs = append(inputs, vi)
			} else {
				m.Outputs = append(m.Outputs, vi)
			}
		case graphInitializer:
			var name string
			if err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				if num == tensorName && typ == protowire.BytesType {
					name = string(b)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("initializer: %w", err)
			}
			m.Initializers = append(m.Initializers, name)
			inits[name] = true
		case graphNode:
			var op string
			if err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				if num == nodeOpType && typ == protowire.BytesType {
					op = string(b)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("node: %w", err)
			}
			m.Ops[op]++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("onnx model graph: %w", err)
	}
	for _, in := range inputs {
		if !inits[in.Name] {
			m.Inputs = append(m.Inputs, in)
		}
	}
	return m, nil
}

func readValueInfo(b []byte) (ValueInfo, error) {
	var vi ValueInfo
	var tensorType []byte
	err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == valueInfoName && typ == protowire.BytesType:
			vi.Name = string(b)
		case num == valueInfoType && typ == protowire.BytesType:
			return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				if num == typeTensorType && typ == protowire.BytesType {
					tensorType = b
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return vi, fmt.Errorf("value_info: %w", err)
	}
	if tensorType == nil {
		return vi, fmt.Errorf("value_info %q: not a tensor type", vi.Name)
	}
	err = walk(tensorType, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == ttElemType && typ == protowire.VarintType:
			vi.Type = ElemType(v)
		case num == ttShape && typ == protowire.BytesType:
			vi.Dims = []int64{}
			return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				if num != shapeDim || typ != protowire.BytesType {
					return nil
				}
				d := int64(-1)
				if err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
					if num == dimValue && typ == protowire.VarintType {
						d = int64(v)
					}
					return nil
				}); err != nil {
					return err
				}
				vi.Dims = append(vi.Dims, d)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return vi, fmt.Errorf("value_info %q type: %w", vi.Name, err)
	}
	return vi, nil
}

// StoredTensor is an initializer as [ReadInitializers] finds it in a
// serialized model: its name, element type and dims, with its data left
// where the model holds it (not copied, not decoded) until [StoredTensor.Floats]
// decodes it.
type StoredTensor struct {
	Name string
	Type ElemType
	Dims []int64
	// External is true when the data is stored outside the model file
	// (data_location EXTERNAL); Floats refuses it.
	External bool

	raw      []byte    // raw_data, pointing into the model
	floatBuf []byte    // float_data written packed: little-endian fixed32
	unpacked []float32 // float_data written unpacked
}

// ErrExternalData is the error of [StoredTensor.Floats] for data stored
// outside the model file.
var ErrExternalData = errors.New("data stored outside the graph file")

// Floats decodes a float32 tensor's values, from raw_data or float_data
// (packed or not). It refuses another element type, external data, and a
// value count that is not the product of the dims.
func (t StoredTensor) Floats() ([]float32, error) {
	if t.Type != Float {
		return nil, fmt.Errorf("element type %v, want float32", t.Type)
	}
	if t.External {
		return nil, ErrExternalData
	}
	n := int64(1)
	for _, d := range t.Dims {
		if d < 0 || (d > 0 && n > math.MaxInt32/d) {
			return nil, fmt.Errorf("shape %v is not a plausible constant", t.Dims)
		}
		n *= d
	}
	var out []float32
	switch {
	case t.raw != nil:
		if int64(len(t.raw)) != 4*n {
			return nil, fmt.Errorf("%d bytes of data for shape %v (%d values)", len(t.raw), t.Dims, n)
		}
		out = make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.raw[4*i:]))
		}
	case t.floatBuf != nil || t.unpacked != nil:
		out = make([]float32, 0, n)
		for b := t.floatBuf; len(b) >= 4; b = b[4:] {
			out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(b)))
		}
		out = append(out, t.unpacked...)
		if int64(len(out)) != n {
			return nil, fmt.Errorf("%d values for shape %v (%d values)", len(out), t.Dims, n)
		}
	default:
		if n != 0 {
			return nil, fmt.Errorf("no data for shape %v", t.Dims)
		}
	}
	return out, nil
}

// ReadInitializers returns, by name, those of the named initializers that
// the main graph of a serialized ModelProto holds (all of them when no name
// is given). Their data points into model, which must not change while they
// are in use. A model without a graph holds none.
func ReadInitializers(model []byte, names ...string) (map[string]StoredTensor, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	var graph []byte
	if err := walk(model, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
		if num == modelGraph && typ == protowire.BytesType {
			graph = b
		}
		return nil
	}); err != nil {
		return nil, err
	}
	out := map[string]StoredTensor{}
	err := walk(graph, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
		if num != graphInitializer || typ != protowire.BytesType {
			return nil
		}
		t, err := readStoredTensor(b)
		if err != nil {
			return fmt.Errorf("initializer: %w", err)
		}
		if len(names) == 0 || want[t.Name] {
			out[t.Name] = t
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	return out, nil
}

// readStoredTensor reads a TensorProto's name, type, dims and where its
// data is.
func readStoredTensor(b []byte) (StoredTensor, error) {
	var t StoredTensor
	err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == tensorName && typ == protowire.BytesType:
			t.Name = string(b)
		case num == tensorDims && typ == protowire.VarintType:
			t.Dims = append(t.Dims, int64(v))
		case num == tensorDims && typ == protowire.BytesType: // packed
			for len(b) > 0 {
				d, n := protowire.ConsumeVarint(b)
				if n < 0 {
					return fmt.Errorf("dims: %w", protowire.ParseError(n))
				}
				t.Dims, b = append(t.Dims, int64(d)), b[n:]
			}
		case num == tensorDataType && typ == protowire.VarintType:
			t.Type = ElemType(v)
		case num == tensorRawData && typ == protowire.BytesType:
			t.raw = b
		case num == tensorFloatData && typ == protowire.BytesType:
			t.floatBuf = append(t.floatBuf, b...)
		case num == tensorFloatData && typ == protowire.Fixed32Type:
			t.unpacked = append(t.unpacked, math.Float32frombits(uint32(v)))
		case num == tensorDataLocation && typ == protowire.VarintType:
			t.External = v == 1
		}
		return nil
	})
	return t, err
}

// walk calls fn for every field of a message. For varint and fixed fields v holds
// the value; for length-delimited fields b holds the bytes.
func walk(data []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("bad field tag: %w", protowire.ParseError(n))
		}
		data = data[n:]
		var v uint64
		var b []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(data)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(data)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(data)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		data = data[n:]
		if err := fn(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}

package onnx

import (
	"fmt"

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

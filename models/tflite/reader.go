package tflite

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Info is what [ReadModelInfo] extracts from a .tflite model.
type Info struct {
	// Version is the schema version (Model.version).
	Version uint32
	// Subgraph is the name of the first (main) subgraph.
	Subgraph string
	// Inputs and Outputs are the main subgraph's inputs and outputs, in order.
	Inputs, Outputs []TensorInfo
	// Ops counts the main subgraph's operators by builtin operator name
	// ("CUSTOM:<name>" for a custom operator).
	Ops map[string]int
}

// TensorInfo describes one input or output tensor.
type TensorInfo struct {
	Name  string
	Shape []int
	Type  TensorType
}

// Input returns the input with the given name.
func (m *Info) Input(name string) (TensorInfo, bool) { return findTensor(m.Inputs, name) }

// Output returns the output with the given name.
func (m *Info) Output(name string) (TensorInfo, bool) { return findTensor(m.Outputs, name) }

func findTensor(ts []TensorInfo, name string) (TensorInfo, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// Limits of what the reader accepts, far above inspectd's graphs.
const (
	maxRank    = 8
	maxTensors = 1 << 20
)

var errTruncated = errors.New("offset outside the file")

// fb reads a flatbuffer with every offset checked against its length.
type fb []byte

func (d fb) u32(pos int64) (uint32, error) {
	if pos < 0 || pos+4 > int64(len(d)) {
		return 0, errTruncated
	}
	return binary.LittleEndian.Uint32(d[pos:]), nil
}

func (d fb) u16(pos int64) (uint16, error) {
	if pos < 0 || pos+2 > int64(len(d)) {
		return 0, errTruncated
	}
	return binary.LittleEndian.Uint16(d[pos:]), nil
}

// field returns the position of field id of the table at t, or 0 when absent.
func (d fb) field(t int64, id int) (int64, error) {
	so, err := d.u32(t)
	if err != nil {
		return 0, err
	}
	vt := t - int64(int32(so))
	vsize, err := d.u16(vt)
	if err != nil {
		return 0, err
	}
	if vsize < 4 || vsize%2 != 0 {
		return 0, fmt.Errorf("vtable of size %d", vsize)
	}
	slot := int64(4 + 2*id)
	if slot+2 > int64(vsize) {
		return 0, nil
	}
	off, err := d.u16(vt + slot)
	if err != nil || off == 0 {
		return 0, err
	}
	return t + int64(off), nil
}

// deref follows the uoffset stored at pos (0 stays absent).
func (d fb) deref(pos int64) (int64, error) {
	if pos == 0 {
		return 0, nil
	}
	o, err := d.u32(pos)
	if err != nil {
		return 0, err
	}
	if o == 0 {
		return 0, errors.New("zero offset")
	}
	return pos + int64(o), nil
}

// table returns the table (or vector) a field of the table at t refers to, 0 when absent.
func (d fb) ref(t int64, id int) (int64, error) {
	p, err := d.field(t, id)
	if err != nil {
		return 0, err
	}
	return d.deref(p)
}

// vector returns a vector's element count and first element's position.
func (d fb) vector(p int64, elem int64) (int, int64, error) {
	if p == 0 {
		return 0, 0, nil
	}
	n, err := d.u32(p)
	if err != nil {
		return 0, 0, err
	}
	if int64(n)*elem > int64(len(d))-p-4 {
		return 0, 0, fmt.Errorf("vector of %d elements runs past the end", n)
	}
	return int(n), p + 4, nil
}

func (d fb) str(p int64) (string, error) {
	n, at, err := d.vector(p, 1)
	if err != nil {
		return "", err
	}
	return string(d[at : at+int64(n)]), nil
}

func (d fb) int32s(p int64) ([]int32, error) {
	n, at, err := d.vector(p, 4)
	if err != nil {
		return nil, err
	}
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(d[at+4*int64(i):]))
	}
	return v, nil
}

func (d fb) scalar(t int64, id int, size int64) (uint64, bool, error) {
	p, err := d.field(t, id)
	if err != nil || p == 0 {
		return 0, false, err
	}
	if p+size > int64(len(d)) {
		return 0, false, errTruncated
	}
	switch size {
	case 1:
		return uint64(d[p]), true, nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(d[p:])), true, nil
	}
	return 0, false, fmt.Errorf("scalar of %d bytes", size)
}

// ReadModelInfo decodes the interface of a .tflite model: its main
// subgraph's inputs and outputs (name, shape, type) and operator counts.
// Constant data is not read. Any input gives an Info or an error.
func ReadModelInfo(data []byte) (Info, error) {
	info, err := readModelInfo(fb(data))
	if err != nil {
		return Info{}, fmt.Errorf("tflite model: %w", err)
	}
	return info, nil
}

func readModelInfo(d fb) (Info, error) {
	if len(d) < 8 || string(d[4:8]) != FileIdentifier {
		return Info{}, fmt.Errorf("not a TensorFlow Lite flatbuffer (no %q identifier)", FileIdentifier)
	}
	rootOff, _ := d.u32(0)
	if rootOff < 8 {
		return Info{}, fmt.Errorf("root table offset %d", rootOff)
	}
	m := int64(rootOff)
	info := Info{Ops: map[string]int{}}
	v, _, err := d.scalar(m, modelVersion, 4)
	if err != nil {
		return Info{}, fmt.Errorf("version: %w", err)
	}
	info.Version = uint32(v)

	// Operator codes → names.
	codesVec, err := d.ref(m, modelOperatorCodes)
	if err != nil {
		return Info{}, fmt.Errorf("operator_codes: %w", err)
	}
	nCodes, at, err := d.vector(codesVec, 4)
	if err != nil {
		return Info{}, fmt.Errorf("operator_codes: %w", err)
	}
	codes := make([]string, nCodes)
	for i := range codes {
		c, err := d.deref(at + 4*int64(i))
		if err != nil {
			return Info{}, fmt.Errorf("operator_codes[%d]: %w", i, err)
		}
		dep, _, err := d.scalar(c, operatorCodeDeprBC, 1)
		if err != nil {
			return Info{}, fmt.Errorf("operator_codes[%d]: %w", i, err)
		}
		code := int32(int8(dep))
		if b, ok, err := d.scalar(c, operatorCodeBuiltin, 4); err != nil {
			return Info{}, fmt.Errorf("operator_codes[%d]: %w", i, err)
		} else if ok && int32(b) > code {
			code = int32(b)
		}
		codes[i] = Op(code).String()
		if code == 32 { // CUSTOM
			p, err := d.ref(c, 1)
			if err != nil {
				return Info{}, fmt.Errorf("operator_codes[%d]: %w", i, err)
			}
			name, err := d.str(p)
			if err != nil {
				return Info{}, fmt.Errorf("operator_codes[%d]: %w", i, err)
			}
			codes[i] = "CUSTOM:" + name
		}
	}

	subs, err := d.ref(m, modelSubgraphs)
	if err != nil {
		return Info{}, fmt.Errorf("subgraphs: %w", err)
	}
	nSubs, at, err := d.vector(subs, 4)
	if err != nil {
		return Info{}, fmt.Errorf("subgraphs: %w", err)
	}
	if nSubs == 0 {
		return Info{}, errors.New("no subgraph")
	}
	sg, err := d.deref(at)
	if err != nil {
		return Info{}, fmt.Errorf("subgraph 0: %w", err)
	}
	if p, err := d.ref(sg, subgraphName); err != nil {
		return Info{}, fmt.Errorf("subgraph 0 name: %w", err)
	} else if info.Subgraph, err = d.str(p); err != nil {
		return Info{}, fmt.Errorf("subgraph 0 name: %w", err)
	}
	tv, err := d.ref(sg, subgraphTensors)
	if err != nil {
		return Info{}, fmt.Errorf("tensors: %w", err)
	}
	nTensors, tensorsAt, err := d.vector(tv, 4)
	if err != nil {
		return Info{}, fmt.Errorf("tensors: %w", err)
	}
	if nTensors > maxTensors {
		return Info{}, fmt.Errorf("%d tensors, more than %d", nTensors, maxTensors)
	}
	tensorInfo := func(idx int32) (TensorInfo, error) {
		if idx < 0 || int(idx) >= nTensors {
			return TensorInfo{}, fmt.Errorf("tensor index %d of %d", idx, nTensors)
		}
		t, err := d.deref(tensorsAt + 4*int64(idx))
		if err != nil {
			return TensorInfo{}, fmt.Errorf("tensor %d: %w", idx, err)
		}
		var ti TensorInfo
		p, err := d.ref(t, tensorName)
		if err == nil {
			ti.Name, err = d.str(p)
		}
		if err != nil {
			return TensorInfo{}, fmt.Errorf("tensor %d name: %w", idx, err)
		}
		typ, _, err := d.scalar(t, tensorType, 1)
		if err != nil {
			return TensorInfo{}, fmt.Errorf("tensor %q type: %w", ti.Name, err)
		}
		ti.Type = TensorType(int8(typ))
		p, err = d.ref(t, tensorShape)
		if err != nil {
			return TensorInfo{}, fmt.Errorf("tensor %q shape: %w", ti.Name, err)
		}
		if n, _, err := d.vector(p, 4); err != nil || n > maxRank {
			return TensorInfo{}, fmt.Errorf("tensor %q: shape of rank %d (%v), want at most %d", ti.Name, n, err, maxRank)
		}
		shape, err := d.int32s(p)
		if err != nil {
			return TensorInfo{}, fmt.Errorf("tensor %q shape: %w", ti.Name, err)
		}
		ti.Shape = make([]int, len(shape))
		for i, s := range shape {
			if s < -1 {
				return TensorInfo{}, fmt.Errorf("tensor %q: dimension %d", ti.Name, s)
			}
			ti.Shape[i] = int(s)
		}
		return ti, nil
	}
	for _, io := range []struct {
		id   int
		dst  *[]TensorInfo
		what string
	}{{subgraphInputs, &info.Inputs, "inputs"}, {subgraphOutputs, &info.Outputs, "outputs"}} {
		p, err := d.ref(sg, io.id)
		if err != nil {
			return Info{}, fmt.Errorf("%s: %w", io.what, err)
		}
		ids, err := d.int32s(p)
		if err != nil {
			return Info{}, fmt.Errorf("%s: %w", io.what, err)
		}
		for _, id := range ids {
			ti, err := tensorInfo(id)
			if err != nil {
				return Info{}, fmt.Errorf("%s: %w", io.what, err)
			}
			*io.dst = append(*io.dst, ti)
		}
	}
	ov, err := d.ref(sg, subgraphOperators)
	if err != nil {
		return Info{}, fmt.Errorf("operators: %w", err)
	}
	nOps, opsAt, err := d.vector(ov, 4)
	if err != nil {
		return Info{}, fmt.Errorf("operators: %w", err)
	}
	for i := range nOps {
		op, err := d.deref(opsAt + 4*int64(i))
		if err != nil {
			return Info{}, fmt.Errorf("operator %d: %w", i, err)
		}
		idx, _, err := d.scalar(op, operatorOpcodeIndex, 4)
		if err != nil {
			return Info{}, fmt.Errorf("operator %d: %w", i, err)
		}
		if idx >= uint64(len(codes)) {
			return Info{}, fmt.Errorf("operator %d: opcode index %d of %d", i, idx, len(codes))
		}
		info.Ops[codes[idx]]++
	}
	return info, nil
}

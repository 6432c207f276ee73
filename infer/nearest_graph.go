package infer

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// The localisation graph's int8 shared-memory comparison, as
// models/netdef's memoryDistances emits it, is recognised by these names
// (initializers and shape constants that netdef creates only there).
const (
	nearestEntriesName   = "memory_global_int8"
	nearestSquaresName   = "memory_global_sq"
	nearestStepName      = "global_product_scale"
	nearestRowsShapeName = "feature_rows_shape"
	nearestMapShapeName  = "distance_map_shape"
)

// nearestOps are the operators of the comparison NearestEntry replaces,
// with their counts: from the features x, ‖x‖² (Mul, Conv over the
// channels, Reshape), the rows (Reshape, Transpose), the int8 product
// (DynamicQuantizeLinear, MatMulInteger, Cast, two Mul), ‖g‖² added (Add),
// the minimum (ReduceMin), ‖x‖² added (Add), √max(0, ·) (Max, Sqrt) and
// the map's shape (Reshape).
var nearestOps = map[string]int{
	"Mul": 3, "Conv": 1, "Reshape": 3, "Transpose": 1, "DynamicQuantizeLinear": 1,
	"MatMulInteger": 1, "Cast": 1, "Add": 2, "ReduceMin": 1, "Max": 1, "Sqrt": 1,
}

// ONNX protobuf field numbers the rewrite reads and writes.
const (
	pbModelGraph      protowire.Number = 7
	pbModelOpset      protowire.Number = 8
	pbGraphNode       protowire.Number = 1
	pbGraphInit       protowire.Number = 5
	pbNodeInput       protowire.Number = 1
	pbNodeOutput      protowire.Number = 2
	pbNodeName        protowire.Number = 3
	pbNodeOpType      protowire.Number = 4
	pbNodeDomain      protowire.Number = 7
	pbTensorName      protowire.Number = 8
	pbOpsetDomain     protowire.Number = 1
	pbOpsetVersion    protowire.Number = 2
	nearestOpsetLevel                  = 1
)

// graphNode is one NodeProto of a graph being rewritten: its encoding and
// the parts the rewrite looks at.
type graphNode struct {
	raw             []byte
	op              string
	inputs, outputs []string
}

// fuseNearestEntry rewrites a localisation or memory-distance graph so
// that the int8 comparison with the shared entries (from the features to
// the distance map) is one NearestEntry node, keeping every other node and
// the initializers. It returns the model unchanged and false when the
// graph has no such comparison in exactly the expected form (per-location
// entries, float32 entries, another emitter's graph); an error only for a
// model it cannot decode.
func fuseNearestEntry(model []byte) ([]byte, bool, error) {
	graph, err := fieldBytes(model, pbModelGraph)
	if err != nil {
		return nil, false, fmt.Errorf("nearest-entry rewrite: %w", err)
	}
	if graph == nil {
		return model, false, nil
	}
	var nodes []graphNode
	inits := map[string]bool{}
	if err := walkFields(graph, func(num protowire.Number, b []byte) error {
		switch num {
		case pbGraphNode:
			n, err := readGraphNode(b)
			if err != nil {
				return err
			}
			nodes = append(nodes, n)
		case pbGraphInit:
			name, err := fieldString(b, pbTensorName)
			if err != nil {
				return err
			}
			inits[name] = true
		}
		return nil
	}); err != nil {
		return nil, false, fmt.Errorf("nearest-entry rewrite: %w", err)
	}
	for _, name := range []string{nearestEntriesName, nearestSquaresName, nearestStepName, nearestRowsShapeName, nearestMapShapeName} {
		if !inits[name] {
			return model, false, nil
		}
	}
	span, features, distances, ok := nearestSpan(nodes, inits)
	if !ok {
		return model, false, nil
	}
	fused := encodeGraphNode([]string{features, nearestEntriesName, nearestSquaresName, nearestStepName}, []string{distances})
	last := slices.Max(slices.Collect(maps.Keys(span)))
	var gb []byte
	i := 0
	if err := walkRaw(graph, func(num protowire.Number, raw []byte) {
		if num != pbGraphNode {
			gb = append(gb, raw...)
			return
		}
		switch {
		case i == last:
			gb = protowire.AppendTag(gb, pbGraphNode, protowire.BytesType)
			gb = protowire.AppendBytes(gb, fused)
		case !span[i]:
			gb = append(gb, raw...)
		}
		i++
	}); err != nil {
		return nil, false, fmt.Errorf("nearest-entry rewrite: %w", err)
	}
	var mb []byte
	if err := walkRaw(model, func(num protowire.Number, raw []byte) {
		if num != pbModelGraph {
			mb = append(mb, raw...)
			return
		}
		mb = protowire.AppendTag(mb, pbModelGraph, protowire.BytesType)
		mb = protowire.AppendBytes(mb, gb)
	}); err != nil {
		return nil, false, fmt.Errorf("nearest-entry rewrite: %w", err)
	}
	var ob []byte
	ob = protowire.AppendTag(ob, pbOpsetDomain, protowire.BytesType)
	ob = protowire.AppendString(ob, nearestDomain)
	ob = protowire.AppendTag(ob, pbOpsetVersion, protowire.VarintType)
	ob = protowire.AppendVarint(ob, nearestOpsetLevel)
	mb = protowire.AppendTag(mb, pbModelOpset, protowire.BytesType)
	mb = protowire.AppendBytes(mb, ob)
	return mb, true, nil
}

// nearestSpan finds the comparison in nodes: the indices of its nodes, the
// features it starts from and the distance map it ends in. ok is false
// unless the nodes between the two are exactly nearestOps, read nothing
// but the features and initializers, and feed nothing outside the span but
// the distance map.
func nearestSpan(nodes []graphNode, inits map[string]bool) (span map[int]bool, features, distances string, ok bool) {
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.outputs {
			producer[o] = i
		}
	}
	end, start := -1, -1
	for i, n := range nodes {
		if n.op == "Reshape" && len(n.inputs) == 2 && len(n.outputs) == 1 {
			switch n.inputs[1] {
			case nearestMapShapeName:
				end = i
			case nearestRowsShapeName:
				start = i
			}
		}
	}
	if end < 0 || start < 0 {
		return nil, "", "", false
	}
	features, distances = nodes[start].inputs[0], nodes[end].outputs[0]
	span = map[int]bool{}
	stack := []int{end}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if span[i] {
			continue
		}
		span[i] = true
		for _, in := range nodes[i].inputs {
			if in == "" || in == features || inits[in] {
				continue
			}
			p, found := producer[in]
			if !found {
				return nil, "", "", false
			}
			stack = append(stack, p)
		}
	}
	ops := map[string]int{}
	inside := map[string]bool{}
	for i := range span {
		ops[nodes[i].op]++
		for _, o := range nodes[i].outputs {
			inside[o] = true
		}
	}
	if !maps.Equal(ops, nearestOps) || !span[start] {
		return nil, "", "", false
	}
	for i, n := range nodes {
		if span[i] {
			continue
		}
		for _, in := range n.inputs {
			if inside[in] && in != distances {
				return nil, "", "", false
			}
		}
	}
	return span, features, distances, true
}

// encodeGraphNode encodes the NearestEntry NodeProto.
func encodeGraphNode(inputs, outputs []string) []byte {
	var b []byte
	for _, in := range inputs {
		b = protowire.AppendTag(b, pbNodeInput, protowire.BytesType)
		b = protowire.AppendString(b, in)
	}
	for _, o := range outputs {
		b = protowire.AppendTag(b, pbNodeOutput, protowire.BytesType)
		b = protowire.AppendString(b, o)
	}
	for _, f := range []struct {
		num protowire.Number
		s   string
	}{{pbNodeName, "nearest_entry"}, {pbNodeOpType, nearestOpName}, {pbNodeDomain, nearestDomain}} {
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		b = protowire.AppendString(b, f.s)
	}
	return b
}

func readGraphNode(b []byte) (graphNode, error) {
	n := graphNode{raw: b}
	err := walkFields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case pbNodeInput:
			n.inputs = append(n.inputs, string(v))
		case pbNodeOutput:
			n.outputs = append(n.outputs, string(v))
		case pbNodeOpType:
			n.op = string(v)
		}
		return nil
	})
	return n, err
}

// walkFields calls fn with the number and contents of every
// length-delimited field of the message b, skipping the others.
func walkFields(b []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(num, v); err != nil {
				return err
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

// walkRaw calls fn with the number and whole encoding (tag included) of
// every field of the message b, in order.
func walkRaw(b []byte, fn func(num protowire.Number, raw []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		fn(num, b[:n+m])
		b = b[n+m:]
	}
	return nil
}

// fieldBytes returns the last occurrence of the length-delimited field num
// of b (nil when absent).
func fieldBytes(b []byte, num protowire.Number) ([]byte, error) {
	var out []byte
	err := walkFields(b, func(n protowire.Number, v []byte) error {
		if n == num {
			out = v
		}
		return nil
	})
	return out, err
}

func fieldString(b []byte, num protowire.Number) (string, error) {
	v, err := fieldBytes(b, num)
	if err != nil {
		return "", err
	}
	if v == nil {
		return "", errors.New("unnamed tensor")
	}
	return string(v), nil
}

package onnx

import "fmt"

// Int8s returns an int8 tensor's values from raw_data (how [Graph.InitializerInt8]
// writes them). It refuses another element type, external data, and a
// value count that is not the product of the dims.
func (t StoredTensor) Int8s() ([]int8, error) {
	if t.Type != Int8 {
		return nil, fmt.Errorf("initializer %q: element type %v, want int8", t.Name, t.Type)
	}
	if t.External {
		return nil, fmt.Errorf("initializer %q: %w", t.Name, ErrExternalData)
	}
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	if int64(len(t.raw)) != n {
		return nil, fmt.Errorf("initializer %q: %d bytes of raw data for shape %v", t.Name, len(t.raw), t.Dims)
	}
	out := make([]int8, n)
	for i, b := range t.raw {
		out[i] = int8(b)
	}
	return out, nil
}

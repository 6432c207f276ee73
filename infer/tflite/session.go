package tflite

import (
	"errors"
	"fmt"
	"strings"
)

// tensorInfo describes one input or output tensor of an interpreter.
type tensorInfo struct {
	name  string
	dims  []int
	float bool // float32
}

// interp is an interpreter as a Session drives it: the C library's, or a
// fake in tests.
type interp interface {
	inputs() []tensorInfo
	outputs() []tensorInfo
	// run copies in[i] into input tensor i, invokes the graph and copies
	// output tensor i into out[i]. The slices have the tensors' sizes.
	run(in, out [][]float32) error
	close() error
}

// tensor is one tensor of a Session: data in the ONNX memory order (what
// Input and Output return), and for an NHWC image the scratch buffer in the
// interpreter's order.
type tensor struct {
	name    string
	data    []float32
	nhwc    []float32 // nil when the orders agree
	h, w, c int
}

// Session is a TFLite interpreter with float32 tensors in the ONNX graphs'
// memory order: an [infer.GraphSession]. Use it from one goroutine at a
// time.
type Session struct {
	it       interp
	ins      []tensor
	outs     []tensor
	inBufs   [][]float32 // what it.run copies from and to
	outBufs  [][]float32
	provider string
	fallback error
}

// newSession wraps an interpreter. Every tensor must be float32 with known
// dims; 4-D tensors [1,H,W,C] with C > 1 are NHWC images, transposed by Run.
func newSession(it interp, provider string, fallback error) (*Session, error) {
	s := &Session{it: it, provider: provider, fallback: fallback}
	for k, list := range [2][]tensorInfo{it.inputs(), it.outputs()} {
		for _, ti := range list {
			t, err := newTensor(ti)
			if err != nil {
				return nil, err
			}
			buf := t.data
			if t.nhwc != nil {
				buf = t.nhwc
			}
			if k == 0 {
				s.ins, s.inBufs = append(s.ins, t), append(s.inBufs, buf)
			} else {
				s.outs, s.outBufs = append(s.outs, t), append(s.outBufs, buf)
			}
		}
	}
	return s, nil
}

func newTensor(ti tensorInfo) (tensor, error) {
	if !ti.float {
		return tensor{}, fmt.Errorf("tflite: tensor %q is not float32; the twins take and give float32", ti.name)
	}
	n := 1
	for _, d := range ti.dims {
		if d <= 0 {
			return tensor{}, fmt.Errorf("tflite: tensor %q has shape %v, want fixed dims", ti.name, ti.dims)
		}
		n *= d
	}
	t := tensor{name: ti.name, data: make([]float32, n)}
	if len(ti.dims) == 4 && ti.dims[0] == 1 && ti.dims[3] > 1 {
		t.h, t.w, t.c = ti.dims[1], ti.dims[2], ti.dims[3]
		t.nhwc = make([]float32, n)
	}
	return t, nil
}

// Provider reports where the session runs: "tflite-xnnpack", "tflite-gpu",
// "tflite-external", "tflite-cpu", or "tflite-cpu (fallback)" when the
// delegate could not be used and Options.AllowFallback let it run without.
func (s *Session) Provider() string { return s.provider }

// FallbackReason returns why the delegate was not used, or nil.
func (s *Session) FallbackReason() error { return s.fallback }

// Input returns the named input's data, in CHW order for an image.
func (s *Session) Input(name string) ([]float32, error) { return find(s.ins, "input", name) }

// Output returns the named output's data, in CHW order for an image.
func (s *Session) Output(name string) ([]float32, error) { return find(s.outs, "output", name) }

func find(ts []tensor, what, name string) ([]float32, error) {
	var have []string
	for _, t := range ts {
		if t.name == name {
			return t.data, nil
		}
		have = append(have, t.name)
	}
	return nil, fmt.Errorf("tflite session: no %s %q (have %s)", what, name, strings.Join(have, ", "))
}

// Run transposes the image inputs to NHWC, invokes the interpreter and
// brings NHWC outputs back to CHW. It allocates nothing.
func (s *Session) Run() error {
	if s.it == nil {
		return errors.New("tflite session: run after close")
	}
	for _, t := range s.ins {
		if t.nhwc != nil {
			chwToHWC(t.nhwc, t.data, t.h, t.w, t.c)
		}
	}
	if err := s.it.run(s.inBufs, s.outBufs); err != nil {
		return fmt.Errorf("tflite session run: %w", err)
	}
	for _, t := range s.outs {
		if t.nhwc != nil {
			hwcToCHW(t.data, t.nhwc, t.h, t.w, t.c)
		}
	}
	return nil
}

// Close deletes the interpreter. It is idempotent.
func (s *Session) Close() error {
	if s.it == nil {
		return nil
	}
	err := s.it.close()
	s.it, s.ins, s.outs, s.inBufs, s.outBufs = nil, nil, nil, nil, nil
	if err != nil {
		return fmt.Errorf("tflite session close: %w", err)
	}
	return nil
}

// chwToHWC writes src, an image in CHW order, into dst in HWC order.
func chwToHWC(dst, src []float32, h, w, c int) {
	plane := h * w
	for ch := range c {
		p := src[ch*plane : (ch+1)*plane]
		for i, v := range p {
			dst[i*c+ch] = v
		}
	}
}

// hwcToCHW writes src, an image in HWC order, into dst in CHW order.
func hwcToCHW(dst, src []float32, h, w, c int) {
	plane := h * w
	for ch := range c {
		p := dst[ch*plane : (ch+1)*plane]
		for i := range p {
			p[i] = src[i*c+ch]
		}
	}
}

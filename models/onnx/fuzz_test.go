package onnx

import (
	"testing"
)

// FuzzReadModelInfo: the ONNX reader is given bundle files from outside;
// whatever the bytes, it returns an error or a consistent ModelInfo, and
// never panics.
func FuzzReadModelInfo(f *testing.F) {
	g := NewGraph("seed")
	x := g.Input("image", Float, 1, 3, 4, 4)
	w := g.Initializer("w", []int64{2, 3, 1, 1}, make([]float32, 6))
	y := g.Op("Conv", []string{x, w}, AttrInts("kernel_shape", 1, 1))
	g.Output(g.Rename(y, "heatmap"), Float, 1, 2, 4, 4)
	data, err := g.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ReadModelInfo(data)
		if err != nil {
			if info != nil {
				t.Fatalf("error %v with a non-nil info", err)
			}
			return
		}
		for _, vs := range [][]ValueInfo{info.Inputs, info.Outputs} {
			for _, v := range vs {
				for _, d := range v.Dims {
					if d < -1 {
						t.Fatalf("%s: dimension %d; symbolic dims must read as -1", v.Name, d)
					}
				}
				if got, ok := find(vs, v.Name); !ok || got.Name != v.Name {
					t.Fatalf("find(%q) failed", v.Name)
				}
			}
		}
		for op, n := range info.Ops {
			if n < 1 {
				t.Fatalf("op %q counted %d times", op, n)
			}
		}
	})
}

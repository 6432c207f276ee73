package tflite

import "testing"

// FuzzReadModelInfo: the reader is given bundle files from outside;
// whatever the bytes, it returns an error or a consistent Info, and never
// panics.
func FuzzReadModelInfo(f *testing.F) {
	f.Add(tinyModel(f))
	f.Add([]byte{})
	f.Add([]byte("\x08\x00\x00\x00TFL3\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ReadModelInfo(data)
		if err != nil {
			if info.Inputs != nil || info.Outputs != nil || info.Ops != nil {
				t.Fatalf("error %v with a non-empty info", err)
			}
			return
		}
		for _, ts := range [][]TensorInfo{info.Inputs, info.Outputs} {
			for _, v := range ts {
				if len(v.Shape) > maxRank {
					t.Fatalf("%s: rank %d", v.Name, len(v.Shape))
				}
				for _, d := range v.Shape {
					if d < -1 {
						t.Fatalf("%s: dimension %d", v.Name, d)
					}
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

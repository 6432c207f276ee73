package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHeatmapFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, size := range [][2]int{{3, 2}, {64, 64}, {17, 5}} {
		w, h := size[0], size[1]
		vals := make([]float32, w*h)
		for i := range vals {
			vals[i] = float32(i)*0.25 - 3
		}
		p := filepath.Join(dir, "hm.npy")
		if err := WriteHeatmap(p, w, h, vals); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		// NumPy's format: the data starts on a 64-byte boundary.
		if hl := int(data[8]) | int(data[9])<<8; (10+hl)%64 != 0 || data[10+hl-1] != '\n' {
			t.Errorf("%dx%d: header length %d does not align the data", w, h, hl)
		}
		gw, gh, got, err := ReadHeatmap(p)
		if err != nil {
			t.Fatal(err)
		}
		if gw != w || gh != h || len(got) != len(vals) {
			t.Fatalf("read %dx%d (%d values), wrote %dx%d", gw, gh, len(got), w, h)
		}
		for i := range vals {
			if got[i] != vals[i] {
				t.Fatalf("value %d = %v, want %v", i, got[i], vals[i])
			}
		}
	}
	if err := WriteHeatmap(filepath.Join(dir, "x.npy"), 3, 3, make([]float32, 8)); err == nil {
		t.Error("WriteHeatmap with the wrong count succeeded")
	}
	bad := filepath.Join(dir, "bad.npy")
	os.WriteFile(bad, []byte("hello"), 0o644)
	if _, _, _, err := ReadHeatmap(bad); err == nil || !strings.Contains(err.Error(), "not a version 1.0 .npy file") {
		t.Errorf("ReadHeatmap(non-npy) = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%d files left in the directory, want hm.npy and bad.npy", len(entries))
	}
}

func TestCompareHeatmaps(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name          string
		ref, got      []float32
		maxAbs, scale float64
	}{
		{"equal", []float32{0.1, 0.2}, []float32{0.1, 0.2}, 0, 1},
		{"small values: absolute", []float32{0.1, 0.2}, []float32{0.1, 0.2005}, 0.0005, 1},
		{"large values: relative", []float32{40, -80}, []float32{40.04, -80}, 0.04, 80},
		{"nan", []float32{1, 2}, []float32{1, nan}, math.Inf(1), 2},
	}
	for _, tc := range tests {
		d, err := CompareHeatmaps(tc.ref, tc.got)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(d.MaxAbs-tc.maxAbs) > 1e-6 && !(math.IsInf(tc.maxAbs, 1) && math.IsInf(d.MaxAbs, 1)) || d.Scale != tc.scale {
			t.Errorf("%s: %+v, want max|Δ| %v scale %v", tc.name, d, tc.maxAbs, tc.scale)
		}
		if want := tc.maxAbs / tc.scale; math.Abs(d.Rel-want) > 1e-6 && !math.IsInf(want, 1) {
			t.Errorf("%s: rel %v, want %v", tc.name, d.Rel, want)
		}
	}
	if _, err := CompareHeatmaps(make([]float32, 2), make([]float32, 3)); err == nil {
		t.Error("heatmaps of different sizes compared")
	}
}

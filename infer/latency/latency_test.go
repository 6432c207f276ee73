package latency

import "testing"

func TestSummarise(t *testing.T) {
	if got := Summarise(nil); got != (StageTiming{}) {
		t.Errorf("Summarise(nil) = %+v, want zero", got)
	}
	for _, tc := range []struct {
		in   []float64
		want StageTiming
	}{
		{[]float64{5}, StageTiming{5, 5, 5}},
		{[]float64{4, 1, 3, 2}, StageTiming{1, 2.5, 4}},
		{[]float64{3, 1, 2}, StageTiming{1, 2, 3}},
	} {
		if got := Summarise(append([]float64(nil), tc.in...)); got != tc.want {
			t.Errorf("Summarise(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	// Nearest rank: the 99th of 200 values is the 198th smallest.
	d := make([]float64, 200)
	for i := range d {
		d[i] = float64(200 - i)
	}
	if got := Summarise(d).P99Ms; got != 198 {
		t.Errorf("p99 of 1..200 = %g, want 198", got)
	}
}

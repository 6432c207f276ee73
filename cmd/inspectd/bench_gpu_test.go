package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/infer/bench"
)

// TestBenchHeatmapCompare is the comparison scripts/gpu-check.sh makes
// between providers, here cpu against cpu: the dumped heatmap agrees with
// a second run, and one changed beyond the tolerance fails with exit 1.
func TestBenchHeatmapCompare(t *testing.T) {
	dir := t.TempDir()
	ref := filepath.Join(dir, "cpu.npy")
	args := []string{"bench", "--size", "32", "--iterations", "1", "--threads", "1"}
	if code, _, stderr := runCLI(t, append(args, "--dump-heatmap", ref)...); code != 0 {
		t.Fatalf("bench --dump-heatmap: exit %d\n%s", code, stderr)
	}
	w, h, vals, err := bench.ReadHeatmap(ref)
	if err != nil || w != 32 || h != 32 {
		t.Fatalf("dumped heatmap %dx%d: %v", w, h, err)
	}
	code, _, stderr := runCLI(t, append(args, "--compare-heatmap", ref)...)
	if code != 0 || !strings.Contains(stderr, "heatmap vs "+ref+": max|Δ| 0,") || !strings.Contains(stderr, ": ok") {
		t.Fatalf("cpu vs cpu: exit %d\n%s", code, stderr)
	}

	// Shift one value by 2e-3 of the heatmap's scale: over 1e-3, within 1e-2.
	scale := float32(1)
	for _, v := range vals {
		scale = max(scale, v, -v)
	}
	vals[len(vals)/2] += 2e-3 * scale
	off := filepath.Join(dir, "off.npy")
	if err := bench.WriteHeatmap(off, w, h, vals); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, append(args, "--compare-heatmap", off)...)
	if code != 1 || !strings.Contains(stderr, "DIFFERS") || !strings.Contains(stderr, "more than --tolerance 0.001") {
		t.Errorf("2e-3 off at tolerance 1e-3: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, append(args, "--compare-heatmap", off, "--tolerance", "1e-2")...); code != 0 {
		t.Errorf("2e-3 off at tolerance 1e-2: exit %d\n%s", code, stderr)
	}
}

func TestBenchGPUFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--tensorrt-fp16"}, "apply to --provider tensorrt"},
		{[]string{"--provider", "cuda", "--engine-cache-dir", "/tmp/x"}, "apply to --provider tensorrt"},
		{[]string{"--tolerance", "0.1"}, "--tolerance applies to --compare-heatmap"},
		{[]string{"--compare-heatmap", "x.npy", "--tolerance", "0"}, "must be positive"},
		{[]string{"--pipeline", "--dump-heatmap", "x.npy"}, "--dump-heatmap does not apply to --pipeline"},
	}
	for _, tc := range tests {
		code, _, stderr := runCLI(t, append([]string{"bench"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

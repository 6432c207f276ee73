package gpio

import (
	"testing"
	"time"
)

// TestRealtimeSchedulerActuates: with Options.Realtime the scheduler still
// fires every part at its time (on the real clock; the benchmark
// BenchmarkActuationError measures the precision).
func TestRealtimeSchedulerActuates(t *testing.T) {
	p50, p99, mx := measureActuation(t, 20, 15*time.Millisecond, "none", true)
	t.Logf("realtime: p50 %s p99 %s max %s over 20 parts", p50, p99, mx)
	if mx > 50*time.Millisecond {
		t.Errorf("an actuation landed %s late", mx)
	}
}

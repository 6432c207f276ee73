package gpio

import (
	"context"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
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

// TestCloseLetsScheduledPartsActuate: a drained shutdown (Close with a
// deadline) still fires the parts due before the deadline at their time;
// only later ones meet the safe state.
func TestCloseLetsScheduledPartsActuate(t *testing.T) {
	cfg := config.Default().GPIO
	cfg.Enabled, cfg.Chip, cfg.RejectLine = true, "sim", "reject"
	cfg.RejectPolarity = "energise_to_reject"
	cfg.RejectDelay = config.Dur(150 * time.Millisecond)
	cfg.RejectPulse = config.Dur(10 * time.Millisecond)
	chip := NewSim()
	a := started(t, cfg, chip, eventHost{&eventLog{}}, Options{})
	at := time.Now()
	a.PartTriggered("last", at)
	if err := a.Deliver(context.Background(), &inspection.Result{PartID: "last", TriggerTime: at, Verdict: inspection.NG}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	fired := false
	for _, act := range chip.Actuations() {
		if act.PartID == "last" && act.Value && act.Reason == "reject" {
			fired = true
			if d := act.Time.Sub(at); d < 150*time.Millisecond {
				t.Errorf("fired %s after the trigger, before its delay", d)
			}
		}
	}
	if !fired {
		t.Errorf("the last part's reject pulse never fired before the safe state: %+v", chip.Actuations())
	}
}

package gpio

import (
	"context"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// timingChip wraps Sim and records every scheduled actuation's error.
type timingChip struct {
	*Sim
	mu     sync.Mutex
	errors []time.Duration
}

type timingOutput struct {
	TaggedOutput
	c *timingChip
}

func (c *timingChip) Output(line string, o OutputOptions) (Output, error) {
	out, err := c.Sim.Output(line, o)
	if err != nil {
		return nil, err
	}
	return &timingOutput{out.(TaggedOutput), c}, nil
}

func (o *timingOutput) SetTagged(v bool, t Tag) error {
	now := time.Now()
	if v && (t.Reason == "reject" || t.Reason == "pass") && !t.Intended.IsZero() {
		o.c.mu.Lock()
		o.c.errors = append(o.c.errors, now.Sub(t.Intended))
		o.c.mu.Unlock()
	}
	return o.TaggedOutput.SetTagged(v, t)
}

// BenchmarkActuationError measures, on the real clock with the simulated
// chip, how far each actuation lands from its intended time while
// CPU-heavy work keeps both cores busy: 1,000 NG parts every 10 ms,
// reject_delay 100 ms. Run with
//
//	go test -run '^$' -bench ActuationError -benchtime 1x ./io/gpio
//
// load=goroutines spins GOMAXPROCS goroutines in this process (the Go
// scheduler's worst case); load=processes spins one shell loop per CPU
// (like ONNX Runtime's native threads competing at the OS level).
// mode=realtime is how inspectd run schedules (Options.Realtime: a
// SCHED_FIFO thread sleeping in the kernel for the last FineWindow).
func BenchmarkActuationError(b *testing.B) {
	for _, mode := range []string{"timers", "realtime"} {
		for _, load := range []string{"none", "goroutines", "processes"} {
			b.Run("mode="+mode+"/load="+load, func(b *testing.B) {
				for b.Loop() {
					p50, p99, mx := measureActuation(b, 1000, 10*time.Millisecond, load, mode == "realtime")
					b.ReportMetric(float64(p50)/1e3, "p50_us")
					b.ReportMetric(float64(p99)/1e3, "p99_us")
					b.ReportMetric(float64(mx)/1e3, "max_us")
				}
			})
		}
	}
}

func measureActuation(tb testing.TB, parts int, spacing time.Duration, load string, realtime bool) (p50, p99, mx time.Duration) {
	stop := make(chan struct{})
	var spinners sync.WaitGroup
	switch load {
	case "goroutines":
		var sink atomic.Uint64
		for range runtime.GOMAXPROCS(0) {
			spinners.Add(1)
			go func() {
				defer spinners.Done()
				x := uint64(1)
				for {
					for range 1 << 16 {
						x = x*6364136223846793005 + 1442695040888963407
					}
					select {
					case <-stop:
						sink.Add(x)
						return
					default:
					}
				}
			}()
		}
	case "processes":
		for range runtime.NumCPU() {
			cmd := exec.Command("sh", "-c", "while :; do :; done")
			if err := cmd.Start(); err != nil {
				tb.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		}
	}
	defer func() { close(stop); spinners.Wait() }()

	cfg := config.Default().GPIO
	cfg.Enabled, cfg.Chip, cfg.RejectLine = true, "sim", "reject"
	cfg.RejectPolarity = "energise_to_reject"
	cfg.RejectDelay = config.Dur(100 * time.Millisecond)
	cfg.RejectPulse = config.Dur(5 * time.Millisecond)
	chip := &timingChip{Sim: NewSim()}
	a, err := New(cfg, chip, Options{Realtime: realtime})
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Start(context.Background(), eventHost{&eventLog{}}); err != nil {
		tb.Fatal(err)
	}
	next := time.Now()
	for i := range parts {
		time.Sleep(time.Until(next))
		id := "p" + itoa(i)
		at := time.Now()
		a.PartTriggered(id, at)
		_ = a.Deliver(context.Background(), &inspection.Result{PartID: id, TriggerTime: at, Verdict: inspection.NG})
		next = next.Add(spacing)
	}
	time.Sleep(200 * time.Millisecond)
	_ = a.Close(context.Background())
	chip.mu.Lock()
	errs := slices.Clone(chip.errors)
	chip.mu.Unlock()
	if len(errs) != parts {
		tb.Fatalf("%d actuations, want %d", len(errs), parts)
	}
	slices.Sort(errs)
	return errs[len(errs)/2], errs[len(errs)*99/100], errs[len(errs)-1]
}

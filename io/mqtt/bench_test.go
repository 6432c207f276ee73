package mqtt_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

// BenchmarkDeliver measures what a result costs the caller of Deliver (the
// sink's goroutine) while the publisher drains the outbox to a local broker
// at the same time. It reports the latency percentiles per call.
func BenchmarkDeliver(b *testing.B) {
	br := mqtttest.StartBroker(b, mqtttest.BrokerOptions{})
	c := startClient(b, baseConfig(b, br), nil)
	r := result(1)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := c.Deliver(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		// Paced like a fast line (2 kHz) so that we measure latency, not
		// a saturated queue.
		time.Sleep(500 * time.Microsecond)
	}
	b.StopTimer()
	reportPercentiles(b, lat, "deliver")
}

// BenchmarkThroughput measures sustained results/s from Deliver through
// the fsync'd outbox to PUBACK from a local mosquitto (QoS 1, window 1),
// including the outbox deletes.
func BenchmarkThroughput(b *testing.B) {
	br := mqtttest.StartBroker(b, mqtttest.BrokerOptions{})
	c := startClient(b, baseConfig(b, br), nil)
	r := result(1)
	start := time.Now()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if err := c.Deliver(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		n++
	}
	for c.Stats().PublishedResults < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	el := time.Since(start)
	b.ReportMetric(float64(n)/el.Seconds(), "results/s")
	if s := c.Stats(); s.OutboxDepth != 0 {
		b.Fatalf("outbox depth %d after drain", s.OutboxDepth)
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration, name string) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(p(0.5), name+"-p50-µs")
	b.ReportMetric(p(0.99), name+"-p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), name+"-max-µs")
}

// Command publisher is a test helper for package mqtt: it publishes results
// through an mqtt.Client in its own process, so that tests can SIGKILL it
// (Last Will, results persisted but not yet published) and start it again on
// the same outbox.
//
// It prints "started", then "persisted N" whenever results up to index N
// are in the outbox on disk, then "closed depth=D" after a graceful Close.
// In -idle mode it only connects and waits to be killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt"
)

func main() {
	var (
		broker    = flag.String("broker", "", "broker URL")
		outbox    = flag.String("outbox", "", "outbox directory")
		station   = flag.String("station", "line1-cam1", "station id")
		from      = flag.Int("from", 1, "first result index")
		to        = flag.Int("to", 0, "last result index")
		interval  = flag.Duration("interval", 0, "pause between results")
		keepalive = flag.Duration("keepalive", 30*time.Second, "MQTT keep-alive")
		drain     = flag.Duration("drain", 60*time.Second, "how long Close may keep publishing")
		idle      = flag.Bool("idle", false, "connect and wait to be killed")
	)
	flag.Parse()
	if err := run(*broker, *outbox, *station, *from, *to, *interval, *keepalive, *drain, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}

func run(broker, outbox, station string, from, to int, interval, keepalive, drain time.Duration, idle bool) error {
	cfg := config.Default().MQTT
	cfg.Broker, cfg.OutboxDir = broker, outbox
	cfg.KeepAlive, cfg.ConnectTimeout = config.Dur(keepalive), config.Dur(2*time.Second)
	cfg.StatsInterval = config.Dur(time.Hour)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := mqtt.New(mqtt.Options{Config: cfg, Station: station, Logger: log, Version: "test"})
	if err != nil {
		return err
	}
	if err := c.Start(context.Background(), nil); err != nil {
		return err
	}
	fmt.Println("started")
	if idle {
		select {}
	}
	done := make(chan struct{})
	go func() {
		// Report durable progress: results from..from+persisted-1 are on disk.
		last := uint64(0)
		for {
			p := c.Stats().Persisted
			if p != last {
				last = p
				fmt.Printf("persisted %d\n", from+int(p)-1)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	for i := from; i <= to; i++ {
		now := time.Now().UTC()
		r := &inspection.Result{
			ID: fmt.Sprintf("%s-%06d", station, i), PartID: fmt.Sprintf("P%06d", i), Station: station,
			Seq: uint64(i), FrameSeq: uint64(i), Trigger: inspection.TriggerFreeRun,
			Verdict: inspection.OK, Reason: inspection.ReasonPass,
			TriggerTime: now, CaptureTime: now, VerdictTime: now,
			Latency: inspection.Latency{TotalMs: 12.5},
			Score:   0.1, Threshold: 0.5, PixelThreshold: 0.5,
			Model: inspection.Model{Product: "demo", BundleHash: "sha256:test"},
		}
		if err := c.Deliver(context.Background(), r); err != nil {
			return err
		}
		if interval > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i-from+1) * interval)))
		}
	}
	if err := c.Flush(context.Background()); err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond)
	close(done)
	fmt.Printf("persisted %d\n", to)
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	// Close returns early when the broker is down; wait for the link
	// first so that "drain" means what it says.
	for c.Stats().OutboxDepth > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	depth := c.Stats().OutboxDepth
	err = c.Close(ctx)
	fmt.Printf("closed depth=%d\n", depth)
	return err
}

// Command spbnode is a test helper for package mqtt's Sparkplug B mode: an
// edge node in its own process, so that tests can SIGKILL it (the broker
// then sends its NDEATH Will) and start it again on the same state
// directory (bdSeq persisted across restarts).
//
// It prints "started" once connected, "delivered N" after its N results are
// in the outbox, then waits to be killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt"
)

func main() {
	var (
		broker  = flag.String("broker", "", "broker URL")
		state   = flag.String("state", "", "state directory (outbox and bdSeq)")
		station = flag.String("station", "line1-cam1", "station id (edge node id)")
		group   = flag.String("group", "plant", "Sparkplug group id")
		results = flag.Int("results", 0, "results to deliver after connecting")
	)
	flag.Parse()
	if err := run(*broker, *state, *station, *group, *results); err != nil {
		fmt.Fprintln(os.Stderr, "spbnode:", err)
		os.Exit(1)
	}
}

func run(broker, state, station, group string, results int) error {
	cfg := config.Default().MQTT
	cfg.Broker, cfg.OutboxDir = broker, filepath.Join(state, "outbox")
	cfg.KeepAlive, cfg.ConnectTimeout = config.Dur(2*time.Second), config.Dur(2*time.Second)
	cfg.StatsInterval = config.Dur(time.Hour)
	cfg.Mode, cfg.Sparkplug = config.MQTTModeSparkplug, config.Sparkplug{GroupID: group, DeviceID: "camera"}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := mqtt.New(mqtt.Options{Config: cfg, Station: station, StateDir: state, Logger: log, Version: "test"})
	if err != nil {
		return err
	}
	if err := c.Start(context.Background(), nil); err != nil {
		return err
	}
	fmt.Println("started")
	for i := 1; i <= results; i++ {
		now := time.Now().UTC()
		r := &inspection.Result{
			ID: fmt.Sprintf("%s-%06d", station, i), PartID: fmt.Sprintf("P%06d", i), Station: station,
			Seq: uint64(i), Trigger: inspection.TriggerFreeRun, Verdict: inspection.OK, Reason: inspection.ReasonPass,
			TriggerTime: now, VerdictTime: now, Score: 0.1, Threshold: 0.5, PixelThreshold: 0.5,
			Model: inspection.Model{Product: "demo", BundleHash: "sha256:test"},
		}
		if err := c.Deliver(context.Background(), r); err != nil {
			return err
		}
	}
	if err := c.Flush(context.Background()); err != nil {
		return err
	}
	fmt.Printf("delivered %d\n", results)
	select {}
}

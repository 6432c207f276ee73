package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/inspectd/inspectd/buildinfo"
	"github.com/inspectd/inspectd/camera"
	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/daemon"
	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive"
	"github.com/inspectd/inspectd/io/gpio"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/plc"
	"github.com/inspectd/inspectd/io/web"
	"github.com/inspectd/inspectd/logging"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/prometheus/client_golang/prometheus"
)

func runDaemon(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "run", "run [-c FILE] [--max-parts N] [--print]\n\nRuns the inspection daemon. Start-up verifies the configuration, the model bundle\n(every checksum), the engine (one warm-up frame) and the camera; any failure exits\nnon-zero naming what failed, before anything is reported ready. SIGTERM/SIGINT finish\nthe parts in flight, flush the outputs and exit 0; SIGHUP reloads the configuration\nand the bundle, keeping the running ones if the new ones fail verification.")
	path := addConfigFlag(fs)
	maxParts := fs.Int("max-parts", 0, "stop after `N` parts, once every output is flushed (0 = run until stopped)")
	print := fs.Bool("print", false, "print one line per part (part ID, verdict, score, latency) to standard output")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *maxParts < 0 {
		return usageErr("run: --max-parts %d must be 0 or more", *maxParts)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	logger, err := logging.New(s.stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return failure(fmt.Errorf("run: %w", err))
	}
	spareProcessor()
	steadyHeap()
	st := &station{path: *path, cfg: cfg, log: logger, stdout: s, maxParts: *maxParts, print: *print}
	defer st.close()
	if err := st.build(); err != nil {
		return failure(fmt.Errorf("run: %w", err))
	}
	return st.run(ctx)
}

// station wires one inspection station from its configuration: the
// camera, the engine factory, the outputs and the daemon that runs them.
type station struct {
	path     string
	cfg      *config.Config
	log      *slog.Logger
	stdout   streams
	maxParts int
	print    bool

	rt   *infer.Runtime
	cam  *camera.Camera
	d    *daemon.Daemon
	web  *web.Server
	mqtt *mqtt.Client

	// rebootRequested is set by Sparkplug's Node Control/Reboot (when
	// mqtt.sparkplug.allow_reboot): the daemon stops cleanly and exits 1,
	// and systemd's Restart=on-failure starts it again.
	rebootRequested atomic.Bool
	cancelRun       context.CancelFunc
	gpio            *gpio.Actuator
	closers         []func()
}

// build creates every subsystem; nothing is started yet.
func (st *station) build() error {
	cfg := st.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	rt, err := openRuntime(cfg.Model.OnnxRuntimeLibrary)
	if err != nil {
		return fmt.Errorf("model.onnxruntime_library: %w", err)
	}
	st.rt = rt
	st.closers = append(st.closers, func() { rt.Close() })

	cam, err := camera.New(cfg.Camera, st.log)
	if err != nil {
		return err
	}
	st.cam = cam

	var events eventRelay
	reg := prometheus.NewRegistry()
	sinks := []inspection.Sink{daemon.NewLogSink(st.log)}
	if st.print {
		sinks = append(sinks, daemon.NewPrintSink(st.stdout.stdout))
	}
	if cfg.Archive.Save != archive.SaveNone {
		a, err := archive.New(archive.Options{Config: cfg.Archive, Logger: st.log, Events: events.send, Station: cfg.Station.ID})
		if err != nil {
			return err
		}
		archiveMetrics(reg, a)
		sinks = append(sinks, a)
	}
	extra := map[string]http.Handler{}
	if cfg.GPIO.Enabled {
		chip, err := gpio.Open(cfg.GPIO)
		if err != nil {
			return err
		}
		if sim, ok := chip.(*gpio.Sim); ok {
			extra["/api/actuations"] = sim.Handler()
			if st.print {
				sim.Observe(st.printActuation)
			}
		}
		act, err := gpio.New(cfg.GPIO, chip, gpio.Options{Logger: st.log, Events: events.send, Station: cfg.Station.ID, Realtime: true})
		if err != nil {
			chip.Close()
			return err
		}
		st.gpio = act
		gpioMetrics(reg, act)
		sinks = append(sinks, act)
	}
	if cfg.PLC.Enabled {
		p, err := plc.New(cfg.PLC, plc.Options{Logger: st.log, Events: events.send, Station: cfg.Station.ID})
		if err != nil {
			return err
		}
		plcMetrics(reg, p)
		sinks = append(sinks, p)
	}

	d, err := daemon.New(daemon.Deps{
		Config:       cfg,
		ReloadConfig: func() (*config.Config, error) { return config.Load(st.path) },
		Camera:       cam,
		NewEngine:    st.newEngine,
		Sinks:        sinks,
		Logger:       st.log,
		Registry:     reg,
		Notifier:     daemon.Systemd{},
		Version:      buildinfo.Version,
		Commit:       buildinfo.Commit,
		MaxParts:     st.maxParts,
		OnRunning:    st.onRunning,
	})
	if err != nil {
		return err
	}
	st.d = d
	events.to(d)
	if st.gpio != nil {
		st.gpio.SetControl(d)
	}
	if cfg.MQTT.Enabled {
		m, err := mqtt.New(mqtt.Options{Config: cfg.MQTT, Station: cfg.Station.ID, StateDir: cfg.StateDir,
			Logger: st.log, Control: d, Version: buildinfo.Version, Reboot: st.reboot})
		if err != nil {
			return err
		}
		st.mqtt = m
		mqttMetrics(reg, m)
		// The durable point: results fsync'd to the outbox survive a crash;
		// accepted ones may still be in memory.
		register(reg, []series{
			{"inspectd_mqtt_results_accepted_total", "Results handed to the MQTT output (not yet on disk).", true, func() float64 { return float64(m.Stats().Accepted) }},
			{"inspectd_mqtt_results_persisted_total", "Results written (fsync) to the MQTT outbox: from here on they survive a crash.", true, func() float64 { return float64(m.Stats().Persisted) }},
		})
		d.AddSink(m)
	}
	if cfg.HTTP.Enabled {
		w, err := web.New(web.Options{Listen: cfg.HTTP.Listen, Logger: st.log, Control: d, Gatherer: d.Registry(), Extra: extra})
		if err != nil {
			return err
		}
		st.web = w
		d.AddSink(w)
	}
	return nil
}

// newEngine builds an ONNX Runtime engine for a verified bundle.
func (st *station) newEngine(b *bundle.Bundle, m config.Model) (inspection.Engine, error) {
	return infer.NewEngine(st.rt, b, infer.EngineOptions{
		IntraOpThreads: m.Threads,
		Provider:       m.Provider,
		TensorRTFP16:   m.TensorRTFP16,
		EngineCacheDir: m.EngineCacheDir,
		AllowFallback:  m.AllowFallback,
	})
}

// printActuation shows a simulated output change under the part lines.
func (st *station) printActuation(a gpio.Actuation) {
	level := "off"
	if a.Value {
		level = "ON "
	}
	line := fmt.Sprintf("  gpio %-7s %s", a.Line, level)
	if a.PartID != "" {
		line += "  part " + a.PartID
	}
	if !a.Intended.IsZero() {
		line += fmt.Sprintf("  at %s (scheduled %s, %+.2f ms)", a.Time.Format("15:04:05.000"), a.Intended.Format("15:04:05.000"), a.ErrorUs/1000)
	}
	if a.Reason != "" {
		line += "  [" + a.Reason + "]"
	}
	fmt.Fprintln(st.stdout.stdout, line)
}

func (st *station) onRunning(running bool) {
	if st.gpio != nil {
		st.gpio.SetReady(running)
	}
}

// run starts the HTTP server, handles SIGHUP, and runs the daemon until
// ctx ends or --max-parts is reached.
func (st *station) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st.cancelRun = cancel
	if st.mqtt != nil {
		// Fails only on configuration mistakes (credentials, TLS); an
		// unreachable broker is retried in the background while the
		// outbox keeps every result.
		if err := st.mqtt.Start(ctx); err != nil {
			st.mqtt.Close(context.Background())
			return failure(fmt.Errorf("run: %w", err))
		}
	}
	if st.web != nil {
		if err := st.web.Start(ctx); err != nil {
			return failure(fmt.Errorf("run: %w", err))
		}
		st.log.Info("status page", "url", "http://"+st.web.Addr()+"/")
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			st.log.Info("SIGHUP: reloading configuration and model", "config", st.path)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			if err := st.d.Reload(rctx); err == nil {
				st.log.Info("reload verified; swapping between two parts")
			}
			cancel()
		}
	}()
	if err := st.d.Run(ctx); err != nil {
		if st.gpio != nil {
			st.gpio.Halt("start-up failed: " + err.Error())
			st.gpio.Close(context.Background())
		}
		if st.web != nil {
			st.web.Close(context.Background())
		}
		if st.mqtt != nil {
			st.mqtt.Close(context.Background())
		}
		return failure(fmt.Errorf("run: %w", err))
	}
	if st.rebootRequested.Load() {
		return failure(errors.New("run: restart requested by Sparkplug Node Control/Reboot; exiting 1 so that systemd restarts inspectd"))
	}
	return nil
}

// reboot stops the daemon for a restart by the service manager.
func (st *station) reboot() {
	st.log.Warn("Sparkplug Node Control/Reboot: stopping for a restart")
	st.rebootRequested.Store(true)
	if st.cancelRun != nil {
		st.cancelRun()
	}
}

func (st *station) close() {
	for i := len(st.closers) - 1; i >= 0; i-- {
		st.closers[i]()
	}
}

// eventRelay hands events raised by outputs built before the daemon to the
// daemon once it exists; earlier ones are logged only by their source.
type eventRelay struct{ d atomic.Pointer[daemon.Daemon] }

func (r *eventRelay) to(d *daemon.Daemon) { r.d.Store(d) }

func (r *eventRelay) send(e inspection.Event) {
	if d := r.d.Load(); d != nil {
		d.ReportEvent(e)
	}
}

// steadyHeap makes the garbage collector keep the heap within 25 % of what
// the daemon really holds (unless $GOGC says otherwise): an edge box should
// see a flat resident size, not a sawtooth of twice the live heap. The cost
// is a short concurrent collection every few seconds (`make soak`).
func steadyHeap() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
}

// spareProcessor gives the Go scheduler one processor more than the CPUs
// it would use (unless $GOMAXPROCS says otherwise): the engine's native
// threads keep the cores busy, and the realtime reject scheduler must find
// a free processor the moment its sleep ends (measured: actuation error
// p99 2.2 ms without, 0.14 ms with, 1080p frames on 2 cores).
func spareProcessor() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
}

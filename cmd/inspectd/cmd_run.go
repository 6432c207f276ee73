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
	"strconv"
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
	"github.com/inspectd/inspectd/models/rollout"
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
	// What check-config verifies of this machine, run refuses too, before
	// anything is opened.
	if err := verifyEnvironment(cfg); err != nil {
		return failure(fmt.Errorf("run: %s is invalid:\n%w", cfg.File, err))
	}
	spareProcessor()
	steadyHeap()
	st := &station{path: *path, cfg: cfg, log: logger, stdout: s, maxParts: *maxParts, print: *print}
	if err := st.build(); err != nil {
		st.close()
		return failure(fmt.Errorf("run: %w", err))
	}
	return st.run(ctx)
}

// station wires one inspection station from its configuration: the
// camera, the engine factory, the outputs and the daemon that runs them.
// It owns every component's lifecycle: build creates them (nothing starts,
// nothing is acquired that close does not release), run verifies the model,
// starts the outputs, runs the daemon, and closes the outputs in reverse.
type station struct {
	path     string
	cfg      *config.Config
	log      *slog.Logger
	stdout   streams
	maxParts int
	print    bool

	unlock  func() // releases the state_dir lock
	rt      *infer.Runtime
	tfl     tfliteLibraries // model.runtime = "tflite"
	cam     *camera.Camera
	d       *daemon.Daemon
	gpio    *gpio.Actuator
	web     *web.Server
	outputs []output // in start order; closed in reverse

	store *rollout.Store // [rollout] enabled: installed bundles (run_rollout.go)

	// rebootRequested is set by Sparkplug's Node Control/Reboot (when
	// mqtt.sparkplug.allow_reboot): the daemon stops cleanly and exits 1,
	// and systemd's Restart=on-failure starts it again.
	rebootRequested atomic.Bool
	cancelRun       atomic.Pointer[context.CancelFunc]
}

// output is one output's lifecycle as the station drives it: started
// (with the daemon as its host) before the daemon runs, closed after the
// daemon has drained its queue.
type output struct {
	name  string
	key   string // the configuration section, for start-up errors
	start func(ctx context.Context, d *daemon.Daemon) error
	close func(ctx context.Context) error
}

// outputCloseTimeout bounds closing the outputs on shutdown (MQTT flushes
// its outbox, GPIO actuates the parts already scheduled).
const outputCloseTimeout = 10 * time.Second

// keyError names the configuration key behind a start-up failure with its
// file and line, as check-config names its problems.
func keyError(cfg *config.Config, key string, err error) error {
	p := cfg.Problem(key, "")
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if loc == "" {
		return fmt.Errorf("%s: %w", key, err)
	}
	return fmt.Errorf("%s: %s: %w", loc, key, err)
}

// build creates every subsystem; nothing is started yet. On an error,
// close releases what was built.
func (st *station) build() error {
	cfg := st.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return keyError(cfg, "state_dir", err)
	}
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return keyError(cfg, "state_dir", err)
	}
	st.unlock = unlock
	if err := st.openRollout(); err != nil {
		return err
	}
	rt, err := openRuntime(cfg.Model.OnnxRuntimeLibrary)
	if err != nil {
		return keyError(cfg, "model.onnxruntime_library", err)
	}
	st.rt = rt
	logRuntime(st.log, rt)
	st.tfl.log = st.log
	if cfg.Model.Runtime == config.RuntimeTFLite {
		if _, err := st.tfl.open(cfg.Model.TFLite.Library); err != nil {
			return keyError(cfg, "model.tflite.library", err)
		}
	}

	cam, err := camera.New(cfg.Camera, st.log)
	if err != nil {
		return keyedProblems(cfg, "camera", err)
	}
	st.cam = cam

	reg := prometheus.NewRegistry()
	sinks := []inspection.Sink{daemon.NewLogSink(st.log)}
	if st.print {
		p := daemon.NewPrintSink(st.stdout.stdout)
		sinks = append(sinks, p)
		st.outputs = append(st.outputs, output{name: "print", close: p.Close})
	}
	if cfg.Archive.Save != archive.SaveNone {
		a, err := archive.New(archive.Options{Config: cfg.Archive, Logger: st.log, Station: cfg.Station.ID})
		if err != nil {
			return keyError(cfg, "archive.dir", err)
		}
		reg.MustRegister(a)
		sinks = append(sinks, a)
		st.outputs = append(st.outputs, output{name: "archive", key: "archive.dir", close: a.Close,
			start: func(ctx context.Context, d *daemon.Daemon) error { return a.Start(ctx, d) }})
	}
	if cfg.PLC.Enabled {
		po := plc.Options{Logger: st.log, Station: cfg.Station.ID}
		if cfg.Changeover.Source == config.ChangeoverPLC { // the PLC writes the product code (io/plc/product.go)
			po.ProductRegister, po.ProductPoll = cfg.Changeover.PLCRegister, cfg.Changeover.PLCPoll.D
		}
		p, err := plc.New(cfg.PLC, po)
		if err != nil {
			return keyError(cfg, "plc.address", err)
		}
		reg.MustRegister(p)
		sinks = append(sinks, p)
		st.outputs = append(st.outputs, output{name: "plc", key: "plc.address", close: p.Close,
			start: func(ctx context.Context, d *daemon.Daemon) error { return p.Start(ctx, d) }})
	}
	if cfg.MQTT.Enabled {
		m, err := mqtt.New(mqtt.Options{Config: cfg.MQTT, Station: cfg.Station.ID, StateDir: cfg.StateDir,
			Logger: st.log, Version: buildinfo.Version, Reboot: st.reboot,
			ModelInstallTimeout: cfg.Rollout.DownloadTimeout.D + 5*time.Minute}) // download + verify, load, warm-up
		if err != nil {
			return keyError(cfg, "mqtt.broker", err)
		}
		reg.MustRegister(m)
		sinks = append(sinks, m)
		st.outputs = append(st.outputs, output{name: "mqtt", key: "mqtt.broker", close: m.Close,
			start: func(ctx context.Context, d *daemon.Daemon) error { return m.Start(ctx, d) }})
	}
	extra := map[string]http.Handler{}
	if cfg.GPIO.Enabled {
		chip, err := gpio.Open(cfg.GPIO)
		if err != nil {
			return keyError(cfg, "gpio.chip", err)
		}
		if sim, ok := chip.(*gpio.Sim); ok {
			extra["/api/actuations"] = sim.Handler()
			extra["/api/sim-inputs"] = sim.InputHandler() // the demo sets the code lines and part-present edges
			if st.print {
				sim.Observe(st.printActuation)
			}
		}
		gpo := gpio.Options{Logger: st.log, Station: cfg.Station.ID, Realtime: true}
		if cfg.Changeover.Source == config.ChangeoverGPIO { // product code lines read at each part-present edge
			gpo.ProductLines = cfg.Changeover.GPIOLines
		}
		act, err := gpio.New(cfg.GPIO, chip, gpo)
		if err != nil {
			chip.Close()
			return keyError(cfg, "gpio", err)
		}
		st.gpio = act
		reg.MustRegister(act)
		sinks = append(sinks, act)
		st.outputs = append(st.outputs, output{name: "gpio", key: "gpio.chip", close: act.Close,
			start: func(ctx context.Context, d *daemon.Daemon) error { return act.Start(ctx, d) }})
	}
	if cfg.HTTP.Enabled {
		if cfg.HTTP.InsecureRemote() {
			// Only with http.allow_insecure_remote = true: verifyEnvironment refuses it otherwise.
			st.log.Warn("http.listen is reachable from other machines without TLS or without users: anyone on the network can operate this station (http.allow_insecure_remote = true; docs/security.md)",
				"component", "web", "listen", cfg.HTTP.Listen, "tls", cfg.HTTP.TLS(), "users_file", cfg.HTTP.UsersFile)
		}
		w, err := web.New(web.Options{Listen: cfg.HTTP.Listen, History: cfg.HTTP.History, Logger: st.log, Gatherer: reg, Extra: extra,
			UsersFile: cfg.HTTP.UsersFile, SessionTTL: cfg.HTTP.SessionTTL.D, OpenPaths: cfg.HTTP.OpenPaths,
			TLSCert: cfg.HTTP.TLSCert, TLSKey: cfg.HTTP.TLSKey,
			Review: reviewOptions(cfg, st.log)})
		if err != nil {
			return keyError(cfg, "http.listen", err)
		}
		st.web = w
		sinks = append(sinks, w)
		st.outputs = append(st.outputs, output{name: "web", key: "http.listen", close: w.Close,
			start: func(ctx context.Context, d *daemon.Daemon) error { return w.Start(ctx, d) }})
	}

	d, err := daemon.New(daemon.Deps{
		Config:       cfg,
		ReloadConfig: st.reloadConfig, // config.Load with the installed bundles (run_rollout.go)
		Camera:       cam,
		NewEngine:    st.newEngine,
		Sinks:        sinks,
		Logger:       st.log,
		Registry:     reg,
		Notifier:     daemon.Systemd{},
		Version:      buildinfo.Version,
		Commit:       buildinfo.Commit,
		MaxParts:     st.maxParts,
		Rollout:      st.rolloutStore(),
	})
	if err != nil {
		return err
	}
	st.d = d
	cam.OnSkip(func(e *camera.ImageError) {
		f := map[string]string{"file": e.Path, "reason": e.Reason}
		if e.Width != 0 || e.Height != 0 {
			f["format"], f["width"], f["height"] = e.Format, strconv.FormatInt(e.Width, 10), strconv.FormatInt(e.Height, 10)
		}
		d.ReportEvent(inspection.Event{Severity: inspection.Warning, Kind: inspection.EventImageSkipped,
			Message: "camera skipped an image: " + e.Error(), Fields: f})
	})
	return nil
}

// newEngine builds the engine of a verified bundle for model.runtime:
// ONNX Runtime's, or TFLite's (engine_select.go).
func (st *station) newEngine(b *bundle.Bundle, m config.Model) (inspection.Engine, error) {
	if m.Runtime == config.RuntimeTFLite {
		return st.tfl.newEngine(b, m)
	}
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

// run verifies the model, starts the outputs, handles SIGHUP, and runs the
// daemon until ctx ends or --max-parts is reached; then it closes the
// outputs. Nothing is opened towards the line (GPIO lines, the PLC, the
// broker, the HTTP port) before the model has been verified.
func (st *station) run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st.cancelRun.Store(&cancel)
	ran := false
	defer func() {
		if err != nil && st.gpio != nil {
			st.gpio.Halt("stopped on an error: " + err.Error())
		}
		st.closeOutputs(ran)
		st.closeRest()
	}()

	if err := st.d.Load(ctx); err != nil {
		if ctx.Err() != nil {
			st.log.Info("stopped during start-up, before the model was verified")
			return nil
		}
		return failure(fmt.Errorf("run: %w", err))
	}
	for _, o := range st.outputs {
		if o.start != nil {
			if err := o.start(ctx, st.d); err != nil {
				st.d.Close()
				return failure(fmt.Errorf("run: %w", keyError(st.cfg, o.key, err)))
			}
		}
	}
	if st.web != nil {
		st.log.Info("status page", "url", st.web.URL())
	}
	st.reportRolloutCleaned()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	hupDone := make(chan struct{})
	hupCtx, stopHUP := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
			}
			st.log.Info("SIGHUP: reloading configuration and model, clearing latched output faults", "config", st.path)
			if err := st.d.ClearFaults(); err != nil {
				st.log.Debug("SIGHUP: no latched faults to clear", "err", err)
			}
			if st.web != nil {
				// TLS certificate and users file; what fails to load keeps the running one (logged).
				_ = st.web.Reload()
			}
			rctx, cancel := context.WithTimeout(hupCtx, 2*time.Minute)
			if err := st.d.Reload(rctx); err == nil {
				st.log.Info("reload verified; swapping between two parts")
			}
			cancel()
		}
	}()
	ran = true
	runErr := st.d.Run(ctx)
	signal.Stop(hup)
	stopHUP()
	<-hupDone
	if runErr != nil {
		return failure(fmt.Errorf("run: %w", runErr))
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
	if c := st.cancelRun.Load(); c != nil {
		(*c)()
	}
}

// closeOutputs closes every output in reverse start order, within
// outputCloseTimeout (Close is safe on an output that was never started).
// The print output's Close writes the run's summary: only after a run.
func (st *station) closeOutputs(ran bool) {
	ctx, cancel := context.WithTimeout(context.Background(), outputCloseTimeout)
	defer cancel()
	for i := len(st.outputs) - 1; i >= 0; i-- {
		o := st.outputs[i]
		if o.start == nil && !ran {
			continue
		}
		if err := o.close(ctx); err != nil {
			st.log.Error("closing an output", "output", o.name, "err", err)
		}
	}
	st.outputs = nil
}

// closeRest releases the camera, the runtime and the state_dir lock (the
// daemon closed the camera if it ran; closing twice is safe).
func (st *station) closeRest() {
	if st.cam != nil {
		if err := st.cam.Close(); err != nil {
			st.log.Warn("closing the camera", "err", err)
		}
	}
	if st.rt != nil {
		st.rt.Close()
	}
	st.tfl.Close()
	if st.unlock != nil {
		st.unlock()
		st.unlock = nil
	}
}

// close releases everything build created, for a build that failed.
func (st *station) close() {
	if st.d != nil {
		st.d.Close()
	}
	st.closeOutputs(false)
	st.closeRest()
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

// reviewOptions turns on the status page's review view ([review]) when
// the archive keeps results to review; with archive.save = "none" it
// stays off (check-config reports an explicit review.enabled = true).
func reviewOptions(cfg *config.Config, log *slog.Logger) web.ReviewOptions {
	if !cfg.Review.Enabled {
		return web.ReviewOptions{}
	}
	if cfg.Archive.Save == archive.SaveNone {
		log.Info("review view off: archive.save is \"none\", nothing is archived to review")
		return web.ReviewOptions{}
	}
	return web.ReviewOptions{ArchiveDir: cfg.Archive.Dir, LabelLog: cfg.LabelLogPath(), DefectTypes: cfg.Review.DefectTypes}
}

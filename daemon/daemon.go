package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging"
)

// Deps are the parts the daemon is wired from. cmd/inspectd builds the
// concrete camera, engine factory and sinks from the configuration.
type Deps struct {
	// Config is the validated configuration the daemon starts with.
	Config *config.Config
	// ReloadConfig re-reads and validates the configuration file for
	// Reload; nil reloads the bundle with the current configuration.
	ReloadConfig func() (*config.Config, error)
	// Camera is the frame source; the daemon starts and closes it.
	Camera inspection.Camera
	// NewEngine builds the engine of a verified bundle.
	NewEngine EngineFactory
	// Sinks are the outputs, each given its own bounded queue. The daemon
	// delivers to them (and calls their optional interfaces: ImageSink,
	// EventSink, TriggerObserver, ReadyIndicator) but never starts or
	// closes them: whoever built them does, around Run.
	Sinks  []inspection.Sink
	Logger *slog.Logger
	// Registry receives the daemon's metrics; nil creates one.
	Registry *prometheus.Registry
	// Notifier reports to systemd; nil reports to nobody.
	Notifier Notifier
	// Version and Commit label inspectd_build_info and the status.
	Version, Commit string
	// MaxParts ends Run after that many results (0 = run until stopped).
	MaxParts int
	// ShutdownTimeout bounds finishing the parts in flight and draining
	// the sink queues on shutdown. Default 10 s.
	ShutdownTimeout time.Duration
	// SinkQueue is each sink's queue capacity. Default 1024.
	SinkQueue int
	// TriggerQueue is how many accepted triggers may wait for their frame;
	// one more is still accepted, in order, as an ERROR "overload" part.
	// Default 64.
	TriggerQueue int
	// Rollout installs signed bundles (models/rollout.Store) for the
	// model commands (rollout.go); nil: they fail, rollout not enabled.
	Rollout RolloutStore
}

// Daemon is one running inspection station. Create it with New, then call
// Run once. Its Control methods (Trigger, Reload, SetThresholds, Pause,
// Resume, Status) and ReportEvent are safe for concurrent use.
//
// The inspect loop is the only goroutine that produces results: every
// accepted trigger, overload and shutdown ERRORs included, passes through
// the intake queue, the capture stage and the inspect loop in order, so each
// sink receives exactly one result per accepted trigger, in trigger order.
type Daemon struct {
	deps    Deps
	log     *slog.Logger
	camera  inspection.Camera
	reg     *prometheus.Registry
	metrics *metrics
	notify  Notifier
	sinks   *sinkSet
	started time.Time
	runID   string

	state  modelState
	stats  *stats
	intake *intake

	pendingMu  sync.Mutex
	pending    []*pendingSwap  // reloaded models waiting for the inspect loop, in order
	hasPending atomic.Bool     // pending is not empty
	swapped    chan struct{}   // wakes the inspect loop for a swap
	reloadMu   sync.Mutex      // one reload at a time
	loading    atomic.Bool     // a model load is running (maybe abandoned by its reload)
	loaders    sync.WaitGroup  // model loads started by Reload
	life       context.Context // ends when shutdown begins: cancels loads, refuses reloads
	endLife    context.CancelFunc

	// modelOps serializes the model commands' activations and rollbacks
	// (rollout.go): the daemon's model and the store's record change
	// together, never interleaved with another command's.
	modelOps sync.Mutex

	paused    atomic.Bool
	resultSeq atomic.Uint64
	busySince atomic.Int64 // unix nanos the inspect loop started its current part, 0 when idle
	stop      chan struct{}
	stopOnce  sync.Once
}

var _ inspection.Control = (*Daemon)(nil)

// Reasons Trigger refuses a part before and after the daemon inspects.
var (
	errNotRunning = errors.New("the daemon is not inspecting yet")
	errStopping   = errors.New("the daemon is stopping")
	errPartLimit  = errors.New("the daemon reached its part limit and is stopping")
)

// New checks the wiring. Nothing is started until Run.
func New(deps Deps) (*Daemon, error) {
	switch {
	case deps.Config == nil:
		return nil, errors.New("daemon: no configuration")
	case deps.Camera == nil:
		return nil, errors.New("daemon: no camera")
	case deps.NewEngine == nil:
		return nil, errors.New("daemon: no engine factory")
	}
	if deps.Logger == nil {
		deps.Logger = logging.Discard()
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	if deps.ShutdownTimeout <= 0 {
		deps.ShutdownTimeout = 10 * time.Second
	}
	if deps.SinkQueue <= 0 {
		deps.SinkQueue = 1024
	}
	if deps.TriggerQueue <= 0 {
		deps.TriggerQueue = 64
	}
	now := time.Now()
	d := &Daemon{
		deps:    deps,
		log:     logging.Component(deps.Logger, "daemon"),
		camera:  deps.Camera,
		reg:     deps.Registry,
		notify:  deps.Notifier,
		started: now,
		runID:   strconv.FormatInt(now.UnixMilli(), 36),
		stats:   newStats(now),
		// Overload entries are a few bytes each: up to 16 per waiting
		// slot keep their verdict; beyond that a flood is refused.
		intake:  newIntake(deps.TriggerQueue, 17*deps.TriggerQueue),
		swapped: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	d.state.cfg = deps.Config
	d.life, d.endLife = context.WithCancel(context.Background())
	d.intake.close(errNotRunning)
	d.metrics = newMetrics(d.reg, d, deps.Version, deps.Commit)
	d.sinks = newSinkSet(deps.Sinks, deps.SinkQueue, d.log, func(name string) {
		d.metrics.sinkDropped.WithLabelValues(name).Inc()
	})
	return d, nil
}

// Registry returns the registry holding the daemon's metrics, for /metrics.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Load verifies every product's bundle (every checksum), builds its engine
// and runs the warm-up frame (see LoadModel), starting nothing else, so that
// a station can verify everything before it opens its outputs; the initial
// product's model and those that fit changeover.memory_budget_mb stay
// loaded. Run calls it unless it was called. After a Load error the daemon
// cannot run.
func (d *Daemon) Load(ctx context.Context) error {
	cfg := d.state.config()
	stopExtending := d.extendStartup(loadExtendEvery, loadExtendMax)
	err := d.loadProducts(ctx, cfg)
	stopExtending()
	if err != nil {
		d.endLife()
		d.intake.close(errStopping)
		return err
	}
	// Loading decoded and verified megabytes that are garbage now: return
	// them before the first part, so that the heap's growth target is set by
	// what inspection really keeps (a steady RSS in `make soak`).
	debug.FreeOSMemory()
	return nil
}

// Close releases what Load acquired when Run is never called (a station
// whose outputs failed to start). After Run it does nothing.
func (d *Daemon) Close() {
	d.endLife()
	d.intake.close(errStopping)
	d.closeModel()
}

// Run verifies everything (bundle checksums, engine warm-up, camera open),
// reports READY to systemd, and inspects parts until ctx ends, MaxParts
// results were produced, or a replay without loop ends. Then it stops
// taking triggers, finishes the parts in flight, drains the sink queues,
// closes the camera and the model, and returns nil. A start-up failure
// returns an error naming what failed; nothing is left running then.
func (d *Daemon) Run(ctx context.Context) error {
	if d.state.selected() == nil {
		if err := d.Load(ctx); err != nil {
			return err
		}
	}
	model, cfg, _ := d.state.snapshot()
	active := d.state.selected().name

	d.camera.Watch(d.onCamera)
	openCtx, cancelOpen := context.WithTimeout(ctx, cfg.Camera.OpenTimeout.D+time.Second)
	err := d.camera.Start(openCtx)
	cancelOpen()
	if err != nil {
		d.Close()
		return fmt.Errorf("camera: %w", err)
	}

	// Sinks deliver until drained, independent of ctx: a shutdown must
	// still flush what is queued.
	sinkCtx, cancelSinks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSinks()
	d.sinks.start(sinkCtx)

	// Triggered parts queue up in the intake (each keeps the frame grabbed
	// right after its trigger); free-run hands over one frame at a time,
	// fetched only when the inspect loop is ready for it, so it is as fresh
	// as the camera allows.
	freeRun := cfg.Trigger.Mode == config.TriggerFreeRun
	jobs := make(chan job, 16)
	if freeRun {
		jobs = make(chan job)
	}
	ready := make(chan struct{}, 1)
	// Capture outlives ctx: on shutdown the parts already triggered still
	// get their frames until the shutdown gives up on them.
	captureCtx, stopCapture := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCapture()
	abandonCtx, abandon := context.WithCancel(context.Background())
	defer abandon()
	endOfStream := make(chan struct{})
	var eos sync.Once
	endedStream := func() { eos.Do(func() { close(endOfStream) }) }
	if freeRun {
		go d.captureFreeRun(captureCtx, ready, jobs, endedStream)
	} else {
		go d.captureTriggered(captureCtx, jobs, endedStream)
	}
	inspectDone := make(chan struct{})
	go func() {
		defer close(inspectDone)
		d.inspectLoop(abandonCtx, jobs, ready)
	}()
	statusCtx, stopStatus := context.WithCancel(ctx)
	reportDone := make(chan struct{})
	go func() {
		defer close(reportDone)
		d.reportLoop(statusCtx)
	}()

	if !freeRun {
		d.intake.open()
	}
	d.notifyState("READY=1")
	d.notifyState("STATUS=inspecting; " + d.statusLine())
	d.sinks.setReady(true)
	d.emitEvent(inspection.Info, inspection.EventStarted, fmt.Sprintf("inspecting %s with %s (%s), trigger mode %s", active, model.Bundle.Manifest.Product, short(model.Bundle.Hash), cfg.Trigger.Mode),
		map[string]string{"product": active, "bundle_hash": model.Bundle.Hash})
	d.log.Info("inspection started", "station", cfg.Station.ID, "trigger", cfg.Trigger.Mode, "camera", cfg.Camera.Source)

	select {
	case <-ctx.Done():
		d.log.Info("stopping: signal received")
	case <-d.stop:
		d.log.Info("stopping: part limit reached", "parts", d.deps.MaxParts)
	case <-endOfStream:
		d.log.Info("stopping: the replay reached its end")
	}
	stopStatus()
	<-reportDone
	return d.shutdown(freeRun, stopCapture, abandon, inspectDone)
}

// shutdown closes the intake (no trigger is accepted from here on; every
// one accepted before still gets its result), lets the parts in flight
// finish within half the shutdown timeout — the rest become ERROR
// "shutdown" results, in their place — drains the sink queues within the
// rest, and closes the camera and the models.
func (d *Daemon) shutdown(freeRun bool, stopCapture, abandon context.CancelFunc, inspectDone <-chan struct{}) error {
	d.intake.close(errStopping)
	d.endLife() // refuses new reloads and cancels a load in flight
	d.notifyState("STOPPING=1")
	d.sinks.setReady(false)
	d.emitEvent(inspection.Info, inspection.EventStopping, "inspection stopping", nil)
	deadline := time.Now().Add(d.deps.ShutdownTimeout)

	if freeRun {
		stopCapture() // free-run frames are nobody's parts
	}
	giveUp := time.AfterFunc(d.deps.ShutdownTimeout/2, func() {
		d.log.Warn("shutdown: parts still in flight after half the shutdown timeout; the rest get ERROR shutdown verdicts",
			"timeout", d.deps.ShutdownTimeout)
		stopCapture()
		abandon()
	})
	<-inspectDone // the capture stage closed the jobs once the intake was empty
	giveUp.Stop()
	stopCapture()
	abandon()

	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	left := d.sinks.drain(ctx, d.log)
	if err := d.camera.Close(); err != nil {
		d.log.Warn("closing the camera", "err", err)
	}
	d.closeModel()
	d.reloadMu.Lock() // a Reload still running hands its model over or closes it
	d.pendingMu.Lock()
	swaps := d.pending
	d.pending = nil
	d.pendingMu.Unlock()
	for _, s := range swaps {
		s.close(d)
	}
	d.reloadMu.Unlock()
	if !waitGroupWithin(ctx, &d.loaders) {
		d.log.Warn("shutdown: a model load did not finish in time; it closes its engine when it does")
	}
	c := d.Status().Counts
	d.log.Info("stopped", "parts", c.Total, "ok", c.OK, "ng", c.NG, "error", c.Error, "undelivered", left)
	return nil
}

// waitGroupWithin waits for wg until ctx ends; false if ctx ended first.
func waitGroupWithin(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

func (d *Daemon) closeModel() {
	for _, m := range d.state.takeAll() {
		if err := m.Close(); err != nil {
			d.log.Warn("closing the engine", "err", err)
		}
	}
}

// notifyState sends one line to the service manager, if any.
func (d *Daemon) notifyState(state string) {
	if d.notify == nil {
		return
	}
	if _, err := d.notify.Notify(state); err != nil {
		d.log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

// reportLoop pets the systemd watchdog while the pipeline makes progress
// and publishes a STATUS= line every few seconds.
func (d *Daemon) reportLoop(ctx context.Context) {
	var wd time.Duration
	if d.notify != nil {
		wd = d.notify.WatchdogInterval()
	}
	pet := wd / 2
	if pet <= 0 {
		pet = time.Hour
	}
	petTick := time.NewTicker(pet)
	defer petTick.Stop()
	statusTick := time.NewTicker(5 * time.Second)
	defer statusTick.Stop()
	lastFrames := d.camera.Stats().Captured
	for {
		select {
		case <-ctx.Done():
			return
		case <-statusTick.C:
			d.notifyState("STATUS=" + d.statusLine())
		case <-petTick.C:
			frames := d.camera.Stats().Captured
			if d.progressing(wd, frames != lastFrames) {
				d.notifyState("WATCHDOG=1")
			} else {
				d.log.Warn("pipeline not progressing; not petting the systemd watchdog", "camera", d.camera.Status().State)
			}
			lastFrames = frames
		}
	}
}

// progressing reports whether the pipeline did its work over the last
// watchdog period: the camera delivered frames and the inspect loop is not
// stuck on one part.
func (d *Daemon) progressing(wd time.Duration, cameraProgress bool) bool {
	if !cameraProgress {
		return false
	}
	if b := d.busySince.Load(); b != 0 && time.Since(time.Unix(0, b)) > wd/2 {
		return false
	}
	return true
}

// statusLine is the one-line summary for systemd's STATUS=.
func (d *Daemon) statusLine() string {
	s := d.Status()
	line := fmt.Sprintf("%d parts (%d NG, %d ERROR), %.1f/s, camera %s", s.Counts.Total, s.Counts.NG, s.Counts.Error, s.RatePerS, s.Camera.State)
	if s.Paused {
		line += ", paused"
	}
	if !s.Healthy && len(s.Problems) > 0 {
		line += "; " + s.Problems[0]
	}
	return line
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"image"
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
	"github.com/inspectd/inspectd/models/preprocess"
)

// Deps are the parts the daemon is wired from. cmd/inspectd builds the
// concrete camera, engine factory and sinks from the configuration.
type Deps struct {
	// Config is the validated configuration the daemon starts with.
	Config *config.Config
	// ReloadConfig re-reads and validates the configuration file for
	// Reload; nil reloads the bundle with the current configuration.
	ReloadConfig func() (*config.Config, error)
	Camera       inspection.Camera
	NewEngine    EngineFactory
	Sinks        []inspection.Sink
	Logger       *slog.Logger
	// Registry receives the daemon's metrics; nil creates one.
	Registry *prometheus.Registry
	// Notifier reports to systemd; nil reports to nobody.
	Notifier Notifier
	// Version and Commit label inspectd_build_info and the status.
	Version, Commit string
	// MaxParts ends Run after that many results (0 = run until stopped).
	MaxParts int
	// ShutdownTimeout bounds finishing the parts in flight and flushing
	// the sinks on shutdown. Default 10 s.
	ShutdownTimeout time.Duration
	// SinkQueue is each sink's queue capacity. Default 1024.
	SinkQueue int
	// OnRunning, when set, is called with true once inspection runs (after
	// READY) and with false when it stops (before the sinks are flushed),
	// e.g. to switch the station's ready lamp.
	OnRunning func(running bool)
}

// Daemon is one running inspection station. Create it with New, add sinks
// with AddSink, then call Run. Its Control methods (Trigger, Reload,
// SetThresholds, Pause, Resume, Status) are safe for concurrent use.
type Daemon struct {
	deps    Deps
	log     *slog.Logger
	camera  inspection.Camera
	reg     *prometheus.Registry
	metrics *metrics
	notify  Notifier
	sinks   sinkSet
	started time.Time
	runID   string

	mu        sync.Mutex // guards the fields below
	cfg       *config.Config
	model     *Model
	thr       thresholds
	runtime   *thresholds // thresholds set at runtime, nil if none
	counts    inspection.Counts
	latencies ring
	rates     ring // verdict times, unix seconds
	lastEvent *inspection.Event
	camStatus inspection.CameraStatus
	lastErr   string // last engine error
	lastErrAt time.Time

	pending   atomic.Pointer[pendingModel] // a reloaded model waiting for the inspect loop
	swapped   chan struct{}                // wakes the inspect loop for a swap
	reloadMu  sync.Mutex
	paused    atomic.Bool
	stopping  atomic.Bool
	resultSeq atomic.Uint64
	partSeq   atomic.Uint64
	triggers  chan trigger
	busySince atomic.Int64 // unix nanos the inspect loop started its current part, 0 when idle
	grabbing  atomic.Bool  // the triggered capture stage is waiting for a part's frame
	stop      chan struct{}
	stopOnce  sync.Once
}

// pendingModel is a model waiting to replace the running one, with the
// configuration it was loaded for.
type pendingModel struct {
	model *Model
	cfg   *config.Config
}

// trigger is one accepted request for a part.
type trigger struct {
	partID string
	source string
	at     time.Time
}

// job is a part on its way to the inspect loop: its trigger and its frame,
// or why there is no frame.
type job struct {
	trig  trigger
	frame *inspection.Frame
	err   error
}

var _ inspection.Control = (*Daemon)(nil)

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
	now := time.Now()
	d := &Daemon{
		deps:      deps,
		log:       logging.Component(deps.Logger, "daemon"),
		camera:    deps.Camera,
		reg:       deps.Registry,
		notify:    deps.Notifier,
		started:   now,
		runID:     strconv.FormatInt(now.UnixMilli(), 36),
		cfg:       deps.Config,
		latencies: newRing(1024),
		rates:     newRing(4096),
		camStatus: inspection.CameraStatus{State: inspection.CameraStarting, Since: now},
		swapped:   make(chan struct{}, 1),
		triggers:  make(chan trigger, 64),
		stop:      make(chan struct{}),
	}
	d.metrics = newMetrics(d.reg, d, deps.Version, deps.Commit)
	for _, s := range deps.Sinks {
		d.AddSink(s)
	}
	return d, nil
}

// AddSink adds an output; call it before Run.
func (d *Daemon) AddSink(s inspection.Sink) {
	d.sinks.add(newSinkQueue(s, d.deps.SinkQueue, d.log, func(name string) {
		d.metrics.sinkDropped.WithLabelValues(name).Inc()
	}))
}

// Registry returns the registry holding the daemon's metrics, for /metrics.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Run verifies everything (bundle checksums, engine warm-up, camera open),
// reports READY to systemd, and inspects parts until ctx ends, MaxParts
// results were produced, or a replay without loop ends. Then it stops
// taking triggers, finishes the parts in flight, flushes the sinks and
// returns nil. A start-up failure returns an error naming what failed;
// nothing has been started then.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.config()
	model, err := LoadModel(cfg, d.deps.NewEngine)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.model = model
	d.thr = resolveThresholds(model, cfg.Decision, nil)
	d.mu.Unlock()
	d.metrics.modelInfo.WithLabelValues(model.Bundle.Manifest.Product, model.Bundle.Hash, model.Engine.Provider()).Set(1)
	d.log.Info("model loaded", "bundle", model.Bundle.Dir, "product", model.Bundle.Manifest.Product,
		"hash", short(model.Bundle.Hash), "provider", model.Engine.Provider(), "warm_up", model.WarmUp.Round(time.Millisecond),
		"threshold", d.thr.image, "pixel_threshold", d.thr.pixel, "threshold_source", d.thr.source)

	// Loading decoded and verified megabytes that are garbage now: return
	// them before the first part, so that the heap's growth target is set by
	// what inspection really keeps (a steady RSS in `make soak`).
	debug.FreeOSMemory()

	d.camera.Watch(d.onCamera)
	openCtx, cancelOpen := context.WithTimeout(ctx, cfg.Camera.OpenTimeout.D+time.Second)
	err = d.camera.Start(openCtx)
	cancelOpen()
	if err != nil {
		d.closeModel()
		return fmt.Errorf("camera: %w", err)
	}

	// Sinks deliver until drained, independent of ctx: a shutdown must
	// still flush what is queued.
	sinkCtx, cancelSinks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSinks()
	d.sinks.start(sinkCtx)

	d.notifyState("READY=1")
	d.notifyState("STATUS=inspecting; " + d.statusLine())
	if d.deps.OnRunning != nil {
		d.deps.OnRunning(true)
	}
	d.emitEvent(inspection.Info, inspection.EventStarted, fmt.Sprintf("inspecting with %s (%s), trigger mode %s", model.Bundle.Manifest.Product, short(model.Bundle.Hash), cfg.Trigger.Mode), nil)
	d.log.Info("inspection started", "station", cfg.Station.ID, "trigger", cfg.Trigger.Mode, "camera", cfg.Camera.Source)

	// Triggered parts queue up (each keeps the frame grabbed right after
	// its trigger); free-run hands over one frame at a time, fetched only
	// when the inspect loop is ready for it, so it is as fresh as the
	// camera allows.
	jobs := make(chan job, 16)
	ready := make(chan struct{}, 1)
	if cfg.Trigger.Mode == config.TriggerFreeRun {
		jobs = make(chan job)
	}
	var workers sync.WaitGroup
	// Capture outlives ctx: on shutdown the parts already triggered still
	// get their frames (shutdown stops it).
	captureCtx, stopCapture := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCapture()
	endOfStream := make(chan struct{})
	workers.Add(1)
	go func() {
		defer workers.Done()
		defer close(jobs)
		var err error
		if cfg.Trigger.Mode == config.TriggerFreeRun {
			err = d.captureFreeRun(captureCtx, ready, jobs)
		} else {
			err = d.captureTriggered(captureCtx, jobs)
		}
		if errors.Is(err, inspection.ErrEndOfStream) {
			close(endOfStream)
		}
	}()
	inspectDone := make(chan struct{})
	go func() {
		defer close(inspectDone)
		d.inspectLoop(jobs, ready)
	}()
	statusCtx, stopStatus := context.WithCancel(ctx)
	go d.reportLoop(statusCtx)

	select {
	case <-ctx.Done():
		d.log.Info("stopping: signal received")
	case <-d.stop:
		d.log.Info("stopping: part limit reached", "parts", d.deps.MaxParts)
	case <-endOfStream:
		d.log.Info("stopping: the replay reached its end")
	}
	stopStatus()
	return d.shutdown(stopCapture, &workers, inspectDone)
}

// shutdown stops taking triggers, lets the parts in flight finish within
// half the shutdown timeout (the rest become ERROR "shutdown" verdicts),
// flushes the sinks, closes the camera and the model.
func (d *Daemon) shutdown(stopCapture context.CancelFunc, workers *sync.WaitGroup, inspectDone chan struct{}) error {
	d.stopping.Store(true)
	d.notifyState("STOPPING=1")
	if d.deps.OnRunning != nil {
		d.deps.OnRunning(false)
	}
	d.emitEvent(inspection.Info, inspection.EventStopping, "inspection stopping", nil)
	deadline := time.Now().Add(d.deps.ShutdownTimeout)

	// Triggers already accepted still get their frame and verdict: let the
	// capture goroutine work through them, then stop it.
	finish := time.Now().Add(d.deps.ShutdownTimeout / 2)
	for (len(d.triggers) > 0 || d.grabbing.Load()) && time.Now().Before(finish) {
		time.Sleep(5 * time.Millisecond)
	}
	stopCapture()
	workers.Wait()
	// Triggers that never reached the capture stage get ERROR verdicts
	// (nothing else receives from the queue any more).
	for len(d.triggers) > 0 {
		t := <-d.triggers
		d.emit(d.errorResult(t, nil, inspection.ReasonShutdown, "the daemon stopped before the part was captured"))
	}
	<-inspectDone

	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	left := d.sinks.drain(ctx, d.log)
	if err := d.camera.Close(); err != nil {
		d.log.Warn("closing the camera", "err", err)
	}
	d.closeModel()
	if p := d.pending.Swap(nil); p != nil {
		p.model.Close()
	}
	c := d.Status().Counts
	d.log.Info("stopped", "parts", c.Total, "ok", c.OK, "ng", c.NG, "error", c.Error, "undelivered", left)
	return nil
}

func (d *Daemon) closeModel() {
	d.mu.Lock()
	m := d.model
	d.model = nil
	d.mu.Unlock()
	if err := m.Close(); err != nil {
		d.log.Warn("closing the engine", "err", err)
	}
}

// config returns the configuration in force.
func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Trigger asks for one part; see inspection.Control.
func (d *Daemon) Trigger(partID, source string) error {
	mode := d.config().Trigger.Mode
	switch {
	case d.stopping.Load():
		d.metrics.triggers.WithLabelValues(source, "refused").Inc()
		return errors.New("the daemon is stopping")
	case d.paused.Load():
		d.metrics.triggers.WithLabelValues(source, "refused").Inc()
		return inspection.ErrPaused
	case !acceptsTrigger(mode, source):
		d.metrics.triggers.WithLabelValues(source, "refused").Inc()
		return fmt.Errorf("%w: trigger.mode is %q, the trigger came from %s", inspection.ErrTriggerMode, mode, source)
	}
	if partID == "" {
		partID = fmt.Sprintf("%s-%06d", d.runID, d.partSeq.Add(1))
	}
	t := trigger{partID: partID, source: source, at: time.Now()}
	d.sinks.triggered(partID, t.at)
	select {
	case d.triggers <- t:
		d.metrics.triggers.WithLabelValues(source, "accepted").Inc()
	default:
		// Every trigger yields a verdict: a part that cannot even be
		// queued is rejected now, not forgotten.
		d.metrics.triggers.WithLabelValues(source, "overflow").Inc()
		d.emitEvent(inspection.Warning, inspection.EventQueueOverflow, "trigger queue full; part rejected", map[string]string{"part_id": partID})
		d.emit(d.errorResult(t, nil, inspection.ReasonOverload, fmt.Sprintf("%d triggers already waiting", cap(d.triggers))))
	}
	return nil
}

// acceptsTrigger reports whether mode takes triggers from source.
func acceptsTrigger(mode, source string) bool {
	switch mode {
	case config.TriggerSoftware:
		return source == inspection.TriggerSoftware || source == inspection.TriggerMQTT
	case config.TriggerGPIO:
		return source == inspection.TriggerGPIO
	}
	return false
}

// Pause stops taking triggers and, in free-run, inspecting.
func (d *Daemon) Pause() {
	if !d.paused.Swap(true) {
		d.metrics.paused.Set(1)
		d.emitEvent(inspection.Info, inspection.EventPaused, "inspection paused", nil)
	}
}

// Resume undoes Pause.
func (d *Daemon) Resume() {
	if d.paused.Swap(false) {
		d.metrics.paused.Set(0)
		d.emitEvent(inspection.Info, inspection.EventResumed, "inspection resumed", nil)
	}
}

// SetThresholds changes the thresholds until the next restart.
func (d *Daemon) SetThresholds(img, pixel *float64) error {
	check := func(name string, v *float64) error {
		if v == nil {
			return nil
		}
		if *v != *v || *v <= 0 || *v > 1 {
			return fmt.Errorf("%s: %v is out of range; allowed (0, 1]", name, *v)
		}
		return nil
	}
	if err := errors.Join(check("image", img), check("pixel", pixel)); err != nil {
		return err
	}
	if img == nil && pixel == nil {
		return errors.New("give image and/or pixel")
	}
	d.mu.Lock()
	rt := thresholds{}
	if d.runtime != nil {
		rt = *d.runtime
	}
	if img != nil {
		rt.image = *img
	}
	if pixel != nil {
		rt.pixel = *pixel
	}
	d.runtime = &rt
	if d.model != nil {
		d.thr = resolveThresholds(d.model, d.cfg.Decision, d.runtime)
	}
	thr := d.thr
	d.mu.Unlock()
	d.emitEvent(inspection.Info, inspection.EventThreshold, fmt.Sprintf("thresholds set at runtime: image %g, pixel %g", thr.image, thr.pixel),
		map[string]string{"image": fmt.Sprint(thr.image), "pixel": fmt.Sprint(thr.pixel)})
	return nil
}

// Reload re-reads the configuration and the bundle, verifies both fully,
// builds and warms up the new engine off the hot path, and hands it to the
// inspect loop, which swaps it in between two parts. On any failure the
// running model and configuration stay, and the error says why.
func (d *Daemon) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	err := d.reload(ctx)
	if err != nil {
		d.metrics.reloads.WithLabelValues("failed").Inc()
		d.log.Error("reload failed; keeping the running model and configuration", "err", err)
		d.emitEvent(inspection.Critical, inspection.EventReloadFailed, "reload failed, still running the previous model: "+err.Error(), nil)
		return err
	}
	d.metrics.reloads.WithLabelValues("ok").Inc()
	return nil
}

func (d *Daemon) reload(ctx context.Context) error {
	if d.stopping.Load() {
		return errors.New("the daemon is stopping")
	}
	cur := d.config()
	next := cur
	if d.deps.ReloadConfig != nil {
		c, err := d.deps.ReloadConfig()
		if err != nil {
			return err
		}
		next = c
	}
	if fixed := restartOnlyChanges(cur, next); len(fixed) > 0 {
		d.log.Warn("reload: these sections changed and take effect only after a restart", "sections", fixed)
	}
	type loaded struct {
		m   *Model
		err error
	}
	ch := make(chan loaded, 1)
	go func() {
		m, err := LoadModel(next, d.deps.NewEngine)
		ch <- loaded{m, err}
	}()
	var l loaded
	select {
	case l = <-ch:
	case <-ctx.Done():
		go func() {
			if l := <-ch; l.m != nil {
				l.m.Close()
			}
		}()
		return fmt.Errorf("reload: %w", ctx.Err())
	}
	if l.err != nil {
		return l.err
	}
	// Keep the parts of the new configuration that apply at runtime.
	merged := *cur
	merged.Model, merged.Decision = next.Model, next.Decision
	if old := d.pending.Swap(&pendingModel{model: l.m, cfg: &merged}); old != nil {
		old.model.Close()
	}
	select {
	case d.swapped <- struct{}{}:
	default:
	}
	return nil
}

// restartOnlyChanges lists the sections of next that differ from cur but
// are applied only at start-up.
func restartOnlyChanges(cur, next *config.Config) []string {
	var out []string
	if cur.Station != next.Station {
		out = append(out, "station")
	}
	if cur.Camera != next.Camera {
		out = append(out, "camera")
	}
	if cur.Trigger != next.Trigger {
		out = append(out, "trigger")
	}
	if cur.HTTP != next.HTTP {
		out = append(out, "http")
	}
	if cur.Archive != next.Archive {
		out = append(out, "archive")
	}
	if fmt.Sprint(cur.GPIO) != fmt.Sprint(next.GPIO) {
		out = append(out, "gpio")
	}
	if fmt.Sprint(cur.MQTT) != fmt.Sprint(next.MQTT) {
		out = append(out, "mqtt")
	}
	return out
}

// swapModel installs a pending model; called by the inspect loop between
// parts.
func (d *Daemon) swapModel() {
	p := d.pending.Swap(nil)
	if p == nil {
		return
	}
	d.mu.Lock()
	old := d.model
	d.model = p.model
	d.cfg = p.cfg
	d.thr = resolveThresholds(p.model, p.cfg.Decision, d.runtime)
	thr := d.thr
	d.mu.Unlock()
	if old != nil {
		d.metrics.modelInfo.DeleteLabelValues(old.Bundle.Manifest.Product, old.Bundle.Hash, old.Engine.Provider())
		old.Close()
		debug.FreeOSMemory() // the old engine's memory, once per reload
	}
	m := p.model
	d.metrics.modelInfo.WithLabelValues(m.Bundle.Manifest.Product, m.Bundle.Hash, m.Engine.Provider()).Set(1)
	d.log.Info("reload done", "bundle", m.Bundle.Dir, "hash", short(m.Bundle.Hash), "threshold", thr.image, "pixel_threshold", thr.pixel)
	d.emitEvent(inspection.Info, inspection.EventReloadDone, fmt.Sprintf("now inspecting with %s (%s)", m.Bundle.Manifest.Product, short(m.Bundle.Hash)),
		map[string]string{"bundle_hash": m.Bundle.Hash})
}

// captureTriggered grabs, for each trigger in order, the first frame
// captured after it (within trigger.timeout) and queues the pair.
func (d *Daemon) captureTriggered(ctx context.Context, jobs chan<- job) error {
	cfg := d.config()
	for {
		var t trigger
		select {
		case <-ctx.Done():
			return ctx.Err()
		case t = <-d.triggers:
		}
		d.grabbing.Store(true)
		fctx, cancel := context.WithDeadline(ctx, t.at.Add(cfg.Trigger.Timeout.D))
		f, err := d.camera.Next(fctx, t.at)
		cancel()
		d.grabbing.Store(false)
		if err != nil && ctx.Err() != nil && !errors.Is(err, inspection.ErrEndOfStream) {
			err = fmt.Errorf("%w: %w", errShutdown, err)
		}
		select {
		case jobs <- job{trig: t, frame: f, err: err}:
		case <-ctx.Done():
			// The inspect loop is gone only after jobs closes, so this
			// cannot lose the part: hand it over without blocking.
			jobs <- job{trig: t, frame: f, err: err}
			return ctx.Err()
		}
		if errors.Is(err, inspection.ErrEndOfStream) {
			return err
		}
	}
}

var errShutdown = errors.New("shutdown")

// captureFreeRun fetches the newest frame each time the inspect loop is
// ready for one; frames the camera captured meanwhile are skipped (the
// camera counts them as dropped).
func (d *Daemon) captureFreeRun(ctx context.Context, ready <-chan struct{}, jobs chan<- job) error {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ready:
		}
		for {
			f, err := d.camera.Next(ctx, last)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, inspection.ErrEndOfStream) {
					return err
				}
				d.log.Warn("camera: no frame", "err", err)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			last = f.Time
			if d.paused.Load() {
				f.Release()
				continue
			}
			t := trigger{partID: "f" + strconv.FormatUint(f.Seq, 10), source: inspection.TriggerFreeRun, at: f.Time}
			select {
			case jobs <- job{trig: t, frame: f}:
			case <-ctx.Done():
				f.Release()
				return ctx.Err()
			}
			break
		}
	}
}

// inspectLoop owns the engine: it inspects each job and emits its result,
// swapping in a reloaded model between two parts.
func (d *Daemon) inspectLoop(jobs <-chan job, ready chan<- struct{}) {
	var dec Decider
	heat := &heatmapCache{}
	for {
		select {
		case ready <- struct{}{}:
		default:
		}
		var j job
		var ok bool
		select {
		case <-d.swapped:
			d.swapModel()
			continue
		case j, ok = <-jobs:
		}
		if !ok {
			return
		}
		if j.trig.source == inspection.TriggerFreeRun && d.limitReached() {
			// --max-parts: exactly N results; later free-run frames are
			// not parts of anyone.
			j.frame.Release()
			continue
		}
		if d.pending.Load() != nil {
			d.swapModel()
		}
		d.busySince.Store(time.Now().UnixNano())
		r := d.inspect(&dec, heat, j)
		d.busySince.Store(0)
		d.emit(r)
	}
}

// heatmapCache keeps one heatmap buffer for the model in use, reused
// across parts (sinks get a copy in the snapshot).
type heatmapCache struct {
	model *Model
	hm    *preprocess.Heatmap
}

func (c *heatmapCache) get(m *Model) *preprocess.Heatmap {
	if c.model != m {
		c.model, c.hm = m, m.Engine.NewHeatmap()
	}
	return c.hm
}

// inspect runs one job through the engine and the decision.
func (d *Daemon) inspect(dec *Decider, heat *heatmapCache, j job) *inspection.Result {
	defer j.frame.Release()
	d.mu.Lock()
	m, cfg, thr := d.model, d.cfg, d.thr
	d.mu.Unlock()

	if j.err != nil {
		reason, detail := inspection.ReasonCamera, j.err.Error()
		switch {
		case errors.Is(j.err, errShutdown):
			reason = inspection.ReasonShutdown
		case errors.Is(j.err, context.DeadlineExceeded):
			reason = inspection.ReasonCameraTimeout
			detail = fmt.Sprintf("no frame within trigger.timeout %s (camera %s)", cfg.Trigger.Timeout.D, d.camera.Status().State)
		}
		return d.errorResult(j.trig, nil, reason, detail)
	}
	f := j.frame
	start := time.Now()
	if age := start.Sub(f.Time); age > cfg.Camera.MaxFrameAge.D {
		return d.errorResult(j.trig, f, inspection.ReasonStaleFrame, fmt.Sprintf("frame %d was %s old, camera.max_frame_age is %s", f.Seq, age.Round(time.Millisecond), cfg.Camera.MaxFrameAge.D))
	}
	roi := roiOf(cfg.Camera.ROI)
	if !roi.Empty() && !roi.In(f.Image.Bounds()) {
		return d.errorResult(j.trig, f, inspection.ReasonEngine, fmt.Sprintf("camera.roi %v lies outside the %dx%d frame", roi, f.Image.Bounds().Dx(), f.Image.Bounds().Dy()))
	}
	if roi.Empty() {
		roi = f.Image.Bounds()
	}
	heatmap := heat.get(m)

	tf, err := m.Engine.Align(f.Image, roi)
	tAlign := time.Now()
	if err != nil {
		d.engineError(err)
		return d.errorResult(j.trig, f, inspection.ReasonEngine, err.Error())
	}
	score, err := m.Engine.Localize(f.Image, roi, tf, heatmap)
	tLoc := time.Now()
	if err != nil {
		d.engineError(err)
		return d.errorResult(j.trig, f, inspection.ReasonEngine, err.Error())
	}
	if heatmap.Outside > cfg.Decision.MaxOutsideFraction {
		return d.errorResult(j.trig, f, inspection.ReasonOutOfFrame, fmt.Sprintf(
			"the alignment (%.1f°, shift %.2f, %.2f) placed %.0f %% of the model input outside camera.roi, more than decision.max_outside_fraction %g: widen the ROI or check that the part sits in view",
			tf.Degrees(), tf.Tx, tf.Ty, 100*heatmap.Outside, cfg.Decision.MaxOutsideFraction))
	}
	verdict, reason, regions := dec.Decide(DecisionInput{
		Score: float64(score), Heatmap: heatmap, ROI: roi, Transform: tf,
		Threshold: thr.image, PixelThreshold: thr.pixel,
		MinDefectArea: cfg.Decision.MinDefectArea, MaxRegions: cfg.Decision.MaxRegions,
	})
	tDec := time.Now()
	r := d.newResult(j.trig, f)
	r.Verdict, r.Reason, r.Regions = verdict, reason, regions
	if verdict == inspection.Error {
		r.Detail = "the model produced NaN"
		r.Score = 0
	} else {
		r.Score = float64(score)
	}
	r.Threshold, r.PixelThreshold = thr.image, thr.pixel
	r.Alignment = inspection.Alignment{Tx: tf.Tx, Ty: tf.Ty, ThetaDeg: tf.Degrees()}
	r.Model = inspection.Model{Product: m.Bundle.Manifest.Product, BundleHash: m.Bundle.Hash}
	r.Latency.AlignMs = ms(tAlign.Sub(start))
	r.Latency.LocalizeMs = ms(tLoc.Sub(tAlign))
	r.Latency.DecideMs = ms(tDec.Sub(tLoc))
	d.finish(r, tDec)
	if d.sinks.wantsImage(r) {
		r.Snapshot = snapshot(f, roi, tf, heatmap)
	}
	return r
}

// newResult fills the identity and timing fields common to every result.
func (d *Daemon) newResult(t trigger, f *inspection.Frame) *inspection.Result {
	cfg := d.config()
	seq := d.resultSeq.Add(1)
	r := &inspection.Result{
		ID:          fmt.Sprintf("%s-%s-%06d", cfg.Station.ID, d.runID, seq),
		PartID:      t.partID,
		Station:     cfg.Station.ID,
		Seq:         seq,
		Trigger:     t.source,
		TriggerTime: t.at,
		Regions:     []inspection.Region{},
	}
	if f != nil {
		r.FrameSeq = f.Seq
		r.CaptureTime = f.Time
		if t.source != inspection.TriggerFreeRun {
			r.Latency.CaptureWaitMs = ms(f.Time.Sub(t.at))
		}
	}
	return r
}

// finish stamps the verdict time and the total latency.
func (d *Daemon) finish(r *inspection.Result, at time.Time) {
	r.VerdictTime = at
	r.Latency.TotalMs = ms(at.Sub(r.TriggerTime))
}

// errorResult is the ERROR verdict of a part that could not be inspected.
func (d *Daemon) errorResult(t trigger, f *inspection.Frame, reason, detail string) *inspection.Result {
	r := d.newResult(t, f)
	r.Verdict, r.Reason, r.Detail = inspection.Error, reason, detail
	d.mu.Lock()
	r.Threshold, r.PixelThreshold = d.thr.image, d.thr.pixel
	if d.model != nil {
		r.Model = inspection.Model{Product: d.model.Bundle.Manifest.Product, BundleHash: d.model.Bundle.Hash}
	}
	d.mu.Unlock()
	d.finish(r, time.Now())
	return r
}

func (d *Daemon) engineError(err error) {
	d.mu.Lock()
	d.lastErr, d.lastErrAt = err.Error(), time.Now()
	d.mu.Unlock()
	d.log.Error("engine failed on a part", "err", err)
}

// emit counts a result, records its metrics and hands it to every sink.
func (d *Daemon) emit(r *inspection.Result) {
	d.mu.Lock()
	d.counts.Total++
	switch r.Verdict {
	case inspection.OK:
		d.counts.OK++
	case inspection.NG:
		d.counts.NG++
	default:
		d.counts.Error++
	}
	total := d.counts.Total
	d.latencies.add(r.Latency.TotalMs)
	d.rates.add(float64(r.VerdictTime.UnixNano()) / 1e9)
	d.mu.Unlock()

	d.metrics.parts.WithLabelValues(string(r.Verdict), r.Reason).Inc()
	if r.Verdict != inspection.Error {
		d.metrics.score.Observe(r.Score)
		d.metrics.stage.WithLabelValues("align").Observe(r.Latency.AlignMs / 1000)
		d.metrics.stage.WithLabelValues("localize").Observe(r.Latency.LocalizeMs / 1000)
		d.metrics.stage.WithLabelValues("decide").Observe(r.Latency.DecideMs / 1000)
	}
	if r.Trigger != inspection.TriggerFreeRun && r.FrameSeq != 0 {
		d.metrics.stage.WithLabelValues("capture_wait").Observe(r.Latency.CaptureWaitMs / 1000)
	}
	d.metrics.stage.WithLabelValues("total").Observe(r.Latency.TotalMs / 1000)
	d.sinks.publish(r)
	if n := d.deps.MaxParts; n > 0 && total >= uint64(n) {
		d.stopOnce.Do(func() {
			d.stopping.Store(true)
			close(d.stop)
		})
	}
}

// limitReached reports whether MaxParts results were produced.
func (d *Daemon) limitReached() bool {
	n := d.deps.MaxParts
	if n <= 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts.Total >= uint64(n)
}

// emitEvent records an event and hands it to the event sinks.
func (d *Daemon) emitEvent(sev inspection.Severity, kind, msg string, fields map[string]string) {
	e := inspection.Event{Time: time.Now(), Station: d.config().Station.ID, Severity: sev, Kind: kind, Message: msg, Fields: fields}
	d.mu.Lock()
	d.lastEvent = &e
	d.mu.Unlock()
	d.sinks.event(e)
}

// ReportEvent records an event raised by a sink or another part of the
// station (archive disk budget, GPIO faults, outbox drops) and hands it to
// the event sinks. It does not block.
func (d *Daemon) ReportEvent(e inspection.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Station == "" {
		e.Station = d.config().Station.ID
	}
	d.mu.Lock()
	d.lastEvent = &e
	d.mu.Unlock()
	d.sinks.event(e)
}

// onCamera receives the camera's state changes.
func (d *Daemon) onCamera(s inspection.CameraStatus) {
	d.mu.Lock()
	prev := d.camStatus.State
	d.camStatus = s
	d.mu.Unlock()
	d.metrics.setCameraState(s.State)
	if prev == s.State {
		return
	}
	switch s.State {
	case inspection.CameraOnline:
		if prev != inspection.CameraStarting {
			d.emitEvent(inspection.Info, inspection.EventCameraOnline, "camera online again", nil)
		}
	case inspection.CameraStalled:
		d.emitEvent(inspection.Warning, inspection.EventCameraStalled, "camera stalled: "+s.Detail, nil)
	case inspection.CameraOffline, inspection.CameraReconnecting:
		if prev == inspection.CameraOnline || prev == inspection.CameraStarting {
			d.emitEvent(inspection.Critical, inspection.EventCameraOffline, fmt.Sprintf("camera %s: %s", s.State, s.Detail), nil)
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

func roiOf(r config.ROI) image.Rectangle {
	if r.Width == 0 || r.Height == 0 {
		return image.Rectangle{}
	}
	return image.Rect(r.X, r.Y, r.X+r.Width, r.Y+r.Height)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

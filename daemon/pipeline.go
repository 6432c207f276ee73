package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// job is a part on its way to the inspect loop: its trigger and its frame,
// the camera's error instead of a frame, or an ERROR decided before
// inspection (reason and detail: overload, shutdown).
type job struct {
	trig   trigger
	frame  *inspection.Frame
	err    error
	reason string
	detail string
}

// errShutdown marks a frame wait cut short by the shutdown.
var errShutdown = errors.New("shutdown")

// captureTriggered takes the intake's entries in order and, for each part,
// grabs the first frame captured after its trigger (within
// trigger.timeout); overload entries pass through as ERROR jobs in their
// place. Once ctx ends (the shutdown gave up waiting) the remaining parts
// become ERROR "shutdown" jobs without a frame; once the replay ended,
// ERROR "camera_error" jobs. It closes jobs when the intake is closed and
// empty: every accepted trigger has then been handed on.
func (d *Daemon) captureTriggered(ctx context.Context, jobs chan<- job, endedStream func()) {
	defer close(jobs)
	timeout := d.state.config().Trigger.Timeout.D
	var streamErr error
	for {
		e, ok := d.intake.next()
		if !ok {
			return
		}
		j := job{trig: e.trig}
		switch {
		case e.overload != "":
			j.reason, j.detail = inspection.ReasonOverload, e.overload
		case ctx.Err() != nil:
			j.reason, j.detail = inspection.ReasonShutdown, "the daemon stopped before the part was captured"
		case streamErr != nil:
			j.err = streamErr
		default:
			fctx, cancel := context.WithDeadline(ctx, e.trig.at.Add(timeout))
			j.frame, j.err = d.camera.Next(fctx, e.trig.at)
			cancel()
			switch {
			case errors.Is(j.err, inspection.ErrEndOfStream):
				streamErr = j.err
				endedStream()
			case j.err != nil && ctx.Err() != nil:
				j.err = fmt.Errorf("%w: %w", errShutdown, j.err)
			}
		}
		jobs <- j // the inspect loop receives until jobs is closed
	}
}

// captureFreeRun fetches the newest frame each time the inspect loop is
// ready for one; frames the camera captured meanwhile are skipped (the
// camera counts them as dropped). It closes jobs when ctx ends or the
// replay ended.
func (d *Daemon) captureFreeRun(ctx context.Context, ready <-chan struct{}, jobs chan<- job, endedStream func()) {
	defer close(jobs)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-ready:
		}
		for {
			f, err := d.camera.Next(ctx, last)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, inspection.ErrEndOfStream) {
					endedStream()
					return
				}
				d.log.Warn("camera: no frame", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			last = f.Time
			if d.paused.Load() {
				f.Release()
				continue
			}
			t := trigger{partID: "f" + strconv.FormatUint(f.Seq, 10), source: inspection.TriggerFreeRun, at: f.Time, sel: d.bind()}
			select {
			case jobs <- job{trig: t, frame: f}:
			case <-ctx.Done():
				f.Release()
				t.sel.unbind()
				return
			}
			break
		}
	}
}

// inspectLoop owns the engine and is the only producer of results: it
// inspects each job in order and emits its result, swapping in a reloaded
// model between two parts. Once abandon ends (the shutdown gave up
// waiting), parts whose frame is still queued become ERROR "shutdown"
// results instead of being inspected. It returns when jobs is closed.
func (d *Daemon) inspectLoop(abandon context.Context, jobs <-chan job, ready chan<- struct{}) {
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
			j.trig.sel.unbind()
			continue
		}
		if j.reason == "" && j.frame != nil && abandon.Err() != nil && j.trig.source != inspection.TriggerFreeRun {
			j.reason, j.detail = inspection.ReasonShutdown, "the daemon stopped before the part was inspected"
		}
		if d.hasPending.Load() {
			d.swapModel()
		}
		d.busySince.Store(time.Now().UnixNano())
		r := d.inspect(abandon, &dec, heat, j)
		d.busySince.Store(0)
		j.trig.sel.unbind()
		d.emit(r)
		d.evict()
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

// inspect runs one job through the engine and the decision, with the
// model and settings of the product its trigger was bound to (waiting for
// the product's bundle when it loads on demand).
func (d *Daemon) inspect(abandon context.Context, dec *Decider, heat *heatmapCache, j job) *inspection.Result {
	defer j.frame.Release()
	if j.reason != "" {
		return d.errorResult(j.trig, nil, j.reason, j.detail)
	}
	var m *Model
	var cfg *config.Config
	var thr thresholds
	var wait time.Duration
	if j.err == nil {
		var unavailable string
		m, cfg, thr, wait, unavailable = d.modelFor(abandon, j.trig.sel)
		if unavailable != "" {
			r := d.errorResult(j.trig, j.frame, inspection.ReasonProductUnavailable, unavailable)
			r.Latency.ModelWaitMs = ms(wait)
			return r
		}
	} else {
		cfg = d.state.config()
	}
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
	// The time the part waited for its product's bundle (a reported,
	// deliberate wait of the line) does not age its frame.
	if age := f.Age(start) - wait; cfg.Camera.FrameTooOld(age) {
		return d.errorResult(j.trig, f, inspection.ReasonStaleFrame, fmt.Sprintf("frame %d was %s old, camera.max_frame_age is %s", f.Seq, age.Round(time.Millisecond), cfg.Camera.MaxFrameAge.D))
	}
	if err := cfg.Camera.ROI.Fits(f.Image.Bounds().Size()); err != nil {
		return d.errorResult(j.trig, f, inspection.ReasonEngine, err.Error())
	}
	roi := cfg.Camera.ROI.Rect(f.Image.Bounds().Size())
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
	r := d.newResult(cfg, j.trig, f)
	r.Verdict, r.Reason, r.Regions = verdict, reason, regions
	if verdict == inspection.Error {
		r.Detail = "the model produced NaN"
		r.Score = 0
	} else {
		r.Score = float64(score)
	}
	r.Threshold, r.PixelThreshold = thr.image, thr.pixel
	r.Alignment = inspection.Alignment{Tx: tf.Tx, Ty: tf.Ty, ThetaDeg: tf.Degrees()}
	r.Model = inspection.Model{Product: j.trig.sel.name, BundleHash: m.Bundle.Hash}
	r.Latency.ModelWaitMs = ms(wait)
	r.Latency.AlignMs = ms(tAlign.Sub(start))
	r.Latency.LocalizeMs = ms(tLoc.Sub(tAlign))
	r.Latency.DecideMs = ms(tDec.Sub(tLoc))
	finish(r, tDec)
	if d.sinks.wantsImage(r) {
		r.Snapshot = snapshot(f, roi, tf, heatmap)
	}
	return r
}

// newResult fills the identity and timing fields common to every result.
// Only the inspect loop calls it, so sequence numbers follow trigger order.
func (d *Daemon) newResult(cfg *config.Config, t trigger, f *inspection.Frame) *inspection.Result {
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
func finish(r *inspection.Result, at time.Time) {
	r.VerdictTime = at
	r.Latency.TotalMs = ms(at.Sub(r.TriggerTime))
}

// errorResult is the ERROR verdict of a part that could not be inspected;
// it names the part's product and, where known, its bundle.
func (d *Daemon) errorResult(t trigger, f *inspection.Frame, reason, detail string) *inspection.Result {
	cfg := d.state.config()
	r := d.newResult(cfg, t, f)
	r.Verdict, r.Reason, r.Detail = inspection.Error, reason, detail
	if sel := t.sel; sel != nil {
		r.Model.Product = sel.name
		if p := sel.p; p != nil {
			d.state.mu.Lock()
			r.Threshold, r.PixelThreshold = p.thr.image, p.thr.pixel
			r.Model.BundleHash = p.hash
			d.state.mu.Unlock()
		}
	}
	finish(r, time.Now())
	return r
}

func (d *Daemon) engineError(err error) {
	d.stats.engineError(err)
	d.log.Error("engine failed on a part", "err", err)
}

// emit counts a result, records its metrics and hands it to every sink.
// Only the inspect loop calls it.
func (d *Daemon) emit(r *inspection.Result) {
	r.Faults = d.sinks.problems()
	total := d.stats.count(r)
	d.metrics.parts.WithLabelValues(string(r.Verdict), r.Reason, r.Model.Product).Inc()
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
			// Triggers accepted until now still get their results; no
			// more are accepted.
			d.intake.close(errPartLimit)
			close(d.stop)
		})
	}
}

// limitReached reports whether MaxParts results were produced.
func (d *Daemon) limitReached() bool {
	n := d.deps.MaxParts
	return n > 0 && d.stats.total() >= uint64(n)
}

package daemon

import (
	"errors"
	"fmt"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// Trigger asks for one part; see inspection.Control. An accepted trigger
// is owed exactly one result, delivered to every sink in trigger order; a
// refused one (the error says why) is owed nothing. When TriggerQueue
// triggers already wait for their frame, the part is still accepted and
// becomes an ERROR "overload" result in its place.
func (d *Daemon) Trigger(partID, source string) error {
	mode := d.state.config().Trigger.Mode
	switch {
	case d.paused.Load():
		d.metrics.triggers.WithLabelValues(source, "refused").Inc()
		return inspection.ErrPaused
	case !acceptsTrigger(mode, source):
		d.metrics.triggers.WithLabelValues(source, "refused").Inc()
		return fmt.Errorf("%w: trigger.mode is %q, the trigger came from %s", inspection.ErrTriggerMode, mode, source)
	}
	sel := d.bind()
	t, overloaded, err := d.intake.accept(trigger{partID: partID, source: source, at: time.Now(), sel: sel}, d.runID,
		func(t trigger) { d.sinks.triggered(t.partID, t.at) })
	switch {
	case err != nil:
		sel.unbind()
		d.metrics.triggers.WithLabelValues(source, "refused").Inc()
		if errors.Is(err, errIntakeFull) {
			d.emitEvent(inspection.Warning, inspection.EventQueueOverflow, "trigger refused: "+err.Error(), map[string]string{"part_id": partID})
		}
		return err
	case overloaded:
		d.metrics.triggers.WithLabelValues(source, "overflow").Inc()
		d.emitEvent(inspection.Warning, inspection.EventQueueOverflow, "trigger queue full; part rejected", map[string]string{"part_id": t.partID})
	default:
		d.metrics.triggers.WithLabelValues(source, "accepted").Inc()
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

// SetThresholds changes the thresholds of the active product until the
// next restart; every other product keeps its own (each product's
// thresholds come from its bundle and [product.decision]).
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
	name, thr := d.state.setRuntime(img, pixel)
	if name == "" {
		return errors.New("no product is active: select a product first")
	}
	d.emitEvent(inspection.Info, inspection.EventThreshold, fmt.Sprintf("thresholds of product %s set at runtime: image %g, pixel %g", name, thr.image, thr.pixel),
		map[string]string{"image": fmt.Sprint(thr.image), "pixel": fmt.Sprint(thr.pixel), "product": name})
	return nil
}

// ClearFaults clears every output's latched fault (the GPIO FIFO
// overflow) once its cause is fixed; operators reach it through the MQTT
// clear_fault command, POST /api/clear-fault and SIGHUP. It reports an
// error when no output can latch a fault.
func (d *Daemon) ClearFaults() error {
	if d.sinks.clearFaults() == 0 {
		return errors.New("no output of this station latches faults")
	}
	d.log.Info("operator cleared the latched output faults")
	return nil
}

// emitEvent records an event and hands it to the event sinks.
func (d *Daemon) emitEvent(sev inspection.Severity, kind, msg string, fields map[string]string) {
	d.ReportEvent(inspection.Event{Severity: sev, Kind: kind, Message: msg, Fields: fields})
}

// ReportEvent records an event raised by a sink or another part of the
// station (archive disk budget, GPIO faults, outbox drops) and hands it to
// the event sinks. It does not block.
func (d *Daemon) ReportEvent(e inspection.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Station == "" {
		e.Station = d.state.config().Station.ID
	}
	d.stats.event(e)
	d.sinks.event(e)
}

// onCamera receives the camera's state changes.
func (d *Daemon) onCamera(s inspection.CameraStatus) {
	prev := d.stats.cameraChanged(s)
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

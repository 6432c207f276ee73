package daemon

import (
	"fmt"
	"image"
	"sort"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// ring keeps the last n float values.
type ring struct {
	v    []float64
	next int
	full bool
}

func newRing(n int) ring { return ring{v: make([]float64, n)} }

func (r *ring) add(x float64) {
	r.v[r.next] = x
	r.next++
	if r.next == len(r.v) {
		r.next, r.full = 0, true
	}
}

func (r *ring) values() []float64 {
	if r.full {
		return append([]float64(nil), r.v...)
	}
	return append([]float64(nil), r.v[:r.next]...)
}

// percentile returns the p-quantile (0..1) of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// engineErrorWindow is how long an engine error keeps the daemon unhealthy.
const engineErrorWindow = time.Minute

// Status returns a snapshot of the daemon; see inspection.Control.
func (d *Daemon) Status() inspection.Status {
	now := time.Now()
	m, cfg, thr := d.state.snapshot()
	d.stats.mu.Lock()
	s := inspection.Status{
		Station:  inspection.Station{ID: cfg.Station.ID, Name: cfg.Station.Name, Line: cfg.Station.Line},
		Version:  d.deps.Version,
		Started:  d.started,
		UptimeS:  now.Sub(d.started).Seconds(),
		Trigger:  cfg.Trigger.Mode,
		Paused:   d.paused.Load(),
		Camera:   d.stats.camera,
		Counts:   d.stats.counts,
		Problems: []string{},
	}
	lat := d.stats.latencies.values()
	times := d.stats.rates.values()
	lastErr, lastErrAt := d.stats.lastErr, d.stats.lastErrAt
	if d.stats.lastEvent != nil {
		e := *d.stats.lastEvent
		s.LastEvent = &e
	}
	d.stats.mu.Unlock()
	s.Products = d.productsStatus()
	if m != nil {
		man := m.Bundle.Manifest
		s.Model = inspection.ModelStatus{Product: man.Product, BundleHash: m.Bundle.Hash, BundleDir: m.Bundle.Dir,
			Created: man.Created.Format(time.RFC3339), Provider: m.Engine.Provider(),
			InputWidth: man.Input.Width, InputHeight: man.Input.Height, AlignMethod: man.Align.Method,
			Threshold: thr.image, PixelThreshold: thr.pixel, ThresholdFrom: thr.source, LoadedAt: m.LoadedAt}
	}

	sort.Float64s(lat)
	s.Latency = inspection.LatencyStats{P50: percentile(lat, 0.5), P99: percentile(lat, 0.99)}
	if len(lat) > 0 {
		s.Latency.Max = lat[len(lat)-1]
	}
	cutoff := float64(now.Add(-time.Minute).UnixNano()) / 1e9
	n := 0
	for _, t := range times {
		if t >= cutoff {
			n++
		}
	}
	window := min(now.Sub(d.started).Seconds(), 60)
	if window > 0 {
		s.RatePerS = float64(n) / window
	}
	s.CameraN = d.camera.Stats()
	s.Sinks = d.sinks.statuses()

	switch {
	case s.Products.Unavailable != "":
		s.Problems = append(s.Problems, fmt.Sprintf("product %s is unavailable, every part is rejected: %s", s.Products.Active, s.Products.Unavailable))
	case m == nil && s.Products.Active != "":
		// The active product's bundle is loading on demand.
		for _, p := range s.Products.Products {
			if p.Active {
				s.Model.Product, s.Model.BundleHash, s.Model.BundleDir = p.Name, p.BundleHash, p.BundleDir
			}
		}
	case s.Model.BundleHash == "":
		s.Problems = append(s.Problems, "no model loaded")
	}
	if s.Camera.State != inspection.CameraOnline {
		p := "camera " + string(s.Camera.State)
		if s.Camera.Detail != "" {
			p += ": " + s.Camera.Detail
		}
		s.Problems = append(s.Problems, p)
	}
	if lastErr != "" && now.Sub(lastErrAt) < engineErrorWindow {
		s.Problems = append(s.Problems, fmt.Sprintf("engine error %s ago: %s", now.Sub(lastErrAt).Round(time.Second), lastErr))
	}
	s.Problems = append(s.Problems, d.sinks.problems()...)
	for _, q := range s.Sinks {
		if q.Capacity > 0 && q.Queued >= q.Capacity*9/10 {
			s.Problems = append(s.Problems, fmt.Sprintf("sink %s is not keeping up (%d of %d queued)", q.Name, q.Queued, q.Capacity))
		}
	}
	s.Healthy = len(s.Problems) == 0
	return s
}

// snapshot copies what the engine saw, for sinks that keep images.
func snapshot(f *inspection.Frame, roi image.Rectangle, t preprocess.Transform, hm *preprocess.Heatmap) *inspection.Snapshot {
	return &inspection.Snapshot{Frame: copyImage(f.Image), ROI: roi, Transform: t,
		Heatmap: &preprocess.Heatmap{Width: hm.Width, Height: hm.Height, Values: append([]float32(nil), hm.Values...)}}
}

// copyImage returns a private copy of img (frames are reused by the camera).
func copyImage(img image.Image) image.Image {
	switch im := img.(type) {
	case *preprocess.BGR:
		return &preprocess.BGR{Pix: append([]uint8(nil), im.Pix...), Stride: im.Stride, Rect: im.Rect}
	case *image.RGBA:
		return &image.RGBA{Pix: append([]uint8(nil), im.Pix...), Stride: im.Stride, Rect: im.Rect}
	case *image.NRGBA:
		return &image.NRGBA{Pix: append([]uint8(nil), im.Pix...), Stride: im.Stride, Rect: im.Rect}
	case *image.Gray:
		return &image.Gray{Pix: append([]uint8(nil), im.Pix...), Stride: im.Stride, Rect: im.Rect}
	}
	b := img.Bounds()
	out := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			out.Set(x, y, img.At(x, y))
		}
	}
	return out
}

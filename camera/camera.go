package camera

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/preprocess"
)

// Reconnect backoff and shutdown bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// closeWait bounds how long Close waits for reads and opens that were
	// abandoned (a GStreamer read returns ~0.1 s after its capture is
	// closed; an FFmpeg or V4L2 read that hangs cannot be cut short).
	closeWait = 2 * time.Second
	// maxOpensInFlight bounds opens left hanging inside OpenCV: an open
	// that outlives open_timeout is abandoned and a fresh one started (a
	// half-dead server can keep one open stuck for ~20 s), unless this many
	// are still stuck, in which case the newest is waited for again.
	maxOpensInFlight = 3
)

// ErrClosed is returned by Start and Next after Close.
var ErrClosed = errors.New("camera: closed")

// errNotStarted is returned by Next before Start.
var errNotStarted = errors.New("camera: Next called before Start")

var _ inspection.Camera = (*Camera)(nil)

// Camera is a frame source from the configuration, read by one goroutine
// that keeps only the newest frame. It implements [inspection.Camera].
//
// Replays (sources "file" and "images") are paced at camera.fps; with fps
// 0 a file plays at its own frame rate, and an image directory (or a file
// without a known rate) is read one frame at a time as the consumer takes
// them, so every frame is delivered and none is dropped.
type Camera struct {
	cfg         config.Camera
	src         source
	log         *slog.Logger
	pool        bufferPool
	readTimeout time.Duration
	openTimeout time.Duration

	closing    chan struct{} // closed by Close
	readerDone chan struct{} // closed when the reader goroutine exits
	taken      chan struct{} // signalled (cap 1) when Next empties the slot
	background sync.WaitGroup
	closeOnce  sync.Once
	opens      atomic.Int32 // opens running inside OpenCV

	mu        sync.Mutex
	started   bool
	running   bool // the reader goroutine was started
	closed    bool
	exhausted bool // a replay without loop has read its last frame
	status    inspection.CameraStatus
	watchers  []func(inspection.CameraStatus)
	latest    *inspection.Frame
	arrived   chan struct{} // closed and replaced when latest changes or reading ends
	seq       uint64
	stats     inspection.CameraStats
	onSkip    []func(*ImageError)
	frameSize image.Point
	roiErr    error
	// paceByConsumer: a replay read one frame at a time as frames are taken.
	paceByConsumer bool
}

// New checks the parts of cfg that the configuration cannot, as
// [CheckSource] does (an image directory holding at least one image with a
// readable header within camera.max_pixels, a video file that is a regular
// file), and returns a camera that opens nothing until Start. Errors name
// the configuration key, as in "camera.path: ...", and do not begin with
// "camera: " (the caller says it is the camera).
func New(cfg config.Camera, logger *slog.Logger) (*Camera, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	src, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	c := &Camera{
		cfg:         cfg,
		src:         src,
		log:         logger.With("component", "camera", "source", src.description),
		readTimeout: cfg.ReadTimeout.D,
		openTimeout: cfg.OpenTimeout.D,
		closing:     make(chan struct{}),
		readerDone:  make(chan struct{}),
		taken:       make(chan struct{}, 1),
		arrived:     make(chan struct{}),
		status:      inspection.CameraStatus{State: inspection.CameraStarting, Since: time.Now(), Detail: "not started"},
	}
	return c, nil
}

// Description names the source in messages, e.g. "images /data/run1" or an
// RTSP URL with its password removed.
func (c *Camera) Description() string { return c.src.description }

// Start opens the source within open_timeout and starts the reader. A
// source that cannot be opened is an error naming it ("open images
// /data/run1: ..."; the caller adds "camera: "); Start does not retry.
func (c *Camera) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return errors.New("camera: Start called twice")
	}
	c.started = true
	c.mu.Unlock()

	c.setState(inspection.CameraStarting, "opening "+c.src.description)
	attempt := c.startOpen()
	timer := time.NewTimer(c.openTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-attempt.done:
		err = attempt.err
	case <-timer.C:
		attempt.abandon()
		err = fmt.Errorf("timed out after %s", c.openTimeout)
	case <-ctx.Done():
		attempt.abandon()
		err = ctx.Err()
	case <-c.closing:
		attempt.abandon()
		return ErrClosed
	}
	if err != nil {
		err = fmt.Errorf("open %s: %w", c.src.description, err)
		c.setState(inspection.CameraOffline, err.Error())
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		attempt.g.close()
		return ErrClosed
	}
	c.running = true
	c.mu.Unlock()
	go c.run(attempt.g)
	return nil
}

// Next returns the newest frame captured after `after` (zero accepts any),
// waiting until ctx ends. A frame older than max_frame_age is dropped, not
// returned (except in a replay read at the consumer's pace). The caller
// owns the frame and must Release it. Next returns
// [inspection.ErrEndOfStream] once a replay without loop has delivered its
// last frame, [ErrClosed] after Close, and an error wrapping ctx.Err() that
// says the camera's state when ctx ends first.
func (c *Camera) Next(ctx context.Context, after time.Time) (*inspection.Frame, error) {
	for {
		c.mu.Lock()
		switch {
		case !c.started:
			c.mu.Unlock()
			return nil, errNotStarted
		case c.closed:
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if f := c.latest; f != nil {
			if c.tooOld(f) {
				c.latest = nil
				c.stats.Dropped++
				c.mu.Unlock()
				f.Release()
				c.signalTaken()
				continue
			}
			if after.IsZero() || f.Time.After(after) {
				if c.consumerPaced() {
					// A replay read one frame at a time: the frame is
					// "captured" when it is taken, as a triggered camera
					// would expose it, so its age never counts the wait
					// for a slow consumer.
					if now := time.Now(); now.After(f.Time) {
						f.Time = now
					}
				}
				c.latest = nil
				c.stats.Delivered++
				c.mu.Unlock()
				c.signalTaken()
				return f, nil
			}
		}
		if c.exhausted {
			c.mu.Unlock()
			return nil, inspection.ErrEndOfStream
		}
		wait := c.arrived
		c.mu.Unlock()

		select {
		case <-wait:
		case <-ctx.Done():
			st := c.Status()
			detail := ""
			if st.Detail != "" {
				detail = ": " + st.Detail
			}
			return nil, fmt.Errorf("camera: no frame from %s (%s%s): %w", c.src.description, st.State, detail, ctx.Err())
		}
	}
}

// tooOld reports whether f is past max_frame_age. Called with c.mu held.
func (c *Camera) tooOld(f *inspection.Frame) bool {
	return !c.consumerPaced() && c.cfg.FrameTooOld(f.Age(time.Now()))
}

// consumerPaced reports whether the source is a replay read one frame at a
// time as frames are taken. Called with c.mu held.
func (c *Camera) consumerPaced() bool {
	return c.paceByConsumer
}

func (c *Camera) signalTaken() {
	select {
	case c.taken <- struct{}{}:
	default:
	}
}

// Status reports the current state and why.
func (c *Camera) Status() inspection.CameraStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Stats reports the frame and reconnect counters.
func (c *Camera) Stats() inspection.CameraStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Skipped reports how many replayed images were skipped since New: files
// that vanished, were empty, were not regular files, had no readable PNG,
// JPEG or BMP header, claimed more than camera.max_pixels or could not be
// decoded. Each is logged and passed to the OnSkip functions.
func (c *Camera) Skipped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats.Skipped
}

// OnSkip registers fn, called from the camera's reader with every image a
// replay skips (the file, the size its header claims where known, and
// why); fn must not block. Call before Start.
func (c *Camera) OnSkip(fn func(*ImageError)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onSkip = append(c.onSkip, fn)
}

// reportSkip counts, logs and passes on one skipped image.
func (c *Camera) reportSkip(e *ImageError) {
	c.mu.Lock()
	c.stats.Skipped++
	n := c.stats.Skipped
	fns := c.onSkip
	if c.closed {
		fns = nil // a read abandoned at Close; nobody listens any more
	}
	c.mu.Unlock()
	attrs := []any{"file", e.Path, "reason", e.Reason, "skipped_total", n}
	if e.Width != 0 || e.Height != 0 {
		attrs = append(attrs, "format", e.Format, "width", e.Width, "height", e.Height)
	}
	c.log.Warn("camera skipped an image", attrs...)
	for _, fn := range fns {
		fn(e)
	}
}

// Watch registers fn, called from the camera's goroutine on every state
// change; fn must not block. Call before Start.
func (c *Camera) Watch(fn func(inspection.CameraStatus)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchers = append(c.watchers, fn)
}

// CheckROI reports whether camera.roi fits the frames: nil until the first
// frame arrives (and for a zero ROI, which means the full frame), and an
// error naming camera.roi when it does not fit the latest frame size. The
// camera delivers full frames either way; a misfit is also logged once per
// frame size. The engine applies the ROI.
func (c *Camera) CheckROI() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roiErr
}

// FrameSize returns the size of the frames read so far, zero before the
// first frame.
func (c *Camera) FrameSize() image.Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frameSize
}

// Close stops the reader and releases the capture, its Mats and the frame
// not yet delivered. Frames already delivered stay valid until released.
// It waits at most a couple of seconds for reads that cannot be cut short;
// those release their capture when they return. Safe to call twice.
func (c *Camera) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		running := c.running
		undelivered := c.latest
		c.latest = nil
		close(c.arrived)
		c.mu.Unlock()
		close(c.closing)
		if running {
			<-c.readerDone
		}
		if undelivered != nil {
			undelivered.Release()
		}
		done := make(chan struct{})
		go func() { c.background.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
			c.log.Warn("camera closed with a read or open still blocked inside OpenCV; it releases its capture when it returns")
		}
		c.setState(inspection.CameraOffline, "closed")
	})
	return nil
}

// setState records a state change, logs it and tells the watchers. A call
// with the current state only updates the detail.
func (c *Camera) setState(state inspection.CameraState, detail string) {
	c.mu.Lock()
	if c.status.State == state {
		c.status.Detail = detail
		c.mu.Unlock()
		return
	}
	c.status = inspection.CameraStatus{State: state, Since: time.Now(), Detail: detail}
	st := c.status
	watchers := c.watchers
	c.mu.Unlock()

	level := slog.LevelInfo
	if state == inspection.CameraStalled || state == inspection.CameraReconnecting {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "camera "+string(state), "detail", detail)
	for _, fn := range watchers {
		fn(st)
	}
}

// openAttempt is one open of the source running on its own goroutine, so a
// hanging open can be waited for with a deadline and abandoned.
type openAttempt struct {
	done chan struct{}
	g    grabber
	err  error

	mu        sync.Mutex
	finished  bool
	abandoned bool
}

func (c *Camera) startOpen() *openAttempt {
	a := &openAttempt{done: make(chan struct{})}
	c.background.Add(1)
	c.opens.Add(1)
	go func() {
		defer c.background.Done()
		g, err := c.src.open(c.reportSkip)
		c.opens.Add(-1)
		a.mu.Lock()
		a.g, a.err, a.finished = g, err, true
		abandoned := a.abandoned
		a.mu.Unlock()
		close(a.done)
		if abandoned && g != nil {
			g.close()
		}
	}()
	return a
}

// abandon gives the attempt up: whatever it opens is closed.
func (a *openAttempt) abandon() {
	a.mu.Lock()
	a.abandoned = true
	g := a.g
	finished := a.finished
	a.mu.Unlock()
	if finished && g != nil {
		g.close()
	}
}

// readResult is one grab's outcome.
type readResult struct {
	img *preprocess.BGR
	err error
}

// worker runs one grabber's reads on a goroutine of its own, so that the
// reader can wait for a read with a deadline and abandon it.
type worker struct {
	g        grabber
	requests chan struct{}
	results  chan readResult
	stopOnce sync.Once
	stopped  chan struct{}
}

func (c *Camera) startWorker(g grabber) *worker {
	w := &worker{g: g, requests: make(chan struct{}, 1), results: make(chan readResult, 1), stopped: make(chan struct{})}
	c.background.Add(1)
	go func() {
		defer c.background.Done()
		defer g.close()
		for {
			select {
			case <-w.stopped:
				return
			case <-w.requests:
			}
			img, err := g.grab(&c.pool)
			select {
			case <-w.stopped: // abandoned while reading
				c.pool.put(img)
				return
			default:
			}
			w.results <- readResult{img: img, err: err}
		}
	}()
	return w
}

// stop ends an idle worker; it closes the grabber.
func (w *worker) stop() { w.stopOnce.Do(func() { close(w.stopped) }) }

// abandon gives up a worker's read in progress: it is interrupted where
// the backend allows, and its result is discarded. It reports whether the
// read was interrupted.
func (c *Camera) abandon(w *worker) bool {
	w.stop()
	unblock := w.g.interrupt()
	if unblock == nil {
		return false
	}
	c.background.Add(1)
	go func() {
		defer c.background.Done()
		unblock()
	}()
	return true
}

// readOutcome classifies one read.
type readOutcome int

const (
	readFrame readOutcome = iota
	readFailed
	readTimedOut
	readClosing
)

func (c *Camera) read(w *worker) (readResult, readOutcome) {
	w.requests <- struct{}{}
	timer := time.NewTimer(c.readTimeout)
	defer timer.Stop()
	select {
	case r := <-w.results:
		return classify(r)
	case <-timer.C:
		return readResult{}, readTimedOut
	case <-c.closing:
		return readResult{}, readClosing
	}
}

// awaitRead waits, without a deadline, for the read a timed-out read
// left in progress.
func (c *Camera) awaitRead(w *worker) (readResult, readOutcome) {
	select {
	case r := <-w.results:
		return classify(r)
	case <-c.closing:
		return readResult{}, readClosing
	}
}

func classify(r readResult) (readResult, readOutcome) {
	if r.err != nil {
		return r, readFailed
	}
	return r, readFrame
}

// run is the reader goroutine: it reads, publishes, watches for stalls
// and reconnects until Close or the end of a replay.
func (c *Camera) run(g grabber) {
	defer close(c.readerDone)
	w := c.startWorker(g)
	var pending *openAttempt
	defer func() {
		if pending != nil {
			pending.abandon()
		}
	}()
	pace := newPacer(c, g)
	freshOpen := true
	// The reopen backoff grows across reopens that bring no frame (a source
	// that opens but fails every read, a replay whose files all fail) and
	// is reset by a frame.
	backoff := minBackoff
	for {
		if w == nil {
			g, ok := c.reconnect(&pending, &backoff)
			if !ok {
				return
			}
			w = c.startWorker(g)
			pace = newPacer(c, g)
			freshOpen = true
			c.mu.Lock()
			c.stats.Reconnects++
			c.mu.Unlock()
		}
		if !pace.wait() {
			w.stop()
			return
		}
		r, outcome := c.read(w)
		if outcome == readTimedOut && c.src.waitSlowReads {
			// A replayed file that takes long to read or decode: one
			// decode at a time, and the file is not lost.
			c.setState(inspection.CameraStalled, fmt.Sprintf("no frame for %s from %s; still reading or decoding a file, waiting for it (raise camera.read_timeout for images this large)", c.readTimeout, c.src.description))
			r, outcome = c.awaitRead(w)
		}
		switch outcome {
		case readFrame:
			c.publish(r.img, freshOpen)
			freshOpen = false
			backoff = minBackoff
		case readClosing:
			c.abandon(w)
			return
		case readTimedOut:
			reason := fmt.Sprintf("no frame for %s from %s", c.readTimeout, c.src.description)
			c.setState(inspection.CameraStalled, reason)
			unblocked := c.abandon(w)
			w = nil
			if !unblocked {
				reason += " (the blocked read is abandoned)"
			}
			c.setState(inspection.CameraReconnecting, reason)
		case readFailed:
			w.stop()
			if errors.Is(r.err, errEndOfReplay) {
				c.endReplay()
				return
			}
			w = nil
			c.setState(inspection.CameraReconnecting, fmt.Sprintf("read from %s failed: %v", c.src.description, r.err))
		}
	}
}

// reconnect reopens the source with exponential backoff until it opens or
// the camera closes: each attempt waits *backoff, which then doubles up
// to maxBackoff (the caller resets it when a frame arrives). An open that
// outlives open_timeout is abandoned (see maxOpensInFlight).
func (c *Camera) reconnect(pending **openAttempt, backoff *time.Duration) (grabber, bool) {
	reason := c.Status().Detail
	for attempt := 1; ; attempt++ {
		timer := time.NewTimer(*backoff)
		select {
		case <-timer.C:
		case <-c.closing:
			timer.Stop()
			return nil, false
		}
		*backoff = min(2**backoff, maxBackoff)
		if *pending == nil {
			*pending = c.startOpen()
		}
		a := *pending
		timer = time.NewTimer(c.openTimeout)
		var err error
		select {
		case <-a.done:
			*pending = nil
			err = a.err
		case <-timer.C:
			err = fmt.Errorf("open timed out after %s", c.openTimeout)
			if c.opens.Load() < maxOpensInFlight {
				a.abandon()
				*pending = nil
			}
		case <-c.closing:
			timer.Stop()
			return nil, false
		}
		timer.Stop()
		if err == nil {
			c.log.Info("camera reopened", "attempts", attempt)
			return a.g, true
		}
		c.log.Debug("camera reopen failed", "attempt", attempt, "err", err)
		c.setState(inspection.CameraReconnecting, fmt.Sprintf("%s; attempt %d: %v", reason, attempt, err))
	}
}

// publish makes img the newest frame, releasing an undelivered older one.
func (c *Camera) publish(img *preprocess.BGR, freshOpen bool) {
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.pool.put(img)
		return
	}
	c.seq++
	c.stats.Captured++
	old := c.latest
	if old != nil {
		c.stats.Dropped++
	}
	c.latest = inspection.NewFrame(c.seq, now, img, func() { c.pool.put(img) })
	close(c.arrived)
	c.arrived = make(chan struct{})
	size := img.Rect.Size()
	sizeChanged := size != c.frameSize
	c.frameSize = size
	var roiErr error
	if sizeChanged {
		roiErr = c.roiFits(size)
		c.roiErr = roiErr
	}
	state := c.status.State
	c.mu.Unlock()

	if old != nil {
		old.Release()
	}
	if sizeChanged {
		c.log.Info("camera frame size", "width", size.X, "height", size.Y)
		if roiErr != nil {
			c.log.Error("camera.roi does not fit the frames", "err", roiErr)
		}
	}
	if state != inspection.CameraOnline || freshOpen {
		c.setState(inspection.CameraOnline, "")
	}
}

// roiFits checks camera.roi against a frame size.
func (c *Camera) roiFits(size image.Point) error {
	if err := c.cfg.ROI.Fits(size); err != nil {
		return fmt.Errorf("%w (frames from %s)", err, c.src.description)
	}
	return nil
}

// endReplay marks a replay without loop as finished; watchers hear of it
// before Next reports the end.
func (c *Camera) endReplay() {
	c.setState(inspection.CameraOffline, fmt.Sprintf("end of replay after %d frames", c.Stats().Captured))
	c.mu.Lock()
	c.exhausted = true
	if !c.closed {
		close(c.arrived)
		c.arrived = make(chan struct{})
	}
	c.mu.Unlock()
}

// pacer spaces replay frames; live sources are read as fast as they come.
type pacer struct {
	c        *Camera
	period   time.Duration
	consumer bool // wait until the previous frame was taken
	next     time.Time
}

func newPacer(c *Camera, g grabber) *pacer {
	p := &pacer{c: c}
	if !c.src.replay {
		return p
	}
	p.period = replayPeriod(c.cfg.FPS, g)
	p.consumer = p.period == 0
	c.mu.Lock()
	c.paceByConsumer = p.consumer
	c.mu.Unlock()
	return p
}

// wait blocks until the next frame is due; false when the camera closes.
func (p *pacer) wait() bool {
	c := p.c
	if p.consumer {
		for {
			c.mu.Lock()
			empty := c.latest == nil
			c.mu.Unlock()
			if empty {
				return true
			}
			select {
			case <-c.taken:
			case <-c.closing:
				return false
			}
		}
	}
	if p.period == 0 {
		return true
	}
	now := time.Now()
	if p.next.IsZero() || now.Sub(p.next) > p.period {
		p.next = now // first frame, or far behind: restart the schedule
	}
	if d := p.next.Sub(now); d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-c.closing:
			timer.Stop()
			return false
		}
	}
	p.next = p.next.Add(p.period)
	return true
}

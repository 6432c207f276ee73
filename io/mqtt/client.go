package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// Tuning constants.
const (
	stageCapacity   = 4096 // messages accepted but not yet written to the outbox
	writeBatch      = 256  // messages per outbox transaction at most
	publishBatch    = 64   // records read from the outbox at a time; also the delete batch
	maxBackoff      = 10 * time.Second
	dropEventPeriod = 10 * time.Second // at most one outbox_drop event per period
	writeRetries    = 3
	writeRetryDelay = 100 * time.Millisecond // doubled after each failed outbox write
)

var (
	// ErrClosed is returned by Deliver and Flush after Close, and after a
	// failed Start.
	ErrClosed = errors.New("mqtt: client closed")
	// ErrNotStarted is returned by Deliver and Flush before Start.
	ErrNotStarted = errors.New("mqtt: client not started (call Start first)")
)

// Host is what the client asks of the daemon: the commands (JSON commands,
// Sparkplug DCMD) and the inspection figures of the stats messages and of
// the Sparkplug births. *daemon.Daemon implements it. Every method must be
// safe for concurrent use and return quickly.
type Host interface {
	// Trigger asks for one inspected part (source inspection.TriggerMQTT).
	Trigger(partID, source string) error
	// Reload re-reads the configuration and the bundle.
	Reload(ctx context.Context) error
	// SetThresholds changes the thresholds at runtime (nil: unchanged).
	SetThresholds(image, pixel *float64) error
	// Pause stops taking triggers; Resume undoes it.
	Pause()
	Resume()
	// Status returns a snapshot of the daemon.
	Status() inspection.Status
	// ClearFaults clears the outputs' latched faults (command
	// clear_fault, Sparkplug Node Control/Clear Fault); it fails when no
	// output latches faults.
	ClearFaults() error
}

// Options configures a Client.
type Options struct {
	// Config is the [mqtt] section as config.Load returns it (validated,
	// paths resolved). New checks it again with config.MQTT.Validate, so a
	// section built in code must set what Load would (start from
	// config.Default().MQTT).
	Config config.MQTT
	// Station is the station id, the second level of every topic.
	Station string
	// StateDir is the daemon's state directory; mode "sparkplug" keeps its
	// bdSeq file there (required in that mode).
	StateDir string
	// Logger receives the client's logs (component=mqtt); nil discards.
	Logger *slog.Logger
	// Version is reported in the status message (JSON mode) and as
	// Properties/Software Version (Sparkplug mode).
	Version string
	// Reboot restarts the daemon; it is called, in its own goroutine, for
	// the Sparkplug command Node Control/Reboot when
	// mqtt.sparkplug.allow_reboot is true. nil refuses that command.
	Reboot func()
	// ModelInstallTimeout bounds a model_install command (JSON or
	// Sparkplug) from start to outcome; 0 means ModelInstallTimeout. Give
	// rollout.download_timeout plus a few minutes for the verification.
	ModelInstallTimeout time.Duration
}

// Stats are the client's counters since New, for metrics.
type Stats struct {
	Connected bool
	// Accepted counts results taken by Deliver; Persisted those written
	// to the outbox (fsync'd).
	Accepted, Persisted uint64
	// Published counts results and events acknowledged by the broker
	// (PUBACK/PUBCOMP); PublishedResults the results among them.
	Published, PublishedResults uint64
	// PublishRetries counts publishes repeated after a timeout or an
	// error; each may reach subscribers twice.
	PublishRetries uint64
	// Dropped counts messages dropped because the outbox was full (oldest
	// first) and messages lost because the outbox could not be written
	// and publishing them directly failed (Lost); EventsDropped events
	// dropped because the in-memory event queue was full.
	Dropped, EventsDropped uint64
	// PublishedUnpersisted counts messages published directly, without
	// the outbox, because it could not be written (at most once).
	PublishedUnpersisted uint64
	// Lost counts messages neither written to the outbox nor published;
	// ResultsLost the results among them.
	Lost, ResultsLost uint64
	// OutboxWritable is false while writes to the outbox fail.
	OutboxWritable bool
	// Quarantined counts corrupt outbox records moved aside.
	Quarantined uint64
	// OutboxDepth is the number of messages waiting; OutboxMax the bound.
	OutboxDepth, OutboxMax int
	// Reconnects counts successful connections after the first.
	Reconnects uint64
	// Commands counts commands received; CommandErrors those answered
	// with an error.
	Commands, CommandErrors uint64
	// StatsPublished counts stats messages sent.
	StatsPublished uint64
}

// topics are the station's topic names (JSON mode).
type topics struct {
	base, result, status, stats, event, cmd, reply string
}

func newTopics(prefix, station string) topics {
	b := prefix + "/" + station
	return topics{
		base: b, result: b + "/result", status: b + "/status", stats: b + "/stats",
		event: b + "/event", cmd: b + "/cmd/", reply: b + "/reply/",
	}
}

// Lifecycle phases.
const (
	phaseNew     int32 = iota // after New: nothing acquired, nothing running
	phaseRunning              // Start succeeded
	phaseDone                 // closed, or Start failed: everything released
)

// Client publishes results, events, availability and statistics to the
// broker through a durable outbox and executes commands. It implements
// inspection.Sink, inspection.EventSink and prometheus.Collector.
//
// Lifecycle: New allocates only; Start opens the outbox, connects and
// starts the goroutines; Close stops them, waits for them and releases
// everything. What differs between mqtt.mode "json" and "sparkplug" is the
// session (session.go).
type Client struct {
	cfg      config.MQTT
	station  string
	clientID string
	version  string
	log      *slog.Logger
	topics   topics
	qos      byte
	creds    credentials
	box      *outbox // allocated by New, opened by Start
	sess     session
	hooks    testHooks

	// host is set by Start before any goroutine starts and not changed
	// after; nil makes every command fail and leaves the daemon's figures
	// out of stats messages.
	host Host

	// lifeMu serialises Start and Close; phase is read without it.
	lifeMu sync.Mutex
	phase  atomic.Int32

	// cliMu guards cli, the paho client of the current connection: a
	// fresh one for every connection attempt (supervise), so that message
	// IDs of publishes a lost connection left in flight die with it.
	cliMu sync.RWMutex
	cli   paho.Client
	lost  <-chan struct{} // closed when cli's connection is lost

	// stage carries messages from Deliver and Event to the outbox writer.
	sendMu     sync.RWMutex
	accepting  bool // Start succeeded: Deliver takes results
	closed     bool // Close began or Start failed: nothing is taken any more
	stage      chan item
	closing    chan struct{} // closed when Close begins (or Start fails)
	abort      chan struct{} // closed when Close's ctx ends before the writer is done
	writerDone chan struct{} // closed when the writer has stopped (or will never run)
	committed  progress      // messages the writer has finished with (written or dropped)

	wake chan struct{} // the writer tells the publisher that records arrived
	conn connState

	// Every goroutine but the writer runs in routines and stops with bg.
	bg       context.Context
	stopBg   context.CancelFunc
	routines goroutines

	connected atomic.Int32 // connections made; >1 means reconnects

	// Drop-event rate limiting (writer goroutine only).
	lastDropEvent time.Time
	dropsPending  uint64

	accepted, persisted, published, publishedResults atomic.Uint64
	retries, eventsDropped                           atomic.Uint64
	commands, commandErrors, statsPublished          atomic.Uint64
	acceptedSeq                                      atomic.Uint64
	direct, lostMsgs, resultsLost                    atomic.Uint64

	health health // what Problems reports (health.go)

	// models runs the model commands (JSON and Sparkplug) one at a time;
	// installTimeout bounds an install.
	models         modelRunner
	installTimeout time.Duration
}

// testHooks let the package's tests observe or hold the goroutines.
type testHooks struct {
	// beforeWrite runs on the writer goroutine before each batch.
	beforeWrite func()
	// retryDelay replaces writeRetryDelay when set.
	retryDelay time.Duration
	// stalledAfter replaces stalledWriteAfter when set.
	stalledAfter time.Duration
}

// New checks the options (the configuration with config.MQTT.Validate, the
// TLS and password files) and allocates the client. It opens nothing,
// writes nothing and starts no goroutine: call Start. A Client that is
// never started needs no Close (Close is harmless).
func New(o Options) (*Client, error) {
	cfg := o.Config
	if o.Station == "" || strings.ContainsAny(o.Station, "+#/") {
		return nil, fmt.Errorf("mqtt: station id %q cannot be used in a topic (empty, or contains +, # or /)", o.Station)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	creds, err := loadCredentials(cfg)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	base := o.Logger
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	bg, stop := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, station: o.Station, clientID: cfg.ClientIDFor(o.Station), version: o.Version,
		log: base.With("component", "mqtt"), topics: newTopics(cfg.TopicPrefix, o.Station),
		qos: byte(cfg.QoS), creds: creds, box: newOutbox(cfg.OutboxDir, cfg.OutboxMaxMessages),
		stage: make(chan item, stageCapacity), closing: make(chan struct{}), abort: make(chan struct{}),
		writerDone: make(chan struct{}), wake: make(chan struct{}, 1),
		bg: bg, stopBg: stop, installTimeout: o.ModelInstallTimeout,
	}
	if c.installTimeout <= 0 {
		c.installTimeout = ModelInstallTimeout
	}
	c.conn.init()
	if c.sess, err = newSession(c, o, base); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return c, nil
}

// Name implements inspection.Sink.
func (c *Client) Name() string { return "mqtt" }

// Deliver implements inspection.Sink: it encodes the result and hands it to
// the outbox writer, which appends it to the on-disk outbox (group commit,
// fsync) before the publisher may send it. Deliver waits only when the
// writer is more than 4096 messages behind (a stalled disk), and then at most
// until ctx ends. Before Start it returns ErrNotStarted, after Close (or a
// failed Start) ErrClosed.
func (c *Client) Deliver(ctx context.Context, r *inspection.Result) error {
	payload, err := marshalResult(r)
	if err != nil {
		return err
	}
	// While the outbox cannot be written, the writer publishes results
	// directly: wait for its verdict so that a result it could not keep
	// is an error here (the daemon counts sink errors), not a silent loss.
	var done chan error
	if c.health.degraded() {
		done = make(chan error, 1)
	}
	c.sendMu.RLock()
	switch {
	case c.closed:
		c.sendMu.RUnlock()
		return ErrClosed
	case !c.accepting:
		c.sendMu.RUnlock()
		return ErrNotStarted
	}
	select {
	case c.stage <- item{kind: kindResult, payload: payload, done: done}:
		c.accepted.Add(1)
		c.acceptedSeq.Add(1)
		c.sendMu.RUnlock()
	case <-c.closing:
		c.sendMu.RUnlock()
		return ErrClosed
	case <-ctx.Done():
		c.sendMu.RUnlock()
		return fmt.Errorf("mqtt: result %s: outbox writer is behind: %w", r.ID, ctx.Err())
	}
	if done == nil {
		return nil
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("mqtt: result %s: %w", r.ID, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: result %s: outbox not writable, waiting for the direct publish: %w", r.ID, ctx.Err())
	}
}

// Event implements inspection.EventSink. Events take the same path as
// results (outbox, then broker, in order with results) but never block: when
// the in-memory queue in front of the outbox is full the event is dropped
// and counted. Events that arrive before Start wait in that queue for it.
func (c *Client) Event(e inspection.Event) {
	c.sess.noteEvent(e)
	if e.Station == "" {
		e.Station = c.station
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	payload, err := json.Marshal(e)
	if err != nil {
		c.eventsDropped.Add(1)
		return
	}
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		c.eventsDropped.Add(1)
		return
	}
	select {
	case c.stage <- item{kind: kindEvent, payload: payload}:
		c.acceptedSeq.Add(1)
	default:
		c.eventsDropped.Add(1)
	}
}

// Flush waits until every message accepted so far is in the outbox on disk
// (not until it is published). It waits on the writer's progress, not by
// polling.
func (c *Client) Flush(ctx context.Context) error {
	if c.phase.Load() == phaseNew {
		return ErrNotStarted
	}
	target := c.acceptedSeq.Load()
	for {
		done, next := c.committed.reached(target)
		if done {
			return nil
		}
		select {
		case <-next:
		case <-c.writerDone:
			if done, _ := c.committed.reached(target); done {
				return nil
			}
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("mqtt: flush outbox: %w", ctx.Err())
		}
	}
}

// Start opens the outbox, connects to the broker and starts the
// goroutines (outbox writer, publisher, connection supervisor, stats,
// commands); host executes commands and supplies the daemon's figures (nil:
// commands are refused). ctx bounds Start only; Close stops what Start
// started.
//
// The first connection attempt is bounded by connect_timeout.
// Configuration mistakes a technician must fix (credentials refused, TLS
// verification or handshake failure, a plain connection to a TLS port) fail
// Start with an error saying what to check, as does an outbox in use by
// another process. An unreachable broker does not: Start logs a warning and
// returns nil, the client keeps trying in the background with backoff, and
// results wait in the outbox. When Start fails it has released everything
// it acquired and the client is closed (Deliver returns ErrClosed).
func (c *Client) Start(ctx context.Context, host Host) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch c.phase.Load() {
	case phaseRunning:
		return errors.New("mqtt: Start called twice")
	case phaseDone:
		return ErrClosed
	}
	if err := c.start(ctx, host); err != nil {
		c.stopTaking()
		close(c.writerDone) // the writer never ran
		c.stopBg()
		c.phase.Store(phaseDone)
		return err
	}
	c.phase.Store(phaseRunning)
	return nil
}

// start does Start's work; on an error it has released what it acquired.
func (c *Client) start(ctx context.Context, host Host) (err error) {
	c.host = host
	aside, err := c.box.open()
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	defer func() {
		if err != nil {
			if cerr := c.box.close(); cerr != nil {
				c.log.Error("cannot close the outbox", "error", cerr)
			}
		}
	}()
	if aside.Aside != "" {
		c.health.setDamaged(c.box.path, aside, time.Now())
		c.log.Error("outbox was damaged: moved it aside and started an empty one; the messages it held are not sent",
			"reason", aside.Reason, "corrupt_file", aside.Aside, "outbox", c.box.path)
		c.Event(inspection.Event{Time: time.Now(), Severity: inspection.Critical, Kind: inspection.EventOutboxDrop,
			Message: fmt.Sprintf("outbox file was damaged (%v) and was moved aside to %s; an empty outbox was started and the messages it held are not sent", aside.Reason, aside.Aside),
			Fields:  map[string]string{"corrupt_file": aside.Aside, "reason": aside.Reason.Error()}})
	}
	if depth := c.box.depth(); depth > 0 {
		c.log.Info("outbox holds messages from an earlier run; they are sent first", "depth", depth, "outbox", c.box.path)
	}
	if err := c.sess.open(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	cli, lost := c.newPaho()
	c.setClient(cli, lost)
	tok := cli.Connect()
	wait := c.cfg.ConnectTimeout.D + time.Second
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var cerr error
	select {
	case <-tok.Done():
		cerr = tok.Error()
	case <-timer.C:
		cerr = fmt.Errorf("no CONNACK within %s", wait)
	case <-ctx.Done():
		err = fmt.Errorf("mqtt: connect to %s: %w", c.cfg.Broker, ctx.Err())
	case <-c.closing:
		err = fmt.Errorf("mqtt: connect to %s: %w", c.cfg.Broker, ErrClosed)
	}
	if err == nil && cerr != nil {
		fatal, why := connectError(c.cfg.Broker, c.cfg.Username, cerr)
		if fatal {
			err = fmt.Errorf("mqtt: %w", why)
		} else {
			c.log.Warn("broker unreachable at start-up; results are kept in the outbox and sent once it answers; retrying in the background",
				"error", why, "outbox_depth", c.box.depth())
		}
	}
	if err != nil {
		// An attempt that connects after all is no longer current: its
		// on-connect handler disconnects it.
		c.setClient(nil, nil)
		cli.Disconnect(0)
		return err
	}
	go c.writer()
	c.routines.Go(func() { c.supervise(cerr == nil) })
	c.routines.Go(c.publisher)
	c.routines.Go(c.statsLoop)
	c.sess.start()
	c.sendMu.Lock()
	c.accepting = true
	c.sendMu.Unlock()
	return nil
}

// stopTaking makes Deliver and Event refuse from now on and ends the
// writer's input; it reports whether it did so (false: already done).
func (c *Client) stopTaking() bool {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	close(c.closing)
	close(c.stage)
	return true
}

// Stats returns the counters. It takes no lock held across I/O.
func (c *Client) Stats() Stats {
	n := c.connected.Load()
	return Stats{
		Connected: c.conn.isUp(),
		Accepted:  c.accepted.Load(), Persisted: c.persisted.Load(),
		Published: c.published.Load(), PublishedResults: c.publishedResults.Load(),
		PublishRetries:       c.retries.Load(),
		Dropped:              c.box.dropped.Load() + c.lostMsgs.Load(),
		EventsDropped:        c.eventsDropped.Load(),
		PublishedUnpersisted: c.direct.Load(),
		Lost:                 c.lostMsgs.Load(), ResultsLost: c.resultsLost.Load(),
		OutboxWritable: c.health.unwritable.Load() == nil,
		Quarantined:    c.box.quarantined.Load(),
		OutboxDepth:    c.box.depth(), OutboxMax: c.cfg.OutboxMaxMessages,
		Reconnects: uint64(max(n-1, 0)),
		Commands:   c.commands.Load(), CommandErrors: c.commandErrors.Load(),
		StatsPublished: c.statsPublished.Load(),
	}
}

// Close stops taking results, writes what is queued to the outbox, keeps
// publishing until the outbox is empty, the broker is gone or ctx ends,
// announces offline (JSON: retained status; Sparkplug: NDEATH) and
// disconnects, waits for every goroutine Start started, then closes the
// outbox. What was not published stays in the outbox for the next start.
// It logs a summary of the run; when results were lost (the outbox could
// not be written and publishing them directly failed) it returns an error
// saying how many. Close is safe without Start and safe to call twice; it
// waits for a Start in progress (which gives up its connection attempt).
func (c *Client) Close(ctx context.Context) error {
	if !c.stopTaking() {
		return nil
	}
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch c.phase.Load() {
	case phaseDone: // Start failed and released everything
		return nil
	case phaseNew:
		c.phase.Store(phaseDone)
		close(c.writerDone)
		c.stopBg()
		for range c.stage {
			c.eventsDropped.Add(1) // events queued for a Start that never came
		}
		return nil
	}
	defer c.phase.Store(phaseDone)

	select {
	case <-c.writerDone:
	case <-ctx.Done():
		// The writer still owns the outbox: stop its retry waits and wait
		// for it, it finishes its last transaction quickly.
		close(c.abort)
		<-c.writerDone
	}
	// Publish what is left while the broker is there: until the outbox
	// is empty, the connection drops or ctx ends.
	select {
	case <-c.box.whenEmpty():
	case <-c.conn.lost():
	case <-ctx.Done():
	}
	c.stopBg()
	c.routines.Wait()
	cli := c.client()
	if cli.IsConnectionOpen() {
		c.sess.goodbye(ctx)
	}
	cli.Disconnect(250)
	c.conn.set(false)
	if d := c.box.depth(); d > 0 {
		c.log.Info("messages left in the outbox for the next start", "depth", d)
	}
	st := c.Stats()
	c.log.Info("closed", "results_accepted", st.Accepted, "results_persisted", st.Persisted,
		"results_published", st.PublishedResults, "published_unpersisted", st.PublishedUnpersisted,
		"results_lost", st.ResultsLost, "messages_lost", st.Lost, "outbox_dropped_full", c.box.dropped.Load(),
		"outbox_depth", st.OutboxDepth)
	err := c.box.close()
	if st.Lost > 0 {
		lerr := fmt.Errorf("mqtt: %d results and %d events were neither written to the outbox %s nor published (%s)",
			st.ResultsLost, st.Lost-st.ResultsLost, c.box.path, c.health.lastWriteError())
		c.log.Error("results lost during this run", "results_lost", st.ResultsLost, "messages_lost", st.Lost, "error", lerr)
		err = errors.Join(lerr, err)
	}
	return err
}

// goroutines runs goroutines that Wait waits for; once Wait has begun, Go
// runs nothing more (a paho callback arriving during Close).
type goroutines struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// Go runs f in a goroutine unless Wait has begun; it reports whether f
// runs.
func (g *goroutines) Go(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// Wait refuses further goroutines and waits for the running ones.
func (g *goroutines) Wait() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.wg.Wait()
}

// progress is a counter whose waiters are woken when it grows (a broadcast
// condition that can be combined with a context in a select).
type progress struct {
	mu   sync.Mutex
	n    uint64
	next chan struct{} // closed at the next add; nil while nobody waits
}

func (p *progress) add(d uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += d
	if p.next != nil {
		close(p.next)
		p.next = nil
	}
}

// reached reports whether the counter is at least target; when it is not,
// next is closed at the counter's next change.
func (p *progress) reached(target uint64) (done bool, next <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n >= target {
		return true, nil
	}
	if p.next == nil {
		p.next = make(chan struct{})
	}
	return false, p.next
}

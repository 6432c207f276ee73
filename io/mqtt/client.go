package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

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
)

// ErrClosed is returned by Deliver after Close.
var ErrClosed = errors.New("mqtt: client closed")

// Options configures a Client.
type Options struct {
	// Config is the [mqtt] section, paths already resolved. An empty
	// Config.OutboxDir means StateDir/outbox.
	Config config.MQTT
	// Station is the station id, the second level of every topic.
	Station string
	// StateDir is the daemon's state directory (used only when
	// Config.OutboxDir is empty).
	StateDir string
	// Logger receives the client's logs (component=mqtt); nil discards.
	Logger *slog.Logger
	// Control executes commands; nil makes every command fail with an
	// error reply and leaves the inspection fields out of stats messages.
	Control inspection.Control
	// Version is reported in the status message (JSON mode) and as
	// Properties/Software Version (Sparkplug mode).
	Version string
	// Reboot restarts the daemon; it is called, in its own goroutine, for
	// the Sparkplug command Node Control/Reboot when
	// mqtt.sparkplug.allow_reboot is true. nil refuses that command.
	Reboot func()
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
	// first) or could not be written; EventsDropped events dropped because
	// the in-memory event queue was full.
	Dropped, EventsDropped uint64
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

// topics are the station's topic names.
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

// Client publishes results, events, availability and statistics to the
// broker through a durable outbox and executes commands. It implements
// inspection.Sink and inspection.EventSink.
type Client struct {
	cfg      config.MQTT
	station  string
	clientID string
	version  string
	control  inspection.Control
	log      *slog.Logger
	topics   topics
	qos      byte
	creds    credentials
	box      *outbox

	// cliMu guards cli, the paho client of the current connection: a
	// fresh one for every connection attempt (supervise), so that message
	// IDs of publishes a lost connection left in flight die with it.
	cliMu sync.RWMutex
	cli   paho.Client
	lost  <-chan struct{} // closed when cli's connection is lost
	// spb is the Sparkplug B edge node (mode "sparkplug"); nil in JSON mode.
	spb *spbNode

	// stage carries messages from Deliver and Event to the outbox writer.
	sendMu     sync.RWMutex
	closed     bool
	stage      chan item
	closing    chan struct{} // closed when Close begins
	writerDone chan struct{}

	wake chan struct{} // the writer tells the publisher that records arrived
	conn connState

	// Background goroutines other than the writer stop with bg.
	bg     context.Context
	stopBg context.CancelFunc
	wg     sync.WaitGroup

	startOnce sync.Once
	connected atomic.Int32 // connections made; >1 means reconnects

	// Drop-event rate limiting (writer goroutine only).
	lastDropEvent time.Time
	dropsPending  uint64

	cmds commandState

	accepted, persisted, published, publishedResults atomic.Uint64
	retries, writeDropped, eventsDropped             atomic.Uint64
	commands, commandErrors, statsPublished          atomic.Uint64
	committedSeq, acceptedSeq                        atomic.Uint64
}

// New validates the configuration files (TLS, password) and opens the
// outbox. It does not connect: call Start. A second daemon on the same
// outbox fails here with "outbox <path> is in use by another process".
func New(o Options) (*Client, error) {
	cfg := o.Config
	if o.Station == "" || strings.ContainsAny(o.Station, "+#/") {
		return nil, fmt.Errorf("mqtt: station id %q cannot be used in a topic (empty, or contains +, # or /)", o.Station)
	}
	if cfg.QoS != 1 && cfg.QoS != 2 {
		return nil, fmt.Errorf("mqtt: qos %d: use 1 or 2", cfg.QoS)
	}
	if cfg.OutboxMaxMessages < 1 {
		return nil, fmt.Errorf("mqtt: outbox_max_messages %d: must be at least 1", cfg.OutboxMaxMessages)
	}
	if cfg.TopicPrefix == "" {
		return nil, errors.New("mqtt: topic_prefix is empty")
	}
	if cfg.ConnectTimeout.D <= 0 {
		cfg.ConnectTimeout = config.Dur(10 * time.Second)
	}
	if cfg.KeepAlive.D < time.Second {
		cfg.KeepAlive = config.Dur(30 * time.Second)
	}
	if cfg.StatsInterval.D <= 0 {
		cfg.StatsInterval = config.Dur(time.Minute)
	}
	creds, err := loadCredentials(cfg)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "mqtt")
	dir := cfg.OutboxDir
	if dir == "" {
		if o.StateDir == "" {
			return nil, errors.New("mqtt: neither outbox_dir nor state_dir is set")
		}
		dir = filepath.Join(o.StateDir, "outbox")
	}
	var spb *spbNode
	if sparkplugMode(cfg) {
		// bdSeq lives in the state directory (the outbox's when unset).
		bdDir := o.StateDir
		if bdDir == "" {
			bdDir = dir
		}
		base := o.Logger
		if base == nil {
			base = slog.New(slog.DiscardHandler)
		}
		if spb, err = newSpbNode(o, bdDir, base.With("component", "sparkplug")); err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
	}
	box, aside, err := openOutbox(dir, cfg.OutboxMaxMessages)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if aside != "" {
		log.Error("outbox was corrupt: moved it aside and started an empty one; its undelivered messages are not sent",
			"corrupt_file", aside, "outbox", box.path)
	}
	clientID := cfg.ClientID
	if clientID == "" {
		clientID = "inspectd-" + o.Station
	}
	bg, stop := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, station: o.Station, clientID: clientID, version: o.Version,
		control: o.Control, log: log, topics: newTopics(cfg.TopicPrefix, o.Station),
		qos: byte(cfg.QoS), creds: creds, box: box,
		stage: make(chan item, stageCapacity), closing: make(chan struct{}),
		writerDone: make(chan struct{}), wake: make(chan struct{}, 1),
		bg: bg, stopBg: stop, spb: spb,
	}
	if spb != nil {
		spb.c = c
	}
	c.conn.init()
	c.cmds.init()
	if depth := box.depth(); depth > 0 {
		log.Info("outbox holds messages from an earlier run; they are sent first", "depth", depth, "outbox", box.path)
	}
	if aside != "" {
		c.Event(inspection.Event{Time: time.Now(), Severity: inspection.Critical, Kind: inspection.EventOutboxDrop,
			Message: "outbox file was corrupt and was moved aside; its undelivered messages are not sent",
			Fields:  map[string]string{"corrupt_file": aside}})
	}
	c.cli, c.lost = c.newPaho()
	go c.writer()
	return c, nil
}

// client returns the paho client of the current connection (attempt).
func (c *Client) client() paho.Client {
	c.cliMu.RLock()
	defer c.cliMu.RUnlock()
	return c.cli
}

// current says whether cl is the client of the current connection attempt:
// handlers of an abandoned client do nothing.
func (c *Client) current(cl paho.Client) bool { return c.client() == cl }

// currentOrClose disconnects cl when it is not the client of the current
// connection attempt (an attempt that supervise gave up waiting for and
// that connected late) and reports whether cl is the current one.
func (c *Client) currentOrClose(cl paho.Client) bool {
	if c.current(cl) {
		return true
	}
	c.log.Debug("a connection attempt that was given up on connected late; closing it")
	go cl.Disconnect(0)
	return false
}

// newPaho builds the paho client for one connection attempt, and a
// channel closed when its connection is lost.
func (c *Client) newPaho() (paho.Client, <-chan struct{}) {
	lost := make(chan struct{})
	var once sync.Once
	o := c.pahoOptions().SetConnectionLostHandler(func(cl paho.Client, err error) {
		c.onConnectionLost(cl, err)
		once.Do(func() { close(lost) })
	})
	return paho.NewClient(o), lost
}

// pahoOptions builds the paho client options. CleanSession(true) and a
// store that keeps nothing (noStore): the outbox, not the broker session or
// paho, holds what is not yet acknowledged and sends it again after a
// reconnect, so nothing is resent twice by two layers, and commands sent
// while the station was offline are not executed late. paho does not
// reconnect by itself: supervise connects a fresh client after a loss,
// because paho's own reconnect keeps the message IDs of the lost
// connection's unacknowledged publishes reserved for ever (it expects to
// resume them) and would run out of IDs after tens of thousands of
// reconnects; without it paho releases them when the connection drops.
func (c *Client) pahoOptions() *paho.ClientOptions {
	offline, _ := json.Marshal(StatusMessage{State: StateOffline, Station: c.station, ClientID: c.clientID,
		Version: c.version, Reason: ReasonConnectionLost})
	o := paho.NewClientOptions().
		AddBroker(c.cfg.Broker).
		SetClientID(c.clientID).
		SetCleanSession(true).
		SetStore(noStore{}).
		SetOrderMatters(true).
		SetKeepAlive(c.cfg.KeepAlive.D).
		SetPingTimeout(min(c.cfg.KeepAlive.D, 10*time.Second)).
		SetConnectTimeout(c.cfg.ConnectTimeout.D).
		SetWriteTimeout(c.cfg.ConnectTimeout.D).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetBinaryWill(c.topics.status, offline, c.qos, true).
		SetOnConnectHandler(c.onConnect)
	if c.cfg.Username != "" {
		o.SetUsername(c.cfg.Username)
	}
	if c.creds.password != "" {
		o.SetPassword(c.creds.password)
	}
	if c.creds.tls != nil {
		o.SetTLSConfig(c.creds.tls)
	}
	if c.spb != nil {
		c.spb.options(o)
	}
	return o
}

// Name implements inspection.Sink.
func (c *Client) Name() string { return "mqtt" }

// Deliver implements inspection.Sink: it encodes the result and hands it to
// the outbox writer, which appends it to the on-disk outbox (group commit,
// fsync) before the publisher may send it. Deliver waits only when the
// writer is more than 4096 messages behind (a stalled disk), and then at most
// until ctx ends.
func (c *Client) Deliver(ctx context.Context, r *inspection.Result) error {
	payload, err := marshalResult(r)
	if err != nil {
		return err
	}
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	select {
	case c.stage <- item{kind: kindResult, payload: payload}:
		c.accepted.Add(1)
		c.acceptedSeq.Add(1)
		return nil
	case <-c.closing:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("mqtt: result %s: outbox writer is behind: %w", r.ID, ctx.Err())
	}
}

// Event implements inspection.EventSink. Events take the same path as
// results (outbox, then broker, in order with results) but never block: when
// the in-memory queue in front of the outbox is full the event is dropped
// and counted.
func (c *Client) Event(e inspection.Event) {
	if c.spb != nil {
		c.spb.noteEvent(e)
	}
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
// (not until it is published).
func (c *Client) Flush(ctx context.Context) error {
	target := c.acceptedSeq.Load()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for c.committedSeq.Load() < target {
		select {
		case <-ctx.Done():
			return fmt.Errorf("mqtt: flush outbox: %w", ctx.Err())
		case <-c.writerDone:
			if c.committedSeq.Load() < target {
				return ErrClosed
			}
			return nil
		case <-t.C:
		}
	}
	return nil
}

// writer moves staged messages into the outbox, many per transaction.
func (c *Client) writer() {
	defer close(c.writerDone)
	batch := make([]item, 0, writeBatch)
	for {
		it, ok := <-c.stage
		if !ok {
			return
		}
		batch = append(batch[:0], it)
	fill:
		for len(batch) < writeBatch {
			select {
			case it, ok := <-c.stage:
				if !ok {
					break fill
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		c.writeBatch(batch)
	}
}

func (c *Client) writeBatch(batch []item) {
	var (
		dropped int
		err     error
	)
	for attempt := range writeRetries {
		if dropped, err = c.box.append(batch...); err == nil {
			break
		}
		c.log.Error("cannot write to the outbox", "error", err, "attempt", attempt+1)
		time.Sleep(100 * time.Millisecond << attempt)
	}
	results := uint64(0)
	for _, it := range batch {
		if it.kind == kindResult {
			results++
		}
	}
	if err != nil {
		c.writeDropped.Add(uint64(len(batch)))
		c.log.Error("messages lost: the outbox cannot be written", "messages", len(batch), "error", err)
		c.noteDrops(len(batch), "outbox write failed: "+err.Error())
	} else {
		c.persisted.Add(results)
		if dropped > 0 {
			c.noteDrops(dropped, "")
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	c.committedSeq.Add(uint64(len(batch)))
}

// noteDrops logs and reports dropped messages, at most one event per
// dropEventPeriod (the count accumulates in between).
func (c *Client) noteDrops(n int, why string) {
	c.dropsPending += uint64(n)
	now := time.Now()
	if now.Sub(c.lastDropEvent) < dropEventPeriod {
		return
	}
	c.lastDropEvent = now
	msg := fmt.Sprintf("outbox full (outbox_max_messages %d): dropped the %d oldest messages", c.cfg.OutboxMaxMessages, c.dropsPending)
	if why != "" {
		msg = fmt.Sprintf("dropped %d messages: %s", c.dropsPending, why)
	}
	c.log.Warn(msg, "dropped", c.dropsPending, "dropped_total", c.Stats().Dropped)
	payload, _ := json.Marshal(inspection.Event{Time: now, Station: c.station, Severity: inspection.Warning,
		Kind: inspection.EventOutboxDrop, Message: msg,
		Fields: map[string]string{"dropped": fmt.Sprint(c.dropsPending), "dropped_total": fmt.Sprint(c.Stats().Dropped), "max": fmt.Sprint(c.cfg.OutboxMaxMessages)}})
	c.dropsPending = 0
	// Written directly: the writer must not wait on its own queue.
	if _, err := c.box.append(item{kind: kindEvent, payload: payload}); err != nil {
		c.log.Error("cannot write the outbox_drop event", "error", err)
	}
}

// Start connects to the broker and starts publishing. The first attempt is
// bounded by connect_timeout. Configuration mistakes a technician must fix
// (credentials refused, TLS verification or handshake failure, a plain
// connection to a TLS port) fail Start with an error saying what to check.
// An unreachable broker does not: Start logs a warning and returns nil, the
// client keeps trying in the background with backoff, and results wait in
// the outbox.
func (c *Client) Start(ctx context.Context) error {
	var err error
	started := false
	c.startOnce.Do(func() {
		started = true
		tok := c.client().Connect()
		wait := c.cfg.ConnectTimeout.D + time.Second
		var cerr error
		select {
		case <-tok.Done():
			cerr = tok.Error()
		case <-time.After(wait):
			cerr = fmt.Errorf("no CONNACK within %s", wait)
		case <-ctx.Done():
			err = fmt.Errorf("mqtt: connect to %s: %w", c.cfg.Broker, ctx.Err())
			return
		}
		if cerr != nil {
			fatal, why := connectError(c.cfg.Broker, c.cfg.Username, cerr)
			if fatal {
				err = fmt.Errorf("mqtt: %w", why)
				return
			}
			c.log.Warn("broker unreachable at start-up; results are kept in the outbox and sent once it answers; retrying in the background",
				"error", why, "outbox_depth", c.box.depth())
		}
		c.wg.Add(3)
		go c.supervise(cerr == nil)
		go c.publisher()
		go c.statsLoop()
		c.cmds.start(c)
		if c.spb != nil {
			c.spb.start()
		}
	})
	if !started && err == nil {
		return errors.New("mqtt: Start called twice")
	}
	return err
}

// supervise keeps the client connected: once the connection it starts
// with (up when connected) is lost, or when there is none, it connects a
// fresh paho client, waiting 1 s before the first attempt and doubling the
// wait up to maxBackoff while the broker does not answer. It returns when
// the client stops.
func (c *Client) supervise(connected bool) {
	defer c.wg.Done()
	backoff := time.Second
	for {
		if connected {
			c.cliMu.RLock()
			lost := c.lost
			c.cliMu.RUnlock()
			select {
			case <-lost:
			case <-c.bg.Done():
				return
			}
			backoff = time.Second
		}
		select {
		case <-c.bg.Done():
			return
		case <-time.After(backoff):
		}
		if c.spb != nil {
			c.spb.nextSession()
		}
		cli, lost := c.newPaho()
		c.cliMu.Lock()
		c.cli, c.lost = cli, lost
		c.cliMu.Unlock()
		c.log.Debug("connecting to broker", "broker", c.cfg.Broker)
		tok := cli.Connect()
		var err error
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-time.After(c.cfg.ConnectTimeout.D + time.Second):
			err = errors.New("no CONNACK")
		case <-c.bg.Done():
			return
		}
		if connected = err == nil; connected {
			continue
		}
		_, why := connectError(c.cfg.Broker, c.cfg.Username, err)
		c.log.Warn("still cannot connect to the broker", "error", why, "retry_in", backoff, "outbox_depth", c.box.depth())
		backoff = min(backoff*2, maxBackoff)
	}
}

// onConnect runs on every (re)connection (paho calls it on its own
// goroutine): restore the command subscription, let the publisher go, and
// announce online once the broker has acknowledged the subscription, so that
// a SCADA client that sees "online" can send commands right away.
func (c *Client) onConnect(cl paho.Client) {
	if !c.currentOrClose(cl) {
		return
	}
	n := c.connected.Add(1)
	if n > 1 {
		c.log.Info("reconnected to broker", "broker", c.cfg.Broker, "reconnects", n-1, "outbox_depth", c.box.depth())
	} else {
		c.log.Info("connected to broker", "broker", c.cfg.Broker, "client_id", c.clientID)
	}
	sub := cl.Subscribe(c.topics.cmd+"+", 1, c.onCommand)
	c.conn.set(true)
	if !sub.WaitTimeout(c.cfg.ConnectTimeout.D) || sub.Error() != nil {
		c.log.Error("could not subscribe to commands", "topic", c.topics.cmd+"+", "error", sub.Error())
	}
	online, _ := json.Marshal(StatusMessage{State: StateOnline, Station: c.station, ClientID: c.clientID,
		Version: c.version, Time: time.Now().UTC()})
	tok := cl.Publish(c.topics.status, c.qos, true, online)
	if !tok.WaitTimeout(c.cfg.ConnectTimeout.D) || tok.Error() != nil {
		c.log.Warn("could not publish the online status", "error", tok.Error())
	}
}

func (c *Client) onConnectionLost(cl paho.Client, err error) {
	if !c.current(cl) {
		return
	}
	c.conn.set(false)
	if c.spb != nil {
		c.spb.lost()
	}
	c.log.Warn("lost the broker connection; results are kept in the outbox", "error", err, "outbox_depth", c.box.depth())
}

// publishTimeout bounds the wait for one acknowledgement before the
// message is sent again. A lost connection is noticed sooner (connState),
// so this only matters when an acknowledgement is truly lost.
func (c *Client) publishTimeout() time.Duration {
	return 2*c.cfg.KeepAlive.D + c.cfg.ConnectTimeout.D
}

// publisher sends outbox records in order, one at a time (window 1: strict
// order, measured fast enough), and deletes them once acknowledged.
func (c *Client) publisher() {
	defer c.wg.Done()
	var (
		after uint64
		acked []uint64
	)
	flush := func() {
		if err := c.box.remove(acked); err != nil {
			c.log.Error("cannot remove acknowledged messages from the outbox (they will be sent again)", "error", err)
		}
		acked = acked[:0]
	}
	defer func() { flush() }()
	for {
		if !c.conn.wait(c.bg) {
			return
		}
		drops := c.box.dropped.Load()
		recs, bad, err := c.box.next(after, publishBatch)
		for _, q := range bad {
			c.log.Error("corrupt outbox record quarantined; it is not sent", "key", q.key, "reason", q.reason, "outbox", c.box.path)
		}
		if err != nil {
			c.log.Error("cannot read the outbox", "error", err)
			if !c.sleep(time.Second) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			flush()
			select {
			case <-c.wake:
			case <-c.bg.Done():
				return
			}
			continue
		}
		for _, r := range recs {
			if c.box.dropped.Load() != drops {
				// The outbox dropped its oldest records since this batch
				// was read: read again rather than send dropped ones.
				break
			}
			if !c.publishRecord(r) {
				return
			}
			acked = append(acked, r.key)
			after = r.key
		}
		flush()
	}
}

// publishRecord publishes one record until the broker acknowledges it; it
// returns false when the client stops first.
func (c *Client) publishRecord(r record) bool {
	topic := c.topics.result
	if r.kind == kindEvent {
		topic = c.topics.event
	}
	for attempt := 0; ; attempt++ {
		if !c.conn.wait(c.bg) {
			return false
		}
		if attempt > 0 {
			c.retries.Add(1)
		}
		// A message of a lost connection is sent again once the next one
		// is up (in Sparkplug after its NBIRTH, with a new seq): paho keeps
		// nothing to resend (noStore).
		lost := c.conn.lost()
		var tok paho.Token
		if c.spb != nil {
			var err error
			if tok, err = c.spb.publish(r); err != nil {
				if errors.Is(err, errBadRecord) {
					c.log.Error("outbox record cannot be sent as Sparkplug; skipped", "key", r.key, "error", err)
					return true
				}
				if !c.sleep(50 * time.Millisecond) {
					return false
				}
				continue
			}
		} else {
			tok = c.client().Publish(topic, c.qos, false, r.payload)
		}
		timer := time.NewTimer(c.publishTimeout())
		select {
		case <-tok.Done():
			timer.Stop()
			if err := tok.Error(); err != nil {
				c.log.Debug("publish failed; retrying", "topic", topic, "error", err)
				if !c.sleep(200 * time.Millisecond) {
					return false
				}
				continue
			}
			c.published.Add(1)
			if r.kind == kindResult {
				c.publishedResults.Add(1)
			}
			return true
		case <-timer.C:
			c.log.Warn("no acknowledgement from the broker; sending again", "topic", topic, "timeout", c.publishTimeout())
		case <-lost:
			timer.Stop()
			c.log.Debug("connection lost before the acknowledgement; sending again after reconnecting", "key", r.key)
		case <-c.bg.Done():
			timer.Stop()
			return false
		}
	}
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.bg.Done():
		return false
	}
}

// statsLoop publishes a stats message every stats_interval.
func (c *Client) statsLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.StatsInterval.D)
	defer t.Stop()
	for {
		select {
		case <-c.bg.Done():
			return
		case <-t.C:
		}
		if !c.conn.isUp() {
			continue
		}
		if c.spb != nil {
			c.spb.publishStats()
			continue
		}
		payload, err := json.Marshal(c.statsMessage(time.Now()))
		if err != nil {
			continue
		}
		tok := c.client().Publish(c.topics.stats, c.qos, false, payload)
		if tok.WaitTimeout(c.cfg.ConnectTimeout.D) && tok.Error() == nil {
			c.statsPublished.Add(1)
		}
	}
}

func (c *Client) statsMessage(now time.Time) StatsMessage {
	s := c.Stats()
	m := StatsMessage{
		Time: now.UTC(), Station: c.station, IntervalS: c.cfg.StatsInterval.D.Seconds(),
		Outbox: OutboxStats{Depth: s.OutboxDepth, Max: s.OutboxMax, Dropped: s.Dropped, Quarantined: s.Quarantined},
		Drops:  Drops{Outbox: s.Dropped, Events: s.EventsDropped},
		MQTT:   LinkStats{Connected: s.Connected, Published: s.Published, Reconnects: s.Reconnects, PublishRetries: s.PublishRetries},
	}
	if c.control != nil {
		st := c.control.Status()
		m.UptimeS, m.Paused, m.Healthy = &st.UptimeS, &st.Paused, &st.Healthy
		m.Counts, m.RatePerS, m.Latency, m.Camera = &st.Counts, &st.RatePerS, &st.Latency, &st.Camera
		m.Model = &ThresholdInfo{Image: st.Model.Threshold, Pixel: st.Model.PixelThreshold, Source: st.Model.ThresholdFrom}
		m.Sinks = st.Sinks
		for _, sk := range st.Sinks {
			m.Drops.Sinks += sk.Dropped
		}
	}
	return m
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	n := c.connected.Load()
	return Stats{
		Connected: c.conn.isUp(),
		Accepted:  c.accepted.Load(), Persisted: c.persisted.Load(),
		Published: c.published.Load(), PublishedResults: c.publishedResults.Load(),
		PublishRetries: c.retries.Load(),
		Dropped:        c.box.dropped.Load() + c.writeDropped.Load(),
		EventsDropped:  c.eventsDropped.Load(),
		Quarantined:    c.box.quarantined.Load(),
		OutboxDepth:    c.box.depth(), OutboxMax: c.cfg.OutboxMaxMessages,
		Reconnects: uint64(max(n-1, 0)),
		Commands:   c.commands.Load(), CommandErrors: c.commandErrors.Load(),
		StatsPublished: c.statsPublished.Load(),
	}
}

// Close stops taking results, writes what is queued to the outbox, keeps
// publishing until the outbox is empty, the broker is gone or ctx ends,
// announces offline (retained) and disconnects, then closes the outbox.
// What was not published stays in the outbox for the next start.
func (c *Client) Close(ctx context.Context) error {
	c.sendMu.Lock()
	if c.closed {
		c.sendMu.Unlock()
		return nil
	}
	close(c.closing)
	c.closed = true
	close(c.stage)
	c.sendMu.Unlock()

	select {
	case <-c.writerDone:
	case <-ctx.Done():
		// The writer still owns the outbox; wait for it regardless, it
		// finishes its last transaction quickly.
		<-c.writerDone
	}
	started := c.connected.Load() > 0 || c.isStarted()
	if started {
		for c.box.depth() > 0 && c.conn.isUp() && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	c.stopBg()
	c.wg.Wait()
	c.cmds.wait()
	if c.spb != nil {
		if c.client().IsConnectionOpen() {
			c.spb.goodbye(ctx)
		}
	} else if c.client().IsConnectionOpen() {
		off, _ := json.Marshal(StatusMessage{State: StateOffline, Station: c.station, ClientID: c.clientID,
			Version: c.version, Reason: ReasonShutdown, Time: time.Now().UTC()})
		tok := c.client().Publish(c.topics.status, c.qos, true, off)
		wait := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = max(min(wait, time.Until(dl)), 100*time.Millisecond)
		}
		if !tok.WaitTimeout(wait) || tok.Error() != nil {
			c.log.Warn("could not publish the offline status; the broker sends the Last Will instead", "error", tok.Error())
		}
	}
	c.client().Disconnect(250)
	c.conn.set(false)
	if d := c.box.depth(); d > 0 {
		c.log.Info("messages left in the outbox for the next start", "depth", d)
	}
	return c.box.close()
}

func (c *Client) isStarted() bool {
	started := true
	c.startOnce.Do(func() { started = false })
	return started
}

// connState tracks whether the broker connection is up; wait blocks until
// it is.
type connState struct {
	mu   sync.Mutex
	up   bool
	ch   chan struct{} // closed while up
	down chan struct{} // closed while down
}

func (s *connState) init() {
	s.ch = make(chan struct{})
	s.down = make(chan struct{})
	close(s.down)
}

func (s *connState) set(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case up && !s.up:
		close(s.ch)
		s.down = make(chan struct{})
	case !up && s.up:
		s.ch = make(chan struct{})
		close(s.down)
	}
	s.up = up
}

// lost returns a channel that is closed once the connection is down (at
// once if it is down now).
func (s *connState) lost() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

func (s *connState) isUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

func (s *connState) wait(ctx context.Context) bool {
	s.mu.Lock()
	ch := s.ch
	s.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// noStore is a paho.Store that keeps nothing. paho resumes its store on
// every reconnect even with CleanSession(true), and it resumes what the new
// connection's own publishes put there too: it resends them and marks them
// duplicate while they are being written (a data race inside paho, seen
// under -race). The outbox already sends unacknowledged messages again, so
// paho has nothing to resume.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

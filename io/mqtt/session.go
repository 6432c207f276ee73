package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// session is what differs between the payload conventions of mqtt.mode:
// the JSON topics (jsonSession) and the Sparkplug B edge node (spbNode).
// The Client owns the rest: the outbox and its writer, the connection and
// its supervisor, the publisher (order, acknowledgements, retries), the
// lifecycle and the counters.
type session interface {
	// open runs in Start, after the outbox is open and before the first
	// connection attempt (Sparkplug: reads and advances the persisted
	// bdSeq).
	open() error
	// configure adds the session's Will and on-connect handler to the
	// options of one connection attempt. The handler must call
	// Client.noteConnected first, subscribe to the session's commands,
	// announce the session (online status, NBIRTH) and then mark the
	// connection up (c.conn.set(true)) so that the publisher goes.
	configure(o *paho.ClientOptions)
	// nextAttempt runs before every connection attempt after the first.
	nextAttempt()
	// connectionLost runs when the current connection is lost.
	connectionLost()
	// start starts the session's goroutines with c.routines; they stop
	// with c.bg.
	start()
	// publish hands one outbox record to paho. An error wrapping
	// errBadRecord skips the record; any other error means "not now"
	// and the record is offered again shortly.
	publish(r record) (paho.Token, error)
	// publishStats sends the periodic statistics (connection up).
	publishStats()
	// noteEvent sees every event handed to Client.Event; it must not
	// block.
	noteEvent(e inspection.Event)
	// goodbye announces an intentional disconnect while the connection
	// is still open, within ctx.
	goodbye(ctx context.Context)
}

// newSession returns the session of o.Config.Mode for c.
func newSession(c *Client, o Options, log *slog.Logger) (session, error) {
	if o.Config.Mode != config.MQTTModeSparkplug {
		return newJSONSession(c), nil
	}
	if o.StateDir == "" {
		return nil, errors.New(`mode "sparkplug" needs the state directory (Options.StateDir) for its bdSeq file`)
	}
	spb, err := newSpbNode(c, o, log.With("component", "sparkplug"))
	if err != nil {
		return nil, err
	}
	return spb, nil
}

// jsonSession is mode "json": results, events, stats, retained status and
// command replies as JSON on <prefix>/<station>/… (docs/mqtt.md), and the
// JSON commands on <prefix>/<station>/cmd/<name>.
type jsonSession struct {
	c    *Client
	cmds commandState
}

func newJSONSession(c *Client) *jsonSession {
	s := &jsonSession{c: c}
	s.cmds.init()
	return s
}

func (s *jsonSession) open() error { return nil }

// configure sets the Last Will (retained offline status, reason
// connection_lost) and the on-connect handler.
func (s *jsonSession) configure(o *paho.ClientOptions) {
	c := s.c
	offline, _ := json.Marshal(StatusMessage{State: StateOffline, Station: c.station, ClientID: c.clientID,
		Version: c.version, Reason: ReasonConnectionLost})
	o.SetBinaryWill(c.topics.status, offline, c.qos, true).SetOnConnectHandler(s.onConnect)
}

func (s *jsonSession) nextAttempt()                 {}
func (s *jsonSession) connectionLost()              {}
func (s *jsonSession) noteEvent(e inspection.Event) {}

// onConnect runs on every (re)connection (paho calls it on its own
// goroutine): restore the command subscription, let the publisher go, and
// announce online once the broker has acknowledged the subscription, so that
// a SCADA client that sees "online" can send commands right away.
func (s *jsonSession) onConnect(cl paho.Client) {
	c := s.c
	if !c.noteConnected(cl) {
		return
	}
	s.cmds.probeOff.Store(false)
	sub := cl.Subscribe(c.topics.cmd+"+", 1, s.onCommand)
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

// start runs the command worker.
func (s *jsonSession) start() { s.c.routines.Go(s.commandWorker) }

// publish sends a record as is to the result or event topic.
func (s *jsonSession) publish(r record) (paho.Token, error) {
	c := s.c
	topic := c.topics.result
	if r.kind == kindEvent {
		topic = c.topics.event
	}
	return c.client().Publish(topic, c.qos, false, r.payload), nil
}

// publishStats sends a StatsMessage and counts it once acknowledged.
func (s *jsonSession) publishStats() {
	c := s.c
	payload, err := json.Marshal(s.statsMessage(time.Now()))
	if err != nil {
		return
	}
	tok := c.client().Publish(c.topics.stats, c.qos, false, payload)
	if c.await(tok, c.cfg.ConnectTimeout.D) {
		c.statsPublished.Add(1)
	}
}

func (s *jsonSession) statsMessage(now time.Time) StatsMessage {
	c := s.c
	st := c.Stats()
	m := StatsMessage{
		Time: now.UTC(), Station: c.station, IntervalS: c.cfg.StatsInterval.D.Seconds(),
		Outbox: OutboxStats{Depth: st.OutboxDepth, Max: st.OutboxMax, Dropped: st.Dropped, Quarantined: st.Quarantined},
		Drops:  Drops{Outbox: st.Dropped, Events: st.EventsDropped},
		MQTT:   LinkStats{Connected: st.Connected, Published: st.Published, Reconnects: st.Reconnects, PublishRetries: st.PublishRetries},
	}
	if c.host != nil {
		hs := c.host.Status()
		m.UptimeS, m.Paused, m.Healthy = &hs.UptimeS, &hs.Paused, &hs.Healthy
		m.Counts, m.RatePerS, m.Latency, m.Camera = &hs.Counts, &hs.RatePerS, &hs.Latency, &hs.Camera
		m.Model = &ThresholdInfo{Image: hs.Model.Threshold, Pixel: hs.Model.PixelThreshold, Source: hs.Model.ThresholdFrom}
		m.Sinks = hs.Sinks
		for _, sk := range hs.Sinks {
			m.Drops.Sinks += sk.Dropped
		}
	}
	return m
}

// goodbye publishes the retained offline status with reason shutdown.
func (s *jsonSession) goodbye(ctx context.Context) {
	c := s.c
	off, _ := json.Marshal(StatusMessage{State: StateOffline, Station: c.station, ClientID: c.clientID,
		Version: c.version, Reason: ReasonShutdown, Time: time.Now().UTC()})
	tok := c.client().Publish(c.topics.status, c.qos, true, off)
	if !tok.WaitTimeout(goodbyeWait(ctx)) || tok.Error() != nil {
		c.log.Warn("could not publish the offline status; the broker sends the Last Will instead", "error", tok.Error())
	}
}

// goodbyeWait bounds the wait for the last message before disconnecting:
// 2 s, less when ctx ends sooner, but at least 100 ms.
func goodbyeWait(ctx context.Context) time.Duration {
	wait := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(dl)), 100*time.Millisecond)
	}
	return wait
}

// Both conventions implement session.
var (
	_ session = (*jsonSession)(nil)
	_ session = (*spbNode)(nil)
)

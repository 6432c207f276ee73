package mqtt

import (
	"context"
	"errors"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// client returns the paho client of the current connection (attempt).
func (c *Client) client() paho.Client {
	c.cliMu.RLock()
	defer c.cliMu.RUnlock()
	return c.cli
}

func (c *Client) setClient(cli paho.Client, lost <-chan struct{}) {
	c.cliMu.Lock()
	c.cli, c.lost = cli, lost
	c.cliMu.Unlock()
}

// current says whether cl is the client of the current connection attempt:
// handlers of an abandoned client do nothing.
func (c *Client) current(cl paho.Client) bool { return c.client() == cl }

// noteConnected runs first in every session's on-connect handler (on
// paho's goroutine). It disconnects cl when it is not the client of the
// current connection attempt (an attempt given up on that connected late)
// and returns false; otherwise it counts and logs the connection.
func (c *Client) noteConnected(cl paho.Client) bool {
	if !c.current(cl) {
		c.log.Debug("a connection attempt that was given up on connected late; closing it")
		cl.Disconnect(0)
		return false
	}
	c.health.connectedAt.Store(time.Now().UnixNano())
	if n := c.connected.Add(1); n > 1 {
		c.log.Info("reconnected to broker", "broker", c.cfg.Broker, "reconnects", n-1, "outbox_depth", c.box.depth())
	} else {
		c.log.Info("connected to broker", "broker", c.cfg.Broker, "client_id", c.clientID)
	}
	return true
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

// pahoOptions builds the paho client options; the session adds its Will
// and on-connect handler. CleanSession(true) and a store that keeps
// nothing (noStore): the outbox, not the broker session or paho, holds
// what is not yet acknowledged and sends it again after a reconnect, so
// nothing is resent twice by two layers, and commands sent while the
// station was offline are not executed late. paho does not reconnect by
// itself: supervise connects a fresh client after a loss, because paho's
// own reconnect keeps the message IDs of the lost connection's
// unacknowledged publishes reserved for ever (it expects to resume them)
// and would run out of IDs after tens of thousands of reconnects; without
// it paho releases them when the connection drops.
func (c *Client) pahoOptions() *paho.ClientOptions {
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
		SetConnectRetry(false)
	if c.cfg.Username != "" {
		o.SetUsername(c.cfg.Username)
	}
	if c.creds.password != "" {
		o.SetPassword(c.creds.password)
	}
	if c.creds.tls != nil {
		o.SetTLSConfig(c.creds.tls)
	}
	c.sess.configure(o)
	return o
}

func (c *Client) onConnectionLost(cl paho.Client, err error) {
	if !c.current(cl) {
		return
	}
	c.conn.set(false)
	c.sess.connectionLost()
	c.noteConnectionLost(err)
}

// supervise keeps the client connected: once the connection it starts
// with (up when connected) is lost, or when there is none, it connects a
// fresh paho client, waiting 1 s before the first attempt and doubling the
// wait up to maxBackoff while the broker does not answer. It returns when
// the client stops.
func (c *Client) supervise(connected bool) {
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
		if !c.sleep(backoff) {
			return
		}
		c.sess.nextAttempt()
		cli, lost := c.newPaho()
		c.setClient(cli, lost)
		c.log.Debug("connecting to broker", "broker", c.cfg.Broker)
		tok := cli.Connect()
		t := time.NewTimer(c.cfg.ConnectTimeout.D + time.Second)
		var err error
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-t.C:
			err = errors.New("no CONNACK")
		case <-c.bg.Done():
			t.Stop()
			return
		}
		t.Stop()
		if connected = err == nil; connected {
			continue
		}
		c.health.shortEOF.Store(0) // refused: not a takeover
		_, why := connectError(c.cfg.Broker, c.cfg.Username, err)
		c.log.Warn("still cannot connect to the broker", "error", why, "retry_in", backoff, "outbox_depth", c.box.depth())
		backoff = min(backoff*2, maxBackoff)
	}
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

// publishRecord publishes one record through the session until the broker
// acknowledges it; it returns false when the client stops first.
func (c *Client) publishRecord(r record) bool {
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
		tok, err := c.sess.publish(r)
		if err != nil {
			if errors.Is(err, errBadRecord) {
				c.log.Error("outbox record cannot be sent; skipped", "key", r.key, "kind", r.kind, "error", err)
				return true
			}
			if !c.sleep(50 * time.Millisecond) {
				return false
			}
			continue
		}
		timer := time.NewTimer(c.publishTimeout())
		select {
		case <-tok.Done():
			timer.Stop()
			if err := tok.Error(); err != nil {
				c.log.Debug("publish failed; retrying", "kind", r.kind, "key", r.key, "error", err)
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
			c.log.Warn("no acknowledgement from the broker; sending again", "kind", r.kind, "key", r.key, "timeout", c.publishTimeout())
		case <-lost:
			timer.Stop()
			c.log.Debug("connection lost before the acknowledgement; sending again after reconnecting", "key", r.key)
		case <-c.bg.Done():
			timer.Stop()
			return false
		}
	}
}

// sleep waits d; it returns false at once when the client stops.
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

// await waits for tok at most d, or until the client stops; it reports
// whether tok completed without an error.
func (c *Client) await(tok paho.Token, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error() == nil
	case <-t.C:
	case <-c.bg.Done():
	}
	return false
}

// watch waits for tok in the background (at most connect_timeout) and
// logs a warning naming what when it fails; it gives up when the client
// stops.
func (c *Client) watch(log func(msg string, args ...any), what string, tok paho.Token) {
	c.routines.Go(func() {
		if !c.await(tok, c.cfg.ConnectTimeout.D) && c.bg.Err() == nil {
			log("could not publish "+what, "error", tok.Error())
		}
	})
}

// statsLoop publishes a stats message every stats_interval while
// connected.
func (c *Client) statsLoop() {
	t := time.NewTicker(c.cfg.StatsInterval.D)
	defer t.Stop()
	for {
		select {
		case <-c.bg.Done():
			return
		case <-t.C:
		}
		if c.conn.isUp() {
			c.sess.publishStats()
		}
	}
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
// paho has nothing to resend.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

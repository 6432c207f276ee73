package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// writer moves staged messages into the outbox, many per transaction,
// until Close (or a failed Start) closes the stage and it is drained.
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

// writeBatch appends one batch to the outbox, retrying a failed write
// twice after a pause (100 ms, then 200 ms) that Close cuts short once its
// context has ended. While the outbox is known not to be writable one
// attempt is made per batch (so that recovery is noticed at once). A batch
// that cannot be written is published directly (sendUnpersisted): at most
// once, and counted as lost when that fails too; never dropped silently.
func (c *Client) writeBatch(batch []item) {
	if c.hooks.beforeWrite != nil {
		c.hooks.beforeWrite()
	}
	var (
		dropped int
		err     error
	)
	delay := writeRetryDelay
	if c.hooks.retryDelay > 0 {
		delay = c.hooks.retryDelay
	}
	attempts := writeRetries
	if c.health.unwritable.Load() != nil {
		attempts = 1
	}
	for attempt := range attempts {
		dropped, err = c.appendTimed(batch...)
		if err == nil {
			break
		}
		c.log.Error("cannot write to the outbox", "error", err, "attempt", attempt+1)
		if attempt == attempts-1 || !c.pause(delay<<attempt) {
			break
		}
	}
	if err != nil {
		c.noteUnwritable(err)
		c.sendUnpersisted(batch, err)
	} else {
		c.noteWritable()
		results := uint64(0)
		for _, it := range batch {
			if it.kind == kindResult {
				results++
			}
			if it.done != nil {
				it.done <- nil
			}
		}
		c.persisted.Add(results)
		if dropped > 0 {
			c.noteDrops(dropped, "")
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	c.committed.add(uint64(len(batch)))
}

// appendTimed is box.append with the write's start time published for
// Problems (a write that blocks on a frozen disk is reported).
func (c *Client) appendTimed(items ...item) (int, error) {
	c.health.writeSince.Store(time.Now().UnixNano())
	defer c.health.writeSince.Store(0)
	return c.box.append(items...)
}

// noteUnwritable records that the outbox cannot be written. The first
// failure is logged as an error and reported with a critical event (again
// after recovering, at most once per dropEventPeriod: a nearly full disk
// may flap).
func (c *Client) noteUnwritable(err error) {
	msg := err.Error()
	now := time.Now()
	c.health.lastErr.Store(&msg)
	c.health.failedAt.Store(now.UnixNano())
	if !c.health.unwritable.CompareAndSwap(nil, &writeFailure{since: now, err: err}) {
		return
	}
	text := fmt.Sprintf("outbox %s cannot be written (%v): results are published directly without the outbox (at most once) and lost while the broker is unreachable", c.box.path, err)
	if now.Sub(c.health.reportedAt) < dropEventPeriod {
		c.log.Warn(text, "outbox", c.box.path, "error", err)
		return
	}
	c.health.reportedAt = now
	c.log.Error(text, "outbox", c.box.path, "error", err)
	c.store(item{kind: kindEvent, payload: c.eventPayload(inspection.Event{Severity: inspection.Critical,
		Kind: inspection.EventOutboxDrop, Message: text, Fields: map[string]string{"outbox": c.box.path, "error": err.Error()}})})
}

// noteWritable records a successful write; after a failure it logs and
// reports the recovery.
func (c *Client) noteWritable() {
	f := c.health.unwritable.Swap(nil)
	if f == nil {
		return
	}
	text := fmt.Sprintf("outbox %s can be written again after %s; results go through it again", c.box.path, time.Since(f.since).Round(time.Second))
	c.log.Info(text, "outbox", c.box.path)
	c.store(item{kind: kindEvent, payload: c.eventPayload(inspection.Event{Severity: inspection.Info,
		Kind: inspection.EventOutboxDrop, Message: text, Fields: map[string]string{"outbox": c.box.path}})})
}

// sendUnpersisted publishes the messages of a batch the outbox refused
// (why), directly and in order, waiting for each acknowledgement at most
// connect_timeout. Each item's waiter learns its fate; what could not be
// published is counted as lost, logged and reported.
func (c *Client) sendUnpersisted(batch []item, why error) {
	lostResults, lostAll := 0, 0
	var lastErr error
	for _, it := range batch {
		err := c.publishDirect(it)
		if err == nil {
			c.direct.Add(1)
			c.published.Add(1)
			if it.kind == kindResult {
				c.publishedResults.Add(1)
			}
		} else {
			lastErr = err
			lostAll++
			c.lostMsgs.Add(1)
			if it.kind == kindResult {
				lostResults++
				c.resultsLost.Add(1)
			}
			err = fmt.Errorf("outbox not writable (%v) and not published: %w", why, err)
		}
		if it.done != nil {
			it.done <- err
		}
	}
	if lostAll == 0 {
		c.log.Warn("outbox not writable: messages published directly (at most once)", "messages", len(batch), "error", why)
		return
	}
	c.health.noteLost(time.Now())
	c.log.Error("messages lost: the outbox cannot be written and they could not be published",
		"results", lostResults, "messages", lostAll, "outbox_error", why, "publish_error", lastErr)
	c.noteDrops(lostAll, fmt.Sprintf("neither written to the outbox (%v) nor published (%v)", why, lastErr))
}

// errNotConnected: a direct publish needs the broker connection.
var errNotConnected = errors.New("the broker is not connected")

// publishDirect publishes one message through the session without the
// outbox and waits for the broker's acknowledgement (at most
// connect_timeout; at once when Close has given up waiting).
func (c *Client) publishDirect(it item) error {
	if !c.conn.isUp() {
		return errNotConnected
	}
	tok, err := c.sess.publish(record{kind: it.kind, payload: it.payload})
	if err != nil {
		return err
	}
	t := time.NewTimer(c.cfg.ConnectTimeout.D)
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return err
		}
		return nil
	case <-t.C:
		return fmt.Errorf("no acknowledgement within %s", c.cfg.ConnectTimeout.D)
	case <-c.abort:
		return errors.New("the client is closing")
	}
}

// store writes one message of the writer's own (an event) to the outbox,
// or publishes it directly when the outbox cannot be written (at once when
// it is known not to be). A message neither written nor published is
// counted as lost and logged.
func (c *Client) store(it item) {
	if c.health.unwritable.Load() == nil {
		if _, err := c.appendTimed(it); err == nil {
			select {
			case c.wake <- struct{}{}:
			default:
			}
			return
		}
	}
	if err := c.publishDirect(it); err != nil {
		c.lostMsgs.Add(1)
		c.log.Error("event lost: the outbox cannot be written and it could not be published", "error", err, "event", string(it.payload))
		return
	}
	c.direct.Add(1)
	c.published.Add(1)
}

// pause waits d on the writer goroutine; it returns false at once when
// Close has given up waiting for the writer (its context ended).
func (c *Client) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.abort:
		return false
	}
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
	sev := inspection.Warning
	if why != "" {
		msg = fmt.Sprintf("lost %d messages: %s", c.dropsPending, why)
		sev = inspection.Critical
	}
	c.log.Warn(msg, "dropped", c.dropsPending, "dropped_total", c.Stats().Dropped)
	payload := c.eventPayload(inspection.Event{Time: now, Severity: sev, Kind: inspection.EventOutboxDrop, Message: msg,
		Fields: map[string]string{"dropped": fmt.Sprint(c.dropsPending), "dropped_total": fmt.Sprint(c.Stats().Dropped), "max": fmt.Sprint(c.cfg.OutboxMaxMessages)}})
	c.dropsPending = 0
	// Written directly: the writer must not wait on its own queue.
	c.store(item{kind: kindEvent, payload: payload})
}

// eventPayload encodes an event of the client's own.
func (c *Client) eventPayload(e inspection.Event) []byte {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Station = c.station
	payload, _ := json.Marshal(e)
	return payload
}

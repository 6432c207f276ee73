package mqtt

import (
	"encoding/json"
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
// context has ended; a batch that cannot be written is dropped and
// counted.
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
	for attempt := range writeRetries {
		if dropped, err = c.box.append(batch...); err == nil {
			break
		}
		c.log.Error("cannot write to the outbox", "error", err, "attempt", attempt+1)
		if attempt == writeRetries-1 || !c.pause(delay<<attempt) {
			break
		}
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
	c.committed.add(uint64(len(batch)))
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

package mqtt

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// stalledWriteAfter is how long one outbox write may take before Problems
// reports the disk as stalled (a frozen or failing disk blocks the write
// instead of failing it).
const stalledWriteAfter = 10 * time.Second

// syncAfterFailure: for this long after an outbox write failed, Deliver
// waits for the writer's verdict on each result even when a later write
// succeeded (a nearly full disk takes small writes and refuses big ones),
// so that a result the writer cannot keep is an error, not a count.
const syncAfterFailure = time.Minute

// takeoverWindow: a connection the broker closes (EOF) sooner than this
// after it came up counts towards a suspected client-id takeover.
const takeoverWindow = 30 * time.Second

// takeoverStreak is the number of such connections in a row that makes
// the client report a takeover.
const takeoverStreak = 2

// health holds what Client.Problems reports. Every field is read without
// waiting for I/O: atomics, and a mutex held only to copy a few values.
type health struct {
	// unwritable is set while writes to the outbox fail (nil: they
	// succeed); lastErr keeps the last write error after recovery.
	unwritable atomic.Pointer[writeFailure]
	lastErr    atomic.Pointer[string]
	// failedAt is when an outbox write last failed (unix ns, 0: never).
	failedAt atomic.Int64
	// reportedAt is when the last unwritable event was reported (writer
	// goroutine only).
	reportedAt time.Time
	// writeSince is when the writer's current outbox write began (unix
	// ns), 0 while it is not writing.
	writeSince atomic.Int64

	// connectedAt is when the current connection came up (unix ns);
	// shortEOF counts the connections in a row that the broker closed
	// (EOF) within takeoverWindow of connecting.
	connectedAt atomic.Int64
	shortEOF    atomic.Int32

	// Latched notices, until ClearFault.
	mu       sync.Mutex
	damaged  string    // the damaged-outbox sentence, "" when none
	lostBase uint64    // Client.resultsLost when last cleared
	lostAt   time.Time // first loss since then
}

// writeFailure describes an outbox that cannot be written.
type writeFailure struct {
	since time.Time
	err   error
}

func (h *health) setDamaged(path string, d outboxDamage, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.damaged = fmt.Sprintf("MQTT outbox %s was damaged (%v) and was moved aside to %s at %s: an empty outbox was started and the messages it held were not sent (clear this with the clear_fault command)",
		path, d.Reason, d.Aside, at.UTC().Format(time.RFC3339))
}

// noteLost records the time of a loss for the latched notice.
func (h *health) noteLost(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lostAt.IsZero() {
		h.lostAt = at
	}
}

// degraded reports whether Deliver must wait for the writer's verdict:
// the outbox cannot be written, or could not within syncAfterFailure.
func (h *health) degraded() bool {
	if h.unwritable.Load() != nil {
		return true
	}
	at := h.failedAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < syncAfterFailure
}

func (h *health) lastWriteError() string {
	if p := h.lastErr.Load(); p != nil {
		return *p
	}
	return "no write error recorded"
}

// Problems implements inspection.HealthReporter: one sentence per
// condition that stops the MQTT output doing its job. Latched until
// ClearFault: a damaged outbox file moved aside at start, results lost
// (neither persisted nor published). While they last: the outbox cannot be
// written (results go out directly, at most once), an outbox write blocked
// on the disk, and a suspected client-id takeover. It reads atomics only
// and never waits for the disk or the broker.
func (c *Client) Problems() []string {
	var out []string
	h := &c.health
	now := time.Now()
	h.mu.Lock()
	damaged, lostBase, lostAt := h.damaged, h.lostBase, h.lostAt
	h.mu.Unlock()
	if damaged != "" {
		out = append(out, damaged)
	}
	if f := h.unwritable.Load(); f != nil {
		out = append(out, fmt.Sprintf("MQTT outbox %s cannot be written since %s (%v): results are published directly without the outbox, at most once, and lost while the broker is unreachable",
			c.box.path, f.since.UTC().Format(time.RFC3339), f.err))
	}
	stall := stalledWriteAfter
	if c.hooks.stalledAfter > 0 {
		stall = c.hooks.stalledAfter
	}
	if since := h.writeSince.Load(); since != 0 {
		if d := now.Sub(time.Unix(0, since)); d >= stall {
			out = append(out, fmt.Sprintf("MQTT outbox %s: a write has waited %s for the disk (frozen or failing?); results queue in memory",
				c.box.path, d.Round(time.Second)))
		}
	}
	if n := c.resultsLost.Load() - lostBase; n > 0 {
		out = append(out, fmt.Sprintf("MQTT lost %d results since %s: neither written to the outbox (%s) nor published (clear this with the clear_fault command)",
			n, lostAt.UTC().Format(time.RFC3339), h.lastWriteError()))
	}
	if n := h.shortEOF.Load(); n >= takeoverStreak {
		at := h.connectedAt.Load()
		if !c.conn.isUp() || now.Sub(time.Unix(0, at)) < takeoverWindow {
			out = append(out, c.takeoverMessage(int(n)))
		}
	}
	return out
}

// ClearFault implements inspection.FaultClearer: it clears the latched
// notices (a damaged outbox moved aside, results lost so far). Conditions
// that still hold (an outbox that cannot be written) stay reported.
func (c *Client) ClearFault() {
	h := &c.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.damaged != "" || c.resultsLost.Load() != h.lostBase {
		c.log.Info("operator cleared the MQTT output's latched problems")
	}
	h.damaged = ""
	h.lostBase = c.resultsLost.Load()
	h.lostAt = time.Time{}
}

func (c *Client) takeoverMessage(n int) string {
	return fmt.Sprintf("the broker closed the MQTT connection %d times in a row within %s of connecting: another client with client id %q may be connected (the broker closes the older connection of a client id); give each station its own mqtt.client_id",
		n, takeoverWindow, c.clientID)
}

// noteConnectionLost classifies a lost connection (on paho's goroutine)
// and logs it; a broker that closes connection after connection right
// after they came up is most likely serving another client with the same
// client id (each connection takes over the other's).
func (c *Client) noteConnectionLost(err error) {
	h := &c.health
	life := time.Since(time.Unix(0, h.connectedAt.Load()))
	eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
	if !eof || life >= takeoverWindow {
		h.shortEOF.Store(0)
		c.log.Warn("lost the broker connection; results are kept in the outbox", "error", err,
			"connected_for", life.Round(time.Millisecond), "outbox_depth", c.box.depth())
		return
	}
	n := h.shortEOF.Add(1)
	if n < takeoverStreak {
		c.log.Warn("the broker closed the connection: it may have restarted, or another client connected with the same client id; results are kept in the outbox",
			"error", err, "connected_for", life.Round(time.Millisecond), "client_id", c.clientID, "outbox_depth", c.box.depth())
		return
	}
	msg := c.takeoverMessage(int(n))
	c.log.Error(msg, "error", err, "connected_for", life.Round(time.Millisecond), "client_id", c.clientID, "key", "mqtt.client_id")
	if n == takeoverStreak {
		c.Event(inspection.Event{Time: time.Now(), Severity: inspection.Critical, Kind: EventClientIDTakeover,
			Message: msg, Fields: map[string]string{"client_id": c.clientID}})
	}
}

// EventClientIDTakeover is the kind of the event raised when the broker
// keeps closing the connection right after it came up: another client
// with the same client id is most likely connected.
const EventClientIDTakeover = "mqtt_client_id_takeover"

// Package plc hands every inspection verdict to the line PLC over Modbus
// TCP (github.com/simonvetter/modbus).
//
// Per result the Output writes the verdict coil (true = reject) and three
// consecutive holding registers from plc.register_base: part sequence
// (1..65535, wrapping past 0), verdict code (1 OK, 2 NG, 3 ERROR) and
// score × 1000 (clamped to 0..65535). Then it signals the PLC: handshake
// "strobe" sets the strobe coil after the data and clears it once
// acknowledged; handshake "sequence" writes the sequence register last,
// its change being the signal. Either way the PLC acknowledges by copying
// the sequence into plc.ack_register, which is polled until
// plc.ack_timeout.
//
// Every result handed to Deliver takes the next sequence number, also one
// that is not written (PLC disconnected, verdict too old), so the PLC sees
// a gap in the sequence where a part's verdict is missing.
//
// # Late verdicts
//
// A verdict is only worth handing over while its part has not passed the
// reject point. A result whose verdict time is more than
// plc.max_verdict_age old when Deliver gets it (it waited in the daemon's
// queue for this output, behind parts the PLC was slow to acknowledge)
// takes plc.late_action: "drop" writes nothing (the PLC's own handshake
// timeout rejects the part), "error" writes verdict code 3 ERROR with the
// verdict coil set under the part's own sequence. It is never written as
// the verdict of another part. Late verdicts are counted
// (inspectd_plc_late_total) and raised as plc_late_verdict events.
//
// # Lifecycle
//
// New checks and allocates; it opens no connection. Start connects in a
// goroutine, which also reconnects after a lost connection with a doubling
// backoff from plc.reconnect_min to plc.reconnect_max. While disconnected
// Deliver fails at once (results are not queued: a verdict handed over
// late is worse than none for a PLC tracking parts by position). Close
// stops that goroutine, waits for it and closes the connection. Errors,
// lost and regained connections, missed acknowledgements and late verdicts
// are reported as events through the Host given to Start.
//
// # Metrics
//
// Output is a prometheus.Collector. Its counters are guarded by a lock
// that is never held across network I/O, so a scrape never waits for the
// PLC.
package plc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/simonvetter/modbus"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// Event kinds.
const (
	EventConnected    = "plc_connected"    // the connection was (re)established
	EventDisconnected = "plc_disconnected" // the connection failed; results are not sent until it is back
	EventAckTimeout   = "plc_ack_timeout"  // the PLC did not acknowledge a part within ack_timeout
	EventError        = "plc_error"        // the PLC refused a request (Modbus exception)
	EventLateVerdict  = "plc_late_verdict" // a verdict was older than max_verdict_age; late_action taken
)

// Verdict codes written to the verdict register.
const (
	CodeOK    = 1
	CodeNG    = 2
	CodeError = 3
)

// The late actions of config.PLC.LateAction.
const (
	LateDrop  = "drop"  // write nothing for the part
	LateError = "error" // write verdict code 3 ERROR, coil set, for the part's own sequence
)

var (
	// ErrDisconnected is wrapped by Deliver while the PLC is unreachable.
	ErrDisconnected = errors.New("PLC not connected")
	// ErrLate is wrapped by Deliver for a verdict older than
	// plc.max_verdict_age, whether it was dropped or written as ERROR.
	ErrLate = errors.New("verdict too old")
	// errClosing ends a handshake interrupted by Close.
	errClosing = errors.New("output closing")
)

// Host is what the Output needs from the daemon.
type Host interface {
	// ReportEvent publishes an event; it must not block.
	ReportEvent(inspection.Event)
}

// Options are the collaborators of an Output.
type Options struct {
	Logger  *slog.Logger // component=plc is added; nil discards
	Station string       // fills Event.Station
	// ProductRegister, when > 0, is the holding register the PLC writes
	// the product code into (changeover.plc_register with changeover.source
	// "plc"): the Output reads it every ProductPoll and hands a changed
	// value to the host's SelectProductCode (product.go).
	ProductRegister int
	// ProductPoll is how often ProductRegister is read
	// (changeover.plc_poll); 0 means DefaultProductPoll.
	ProductPoll time.Duration
}

// Stats are the Output's counters.
type Stats struct {
	Connected   bool   `json:"connected"`
	Sent        uint64 `json:"sent"`         // parts written and acknowledged
	AckTimeouts uint64 `json:"ack_timeouts"` // parts written but not acknowledged in time
	Failed      uint64 `json:"failed"`       // parts not written (disconnected or error)
	Reconnects  uint64 `json:"reconnects"`
	Late        uint64 `json:"late"`     // verdicts older than max_verdict_age (dropped or written as ERROR)
	LastSeq     uint16 `json:"last_seq"` // sequence number of the last part handed to Deliver
	// ProductCode is the last value read from the product register (0:
	// none read yet, or the PLC selects no product).
	ProductCode uint16 `json:"product_code,omitempty"`
	// ProductReads counts reads of the product register; ProductSelections
	// the codes handed to the daemon.
	ProductReads      uint64 `json:"product_reads,omitempty"`
	ProductSelections uint64 `json:"product_selections,omitempty"`
}

// Output is the Modbus TCP result output; it implements inspection.Sink
// ("plc") and prometheus.Collector. Deliver calls come from one goroutine.
type Output struct {
	cfg     config.PLC
	log     *slog.Logger
	station string
	client  *modbus.ModbusClient

	// conn is a one-slot semaphore held by whoever uses the connection:
	// the connector's Open, Deliver's handshake, Close. Stats and Collect
	// never take it.
	conn chan struct{}

	mu          sync.Mutex // guards the fields below; never held across network I/O
	host        Host
	started     bool
	closed      bool
	connected   bool
	everUp      bool      // connected at least once
	nextAttempt time.Time // of the connector while disconnected
	seq         uint16
	stats       Stats
	connGen     uint64 // connections opened; the product poller re-selects after each

	// productReg and productPoll configure the product poller (product.go);
	// pollDone is closed when it has returned (nil without one).
	productReg  int
	productPoll time.Duration
	pollDone    chan struct{}

	lost chan struct{} // one slot: Deliver lost the connection; the connector reconnects
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the connector has returned
}

var (
	_ inspection.Sink      = (*Output)(nil)
	_ prometheus.Collector = (*Output)(nil)
)

// New returns an Output for a validated cfg. It opens no connection;
// Start does.
func New(cfg config.PLC, o Options) (*Output, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "plc")
	// NewClient only parses the configuration; Open dials.
	client, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL:     "tcp://" + cfg.Address,
		Timeout: cfg.Timeout.D,
		Logger:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	})
	if err != nil {
		return nil, fmt.Errorf("plc: address %q: %w", cfg.Address, err)
	}
	if o.ProductRegister > 0xFFFF {
		return nil, fmt.Errorf("plc: product register %d is not a Modbus address (0..65535)", o.ProductRegister)
	}
	poll := o.ProductPoll
	if poll <= 0 {
		poll = DefaultProductPoll
	}
	return &Output{
		cfg: cfg, log: log, station: o.Station, client: client,
		productReg: o.ProductRegister, productPoll: poll,
		conn: make(chan struct{}, 1),
		lost: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}, nil
}

// Name returns "plc".
func (p *Output) Name() string { return "plc" }

// Start connects to the PLC in a goroutine, which reconnects whenever the
// connection is lost, until Close. An unreachable PLC is not an error
// (it is reported as an event and retried); Start fails only when host is
// nil or the Output was started or closed before. ctx is not retained.
func (p *Output) Start(ctx context.Context, host Host) error {
	if host == nil {
		return errors.New("plc: start: host is nil")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("plc: start: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("plc: start: output is closed")
	case p.started:
		return errors.New("plc: start: already started")
	}
	p.host, p.started = host, true
	go p.connector()
	if p.productReg > 0 {
		p.pollDone = make(chan struct{})
		go p.productPoller()
	}
	return nil
}

// Stats returns a snapshot of the counters. It never waits for the PLC.
func (p *Output) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Connected = p.connected
	s.LastSeq = p.seq
	return s
}

// Code returns the verdict register value for v.
func Code(v inspection.Verdict) uint16 {
	switch v {
	case inspection.OK:
		return CodeOK
	case inspection.NG:
		return CodeNG
	}
	return CodeError
}

// ScoreRegister returns score × 1000 clamped to 0..65535.
func ScoreRegister(score float64) uint16 {
	if math.IsNaN(score) || score <= 0 {
		return 0
	}
	return uint16(min(math.Round(score*1000), 65535))
}

// Deliver writes r to the PLC under the next sequence number and waits for
// the acknowledgement, bounded by the request timeout, ack_timeout, ctx
// and Close. A verdict older than max_verdict_age takes late_action and
// the error wraps ErrLate; while disconnected it fails at once with
// ErrDisconnected. A result without a verdict time is never late.
func (p *Output) Deliver(ctx context.Context, r *inspection.Result) error {
	now := time.Now()
	p.mu.Lock()
	switch {
	case !p.started:
		p.mu.Unlock()
		return fmt.Errorf("plc: part %q not sent: output not started", r.PartID)
	case p.closed:
		p.mu.Unlock()
		return fmt.Errorf("plc: part %q not sent: output closed", r.PartID)
	}
	p.seq++
	if p.seq == 0 {
		p.seq = 1
	}
	seq := p.seq
	age := now.Sub(r.VerdictTime)
	late := !r.VerdictTime.IsZero() && age > p.cfg.MaxVerdictAge.D
	if late {
		p.stats.Late++
	}
	connected, next := p.connected, p.nextAttempt
	if !late || p.cfg.LateAction != LateDrop {
		if !connected {
			p.stats.Failed++
		}
	}
	p.mu.Unlock()

	var lateErr error
	if late {
		lateErr = p.late(r, seq, age)
		if p.cfg.LateAction == LateDrop {
			return lateErr
		}
	}
	if !connected {
		wait := ""
		if d := next.Sub(now); d > 0 {
			wait = fmt.Sprintf(" (next attempt in %s)", d.Round(time.Millisecond))
		}
		return withLate(lateErr, fmt.Errorf("plc: part %q (sequence %d) not sent: %w%s", r.PartID, seq, ErrDisconnected, wait))
	}

	coil, code := r.Verdict.Rejects(), Code(r.Verdict)
	if late {
		coil, code = true, CodeError
	}
	acked, err := p.handshake(ctx, seq, coil, code, ScoreRegister(r.Score))
	p.mu.Lock()
	switch {
	case err != nil:
		p.stats.Failed++
	case !acked:
		p.stats.AckTimeouts++
	default:
		p.stats.Sent++
	}
	p.mu.Unlock()
	if err != nil {
		return withLate(lateErr, p.fail(r, seq, err))
	}
	if !acked {
		p.emit(inspection.Warning, EventAckTimeout, fmt.Sprintf("PLC did not acknowledge part %q (sequence %d) within %s", r.PartID, seq, p.cfg.AckTimeout.D),
			map[string]string{"part_id": r.PartID, "seq": strconv.Itoa(int(seq))})
		return withLate(lateErr, fmt.Errorf("plc: part %q (sequence %d): no acknowledgement within %s", r.PartID, seq, p.cfg.AckTimeout.D))
	}
	return lateErr
}

// withLate returns err, prefixed by lateErr when the verdict was late.
func withLate(lateErr, err error) error {
	if lateErr == nil {
		return err
	}
	return fmt.Errorf("%w; %w", lateErr, err)
}

// late reports a verdict older than max_verdict_age and returns the error
// Deliver gives for it.
func (p *Output) late(r *inspection.Result, seq uint16, age time.Duration) error {
	what := "not written; the PLC's own timeout rejects the part"
	if p.cfg.LateAction == LateError {
		what = "written as ERROR for its own sequence"
	}
	age = age.Round(time.Millisecond)
	p.emit(inspection.Warning, EventLateVerdict,
		fmt.Sprintf("verdict of part %q (sequence %d) is %s old, more than plc.max_verdict_age %s: %s", r.PartID, seq, age, p.cfg.MaxVerdictAge.D, what),
		map[string]string{"part_id": r.PartID, "seq": strconv.Itoa(int(seq)), "age_ms": strconv.FormatInt(age.Milliseconds(), 10), "action": p.cfg.LateAction})
	return fmt.Errorf("plc: part %q (sequence %d): %w: %s old, more than plc.max_verdict_age %s; %s", r.PartID, seq, ErrLate, age, p.cfg.MaxVerdictAge.D, what)
}

// handshake writes one part and waits for its acknowledgement, holding the
// connection but not mu. A transport error closes the connection.
func (p *Output) handshake(ctx context.Context, seq uint16, coil bool, code, score uint16) (bool, error) {
	select {
	case p.conn <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-p.stop:
		return false, errClosing
	}
	defer func() { <-p.conn }()
	err := p.write(seq, coil, code, score)
	acked := false
	if err == nil {
		acked, err = p.waitAck(ctx, seq)
		if p.cfg.Handshake == "strobe" {
			if cerr := p.client.WriteCoil(uint16(p.cfg.StrobeCoil), false); cerr != nil && err == nil {
				err = cerr
			}
		}
	}
	if transportError(err) {
		_ = p.client.Close()
	}
	return acked, err
}

func (p *Output) write(seq uint16, coil bool, code, score uint16) error {
	base := uint16(p.cfg.RegisterBase)
	if err := p.client.WriteCoil(uint16(p.cfg.VerdictCoil), coil); err != nil {
		return err
	}
	if p.cfg.Handshake == "sequence" {
		if err := p.client.WriteRegisters(base+1, []uint16{code, score}); err != nil {
			return err
		}
		return p.client.WriteRegister(base, seq)
	}
	if err := p.client.WriteRegisters(base, []uint16{seq, code, score}); err != nil {
		return err
	}
	return p.client.WriteCoil(uint16(p.cfg.StrobeCoil), true)
}

// waitAck polls the ack register until it equals seq.
func (p *Output) waitAck(ctx context.Context, seq uint16) (bool, error) {
	deadline := time.Now().Add(p.cfg.AckTimeout.D)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		v, err := p.client.ReadRegister(uint16(p.cfg.AckRegister), modbus.HOLDING_REGISTER)
		if err != nil {
			return false, err
		}
		if v == seq {
			return true, nil
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
		t.Reset(min(2*time.Millisecond, time.Until(deadline)))
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-p.stop:
			return false, errClosing
		case <-t.C:
		}
	}
}

// transportError reports whether err means the connection is unusable:
// anything but a Modbus exception from the PLC, a cancelled ctx or Close.
func transportError(err error) bool {
	if err == nil || errors.Is(err, errClosing) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var me modbus.Error
	return !errors.As(err, &me) || me == modbus.ErrRequestTimedOut
}

// fail reports err of part r; a transport error (the connection is already
// closed) hands reconnection to the connector.
func (p *Output) fail(r *inspection.Result, seq uint16, err error) error {
	wrapped := fmt.Errorf("plc: part %q (sequence %d): %w", r.PartID, seq, err)
	if !transportError(err) {
		var me modbus.Error
		if errors.As(err, &me) {
			p.emit(inspection.Warning, EventError, fmt.Sprintf("PLC refused part %q: %v", r.PartID, err), map[string]string{"part_id": r.PartID})
		}
		return wrapped
	}
	p.mu.Lock()
	p.connected = false
	closing := p.closed
	p.mu.Unlock()
	if closing {
		return wrapped
	}
	select {
	case p.lost <- struct{}{}:
	default:
	}
	p.emit(inspection.Critical, EventDisconnected, fmt.Sprintf("PLC connection to %s lost: %v; part %q not confirmed", p.cfg.Address, err, r.PartID),
		map[string]string{"address": p.cfg.Address, "part_id": r.PartID})
	p.log.Warn("connection lost", "err", err, "part_id", r.PartID)
	return wrapped
}

// connector keeps the connection up until Close: it connects, waits for
// Deliver to report a lost connection, waits reconnect_min and connects
// again, doubling the wait after each failed attempt up to reconnect_max.
func (p *Output) connector() {
	defer close(p.done)
	backoff := p.cfg.ReconnectMin.D
	reported := false // the current outage has been reported
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		err := p.open()
		if errors.Is(err, errClosing) {
			return
		}
		if err == nil {
			backoff, reported = p.cfg.ReconnectMin.D, true
			select {
			case <-p.stop:
				return
			case <-p.lost:
			}
		} else {
			if !reported {
				p.emit(inspection.Critical, EventDisconnected, fmt.Sprintf("PLC %s unreachable: %v; retrying", p.cfg.Address, err), map[string]string{"address": p.cfg.Address})
				reported = true
			}
			p.log.Debug("connect failed", "address", p.cfg.Address, "err", err, "retry_in", backoff)
		}
		p.mu.Lock()
		p.nextAttempt = time.Now().Add(backoff)
		p.mu.Unlock()
		t.Reset(backoff)
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if err != nil {
			backoff = min(2*backoff, p.cfg.ReconnectMax.D)
		}
	}
}

// open dials the PLC. It returns errClosing when Close has begun (closing
// a connection that was opened meanwhile).
func (p *Output) open() error {
	select {
	case p.conn <- struct{}{}:
	case <-p.stop:
		return errClosing
	}
	defer func() { <-p.conn }()
	// Open dials with the library's fixed 5 s timeout; Close waits for it
	// within its ctx.
	if err := p.client.Open(); err != nil {
		return err
	}
	_ = p.client.SetUnitId(uint8(p.cfg.UnitID))
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = p.client.Close()
		return errClosing
	}
	reconnect := p.everUp
	if reconnect {
		p.stats.Reconnects++
	}
	p.connected, p.everUp = true, true
	p.connGen++
	p.mu.Unlock()
	p.emit(inspection.Info, EventConnected, "PLC connected at "+p.cfg.Address, map[string]string{"address": p.cfg.Address})
	p.log.Info("connected", "address", p.cfg.Address, "reconnect", reconnect)
	return nil
}

// Close stops the connector and waits for it, interrupts a handshake in
// progress (its Deliver fails), and closes the connection. It waits within
// ctx (a dial in progress can take the library's 5 s); safe without Start
// and safe twice.
func (p *Output) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	started := p.started
	p.mu.Unlock()
	close(p.stop)
	if !started {
		return nil
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("plc: close: connector still dialing %s: %w", p.cfg.Address, ctx.Err())
	}
	if p.pollDone != nil {
		select {
		case <-p.pollDone:
		case <-ctx.Done():
			return fmt.Errorf("plc: close: product register read still in progress: %w", ctx.Err())
		}
	}
	select {
	case p.conn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("plc: close: a Modbus request is still in progress: %w", ctx.Err())
	}
	defer func() { <-p.conn }()
	p.mu.Lock()
	wasConnected := p.connected
	p.connected = false
	p.mu.Unlock()
	if !wasConnected {
		return nil
	}
	if err := p.client.Close(); err != nil {
		return fmt.Errorf("plc: close: %w", err)
	}
	return nil
}

func (p *Output) emit(sev inspection.Severity, kind, msg string, fields map[string]string) {
	p.mu.Lock()
	h := p.host
	p.mu.Unlock()
	if h == nil {
		return
	}
	h.ReportEvent(inspection.Event{Time: time.Now(), Station: p.station, Severity: sev, Kind: kind, Message: msg, Fields: fields})
}

// Package plc hands every inspection verdict to the line PLC over Modbus
// TCP (github.com/simonvetter/modbus).
//
// Per result the Output writes the verdict coil (true = reject) and three
// consecutive holding registers from plc.register_base: part sequence
// (1..65535, wrapping past 0; consecutive per delivered part so the PLC
// sees gaps), verdict code (1 OK, 2 NG, 3 ERROR) and score × 1000 (clamped
// to 0..65535). Then it signals the PLC: handshake "strobe" sets the
// strobe coil after the data and clears it once acknowledged; handshake
// "sequence" writes the sequence register last, its change being the
// signal. Either way the PLC acknowledges by copying the sequence into
// plc.ack_register, which is polled until plc.ack_timeout.
//
// A connection error closes the connection; the next attempts follow a
// doubling backoff from reconnect_min to reconnect_max. While
// disconnected Deliver fails at once (results are not queued: a verdict
// handed over late is worse than none for a PLC tracking parts by
// position; the sequence gap shows what was missed). Errors, lost and
// regained connections and missed acknowledgements are reported as events.
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
)

// Verdict codes written to the verdict register.
const (
	CodeOK    = 1
	CodeNG    = 2
	CodeError = 3
)

// ErrDisconnected is wrapped by Deliver while the PLC is unreachable.
var ErrDisconnected = errors.New("PLC not connected")

// Options are the collaborators of an Output.
type Options struct {
	Logger  *slog.Logger           // component=plc is added
	Events  func(inspection.Event) // must not block; nil drops events
	Station string                 // fills Event.Station
}

// Stats are the Output's counters.
type Stats struct {
	Connected   bool   `json:"connected"`
	Sent        uint64 `json:"sent"`         // parts written and acknowledged
	AckTimeouts uint64 `json:"ack_timeouts"` // parts written but not acknowledged in time
	Failed      uint64 `json:"failed"`       // parts not written (disconnected or error)
	Reconnects  uint64 `json:"reconnects"`
	LastSeq     uint16 `json:"last_seq"`
}

// Output is the Modbus TCP result output; it implements inspection.Sink
// ("plc"). Deliver calls come from one goroutine.
type Output struct {
	cfg    config.PLC
	log    *slog.Logger
	events func(inspection.Event)
	opt    Options

	mu          sync.Mutex
	client      *modbus.ModbusClient
	connected   bool
	everUp      bool
	nextAttempt time.Time
	backoff     time.Duration
	seq         uint16
	stats       Stats
}

// New returns an Output for cfg; it connects on the first Deliver.
func New(cfg config.PLC, o Options) (*Output, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "plc")
	client, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL:     "tcp://" + cfg.Address,
		Timeout: cfg.Timeout.D,
		Logger:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	})
	if err != nil {
		return nil, fmt.Errorf("plc: address %q: %w", cfg.Address, err)
	}
	return &Output{cfg: cfg, log: log, events: o.Events, opt: o, client: client, backoff: cfg.ReconnectMin.D}, nil
}

// Name returns "plc".
func (p *Output) Name() string { return "plc" }

// Stats returns a snapshot of the counters.
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

// Deliver writes r to the PLC and waits for the acknowledgement, bounded
// by the request timeout, ack_timeout and ctx.
func (p *Output) Deliver(ctx context.Context, r *inspection.Result) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.connect(); err != nil {
		p.stats.Failed++
		return fmt.Errorf("plc: part %q not sent: %w", r.PartID, err)
	}
	p.seq++
	if p.seq == 0 {
		p.seq = 1
	}
	seq := p.seq
	if err := p.write(seq, r); err != nil {
		p.stats.Failed++
		return p.fail(r, err)
	}
	acked, err := p.waitAck(ctx, seq)
	if p.cfg.Handshake == "strobe" {
		if cerr := p.client.WriteCoil(uint16(p.cfg.StrobeCoil), false); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err != nil {
		p.stats.Failed++
		return p.fail(r, err)
	}
	if !acked {
		p.stats.AckTimeouts++
		p.emit(inspection.Warning, EventAckTimeout, fmt.Sprintf("PLC did not acknowledge part %q (sequence %d) within %s", r.PartID, seq, p.cfg.AckTimeout.D),
			map[string]string{"part_id": r.PartID, "seq": strconv.Itoa(int(seq))})
		return fmt.Errorf("plc: part %q (sequence %d): no acknowledgement within %s", r.PartID, seq, p.cfg.AckTimeout.D)
	}
	p.stats.Sent++
	return nil
}

func (p *Output) write(seq uint16, r *inspection.Result) error {
	base := uint16(p.cfg.RegisterBase)
	if err := p.client.WriteCoil(uint16(p.cfg.VerdictCoil), r.Verdict.Rejects()); err != nil {
		return err
	}
	code, score := Code(r.Verdict), ScoreRegister(r.Score)
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
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(min(2*time.Millisecond, time.Until(deadline))):
		}
	}
}

// connect opens the connection when it is down and the backoff allows.
func (p *Output) connect() error {
	if p.connected {
		return nil
	}
	now := time.Now()
	if now.Before(p.nextAttempt) {
		return fmt.Errorf("%w (next attempt in %s)", ErrDisconnected, p.nextAttempt.Sub(now).Round(time.Millisecond))
	}
	if err := p.client.Open(); err != nil {
		p.nextAttempt = now.Add(p.backoff)
		p.backoff = min(2*p.backoff, p.cfg.ReconnectMax.D)
		if p.everUp || p.stats.Failed == 0 {
			p.emit(inspection.Critical, EventDisconnected, fmt.Sprintf("PLC %s unreachable: %v; retrying", p.cfg.Address, err), map[string]string{"address": p.cfg.Address})
			p.everUp = false
		}
		return fmt.Errorf("%w: %s: %v", ErrDisconnected, p.cfg.Address, err)
	}
	_ = p.client.SetUnitId(uint8(p.cfg.UnitID))
	if p.stats.Sent+p.stats.Failed+p.stats.AckTimeouts > 0 {
		p.stats.Reconnects++
	}
	p.connected, p.everUp = true, true
	p.backoff = p.cfg.ReconnectMin.D
	p.emit(inspection.Info, EventConnected, "PLC connected at "+p.cfg.Address, map[string]string{"address": p.cfg.Address})
	p.log.Info("connected", "address", p.cfg.Address)
	return nil
}

// fail reports err; a transport error drops the connection.
func (p *Output) fail(r *inspection.Result, err error) error {
	var me modbus.Error
	if errors.As(err, &me) && me != modbus.ErrRequestTimedOut {
		p.emit(inspection.Warning, EventError, fmt.Sprintf("PLC refused part %q: %v", r.PartID, err), map[string]string{"part_id": r.PartID})
		return fmt.Errorf("plc: part %q: %w", r.PartID, err)
	}
	_ = p.client.Close()
	p.connected = false
	p.nextAttempt = time.Now().Add(p.backoff)
	p.emit(inspection.Critical, EventDisconnected, fmt.Sprintf("PLC connection to %s lost: %v; part %q not confirmed", p.cfg.Address, err, r.PartID),
		map[string]string{"address": p.cfg.Address, "part_id": r.PartID})
	p.log.Warn("connection lost", "err", err, "part_id", r.PartID)
	return fmt.Errorf("plc: part %q: %w", r.PartID, err)
}

// Close closes the connection.
func (p *Output) Close(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.connected {
		return nil
	}
	p.connected = false
	if err := p.client.Close(); err != nil {
		return fmt.Errorf("plc: close: %w", err)
	}
	return nil
}

func (p *Output) emit(sev inspection.Severity, kind, msg string, fields map[string]string) {
	if p.events == nil {
		return
	}
	p.events(inspection.Event{Time: time.Now(), Station: p.opt.Station, Severity: sev, Kind: kind, Message: msg, Fields: fields})
}

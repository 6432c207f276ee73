package plc

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

// testPLC is a Modbus server whose logic acknowledges each part by copying
// the sequence register into the ack register, on the strobe's rising
// edge or on a write of the sequence register.
type testPLC struct {
	cfg   config.PLC
	noAck bool
	// tookCh, when set, receives every part the PLC takes.
	tookCh chan string
	// stall, when set, blocks reads of holding registers until closed:
	// a PLC that stops answering mid-handshake.
	stall chan struct{}
	// refuse, when not 0, is a holding register whose reads the PLC
	// refuses (Modbus exception: illegal data address).
	refuse uint16

	mu    sync.Mutex
	coils map[uint16]bool
	regs  map[uint16]uint16
	parts []string // "seq:code:score:coil"
}

func (s *testPLC) take() {
	base := uint16(s.cfg.RegisterBase)
	seq := s.regs[base]
	part := strconv.Itoa(int(seq)) + ":" + strconv.Itoa(int(s.regs[base+1])) + ":" + strconv.Itoa(int(s.regs[base+2])) + ":" + strconv.FormatBool(s.coils[uint16(s.cfg.VerdictCoil)])
	s.parts = append(s.parts, part)
	if s.tookCh != nil {
		s.tookCh <- part
	}
	if !s.noAck {
		s.regs[uint16(s.cfg.AckRegister)] = seq
	}
}

func (s *testPLC) HandleCoils(r *modbus.CoilsRequest) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.IsWrite {
		out := make([]bool, r.Quantity)
		for i := range out {
			out[i] = s.coils[r.Addr+uint16(i)]
		}
		return out, nil
	}
	for i, v := range r.Args {
		a := r.Addr + uint16(i)
		rising := v && !s.coils[a]
		s.coils[a] = v
		if rising && s.cfg.Handshake == "strobe" && a == uint16(s.cfg.StrobeCoil) {
			s.take()
		}
	}
	return nil, nil
}

func (s *testPLC) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (s *testPLC) HandleHoldingRegisters(r *modbus.HoldingRegistersRequest) ([]uint16, error) {
	if !r.IsWrite && s.stall != nil {
		<-s.stall
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.IsWrite && s.refuse != 0 && r.Addr == s.refuse {
		return nil, modbus.ErrIllegalDataAddress
	}
	if !r.IsWrite {
		out := make([]uint16, r.Quantity)
		for i := range out {
			out[i] = s.regs[r.Addr+uint16(i)]
		}
		return out, nil
	}
	for i, v := range r.Args {
		s.regs[r.Addr+uint16(i)] = v
	}
	if s.cfg.Handshake == "sequence" && r.Addr == uint16(s.cfg.RegisterBase) {
		s.take()
	}
	return nil, nil
}

func (s *testPLC) HandleInputRegisters(*modbus.InputRegistersRequest) ([]uint16, error) {
	return nil, modbus.ErrIllegalFunction
}

func (s *testPLC) taken() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.parts...)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServer(t *testing.T, addr string, h modbus.RequestHandler) *modbus.ModbusServer {
	t.Helper()
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: "tcp://" + addr, Timeout: 30 * time.Second, MaxClients: 4,
		Logger: log.New(io.Discard, "", 0)}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

// events is the test's Host: it records events and passes them on to ch.
type events struct {
	mu sync.Mutex
	e  []inspection.Event
	ch chan inspection.Event
}

func newEvents() *events { return &events{ch: make(chan inspection.Event, 1000)} }

func (l *events) ReportEvent(e inspection.Event) {
	l.mu.Lock()
	l.e = append(l.e, e)
	l.mu.Unlock()
	l.ch <- e
}

// wait returns the next event of kind, failing the test after 5 s.
func (l *events) wait(t *testing.T, kind string) inspection.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-l.ch:
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event within 5 s; events %v", kind, l.kinds())
		}
	}
}

func (l *events) all() []inspection.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]inspection.Event(nil), l.e...)
}
func (l *events) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var k []string
	for _, e := range l.e {
		k = append(k, e.Kind)
	}
	return k
}

func testCfg(addr, handshake string) config.PLC {
	c := config.Default().PLC
	c.Enabled, c.Address, c.Handshake = true, addr, handshake
	c.ReconnectMin, c.ReconnectMax = config.Dur(20*time.Millisecond), config.Dur(80*time.Millisecond)
	c.AckTimeout = config.Dur(200 * time.Millisecond)
	c.Timeout = config.Dur(500 * time.Millisecond)
	return c
}

func result(i int, v inspection.Verdict, score float64) *inspection.Result {
	return &inspection.Result{PartID: "p" + strconv.Itoa(i), Verdict: v, Score: score, VerdictTime: time.Now()}
}

// start returns a started Output for cfg, connected when connect is set,
// closed at the end of the test.
func start(t *testing.T, cfg config.PLC, connect bool) (*Output, *events) {
	t.Helper()
	out, err := New(cfg, Options{Station: "st1"})
	if err != nil {
		t.Fatal(err)
	}
	evs := newEvents()
	if err := out.Start(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := out.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if connect {
		evs.wait(t, EventConnected)
	}
	return out, evs
}

func newPLC(cfg config.PLC) *testPLC {
	return &testPLC{cfg: cfg, coils: map[uint16]bool{}, regs: map[uint16]uint16{}}
}

func TestHandshakes(t *testing.T) {
	for _, hs := range []string{"strobe", "sequence"} {
		t.Run(hs, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := testCfg(addr, hs)
			h := newPLC(cfg)
			startServer(t, addr, h)
			out, _ := start(t, cfg, true)
			for i, r := range []*inspection.Result{result(1, inspection.OK, 0.1234), result(2, inspection.NG, 0.9), result(3, inspection.Error, 0)} {
				if err := out.Deliver(context.Background(), r); err != nil {
					t.Fatalf("part %d: %v", i+1, err)
				}
			}
			want := []string{"1:1:123:false", "2:2:900:true", "3:3:0:true"}
			if got := h.taken(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
				t.Errorf("PLC took %v; want %v", got, want)
			}
			if hs == "strobe" && h.coils[uint16(cfg.StrobeCoil)] {
				t.Error("strobe left set")
			}
			if st := out.Stats(); st.Sent != 3 || !st.Connected {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestAckTimeout(t *testing.T) {
	addr := freeAddr(t)
	cfg := testCfg(addr, "strobe")
	h := newPLC(cfg)
	h.noAck = true
	startServer(t, addr, h)
	out, evs := start(t, cfg, true)
	begin := time.Now()
	err := out.Deliver(context.Background(), result(1, inspection.NG, 0.5))
	if err == nil || err.Error() != `plc: part "p1" (sequence 1): no acknowledgement within 200ms` {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Deliver took %v", d)
	}
	if k := evs.kinds(); len(k) != 2 || k[1] != EventAckTimeout {
		t.Errorf("events %v", k)
	}
}

// The PLC goes away mid-run and comes back on the same address: errors
// are events, Deliver never hangs, later parts are delivered.
func TestPLCGoesAwayMidRun(t *testing.T) {
	addr := freeAddr(t)
	cfg := testCfg(addr, "strobe")
	h := newPLC(cfg)
	srv := startServer(t, addr, h)
	out, evs := start(t, cfg, true)
	deliver := func(i int) error {
		begin := time.Now()
		err := out.Deliver(context.Background(), result(i, inspection.NG, 0.5))
		if d := time.Since(begin); d > time.Second {
			t.Errorf("part %d: Deliver took %v", i, d)
		}
		return err
	}
	for i := 1; i <= 5; i++ {
		if err := deliver(i); err != nil {
			t.Fatal(err)
		}
	}
	_ = srv.Stop()
	failed := 0
	for i := 6; i <= 15; i++ {
		if err := deliver(i); err != nil {
			failed++
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failed != 10 {
		t.Errorf("%d of 10 deliveries failed while the PLC was down", failed)
	}
	if err := deliver(16); !errors.Is(err, ErrDisconnected) {
		t.Errorf("while down: %v, want ErrDisconnected", err)
	}
	startServer(t, addr, h)
	var err error
	for i := 17; i <= 60; i++ {
		if err = deliver(i); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("not reconnected: %v", err)
	}
	for i := 100; i < 105; i++ {
		if err := deliver(i); err != nil {
			t.Fatal(err)
		}
	}
	st := out.Stats()
	if st.Reconnects != 1 || st.Sent != 11 || !st.Connected {
		t.Errorf("stats %+v", st)
	}
	k := evs.kinds()
	if len(k) < 3 || k[0] != EventConnected || k[1] != EventDisconnected || k[len(k)-1] != EventConnected {
		t.Errorf("events %v", k)
	}
	got := h.taken()
	if len(got) != 11 {
		t.Errorf("PLC took %d parts: %v", len(got), got)
	}
}

func TestScoreAndCode(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want uint16
	}{{0, 0}, {-1, 0}, {0.0004, 0}, {0.0005, 1}, {0.5, 500}, {1, 1000}, {100, 65535}} {
		if got := ScoreRegister(c.in); got != c.want {
			t.Errorf("ScoreRegister(%v) = %d, want %d", c.in, got, c.want)
		}
	}
	if Code(inspection.OK) != 1 || Code(inspection.NG) != 2 || Code(inspection.Error) != 3 {
		t.Error("verdict codes")
	}
}

package plc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
)

const productReg = 40

// selector is the test's Host with product changeover: it records every
// SelectProductCode and refuses codes other than 1 and 2.
type selector struct {
	*events
	smu   sync.Mutex
	calls []string // "code/source"
}

func (s *selector) SelectProduct(name, source string) error {
	return fmt.Errorf("SelectProduct(%q) not expected from the PLC", name)
}

func (s *selector) SelectProductCode(code int, source string) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf("%d/%s", code, source))
	if code != 1 && code != 2 {
		return fmt.Errorf("product code %d: %w", code, inspection.ErrUnknownProduct)
	}
	return nil
}

func (s *selector) selections() string {
	s.smu.Lock()
	defer s.smu.Unlock()
	return strings.Join(s.calls, " ")
}

// waitFor polls cond for 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *testPLC) setReg(a, v uint16) {
	s.mu.Lock()
	s.regs[a] = v
	s.mu.Unlock()
}

// startProduct starts an Output polling the product register every 5 ms
// for host.
func startProduct(t *testing.T, cfg config.PLC, host Host) *Output {
	t.Helper()
	out, err := New(cfg, Options{Station: "st1", ProductRegister: productReg, ProductPoll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := out.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return out
}

// TestProductRegister: the PLC's product code reaches SelectProductCode
// (source plc) when it changes and once after each reconnect; 0 selects
// nothing; a refused code is not retried until it changes; parts keep
// being handed over while the register is polled on the same connection.
func TestProductRegister(t *testing.T) {
	addr := freeAddr(t)
	cfg := testCfg(addr, "strobe")
	h := newPLC(cfg)
	srv := startServer(t, addr, h)
	host := &selector{events: newEvents()}
	out := startProduct(t, cfg, host)
	host.wait(t, EventConnected)
	reads := func(n uint64) func() bool { return func() bool { return out.Stats().ProductReads >= n } }
	waitFor(t, "reads of register 0", reads(5))
	if got := host.selections(); got != "" {
		t.Fatalf("code 0 selected %q", got)
	}
	h.setReg(productReg, 2)
	waitFor(t, "selection of code 2", func() bool { return host.selections() == "2/plc" })
	n := out.Stats().ProductReads
	waitFor(t, "more reads", reads(n+5))
	h.setReg(productReg, 7) // refused by the daemon: not retried
	waitFor(t, "selection of code 7", func() bool { return host.selections() == "2/plc 7/plc" })
	n = out.Stats().ProductReads
	waitFor(t, "more reads", reads(n+5))
	h.setReg(productReg, 0)
	waitFor(t, "register 0 read", func() bool { return out.Stats().ProductCode == 0 })
	h.setReg(productReg, 1)
	waitFor(t, "selection of code 1", func() bool { return host.selections() == "2/plc 7/plc 1/plc" })

	// Parts go through the handshake while the register is polled.
	for i := 1; i <= 20; i++ {
		if err := out.Deliver(context.Background(), result(i, inspection.OK, 0.1)); err != nil {
			t.Fatalf("part %d while polling: %v", i, err)
		}
	}
	if got := len(h.taken()); got != 20 {
		t.Errorf("PLC took %d parts, want 20", got)
	}

	// Reconnect: the same code is selected once more.
	_ = srv.Stop()
	waitFor(t, "disconnect", func() bool { return !out.Stats().Connected })
	startServer(t, addr, h)
	waitFor(t, "selection after the reconnect", func() bool { return host.selections() == "2/plc 7/plc 1/plc 1/plc" })
	n = out.Stats().ProductReads
	waitFor(t, "more reads", reads(n+5))
	if got := host.selections(); got != "2/plc 7/plc 1/plc 1/plc" {
		t.Errorf("selections %q after the reconnect; want the code once more", got)
	}
	if st := out.Stats(); st.ProductCode != 1 || st.ProductSelections != 4 || st.Reconnects != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestProductRegisterRefused: a register the PLC refuses to read is one
// plc_error event (not one per poll); a host without product changeover
// is tolerated; Close ends the poller.
func TestProductRegisterRefused(t *testing.T) {
	addr := freeAddr(t)
	cfg := testCfg(addr, "strobe")
	h := newPLC(cfg)
	h.refuse = productReg
	startServer(t, addr, h)
	evs := newEvents()
	out := startProduct(t, cfg, evs) // no ProductSelector
	evs.wait(t, EventConnected)
	e := evs.wait(t, EventError)
	if want := "PLC refused reading the product register 40: illegal data address; the product is not selected by the PLC until it answers"; e.Message != want {
		t.Errorf("event %q\nwant %q", e.Message, want)
	}
	time.Sleep(100 * time.Millisecond)
	n := 0
	for _, e := range evs.all() {
		if e.Kind == EventError {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d plc_error events for a refused register, want 1", n)
	}
	h.mu.Lock()
	h.refuse = 0
	h.regs[productReg] = 2
	h.mu.Unlock()
	waitFor(t, "reads", func() bool { return out.Stats().ProductCode == 2 })
}

// TestProductRegisterStalled: Stats does not wait for a PLC that does not
// answer the product register read.
func TestProductRegisterStalled(t *testing.T) {
	addr := freeAddr(t)
	cfg := testCfg(addr, "strobe")
	h := newPLC(cfg)
	h.stall = make(chan struct{})
	startServer(t, addr, h)
	evs := &selector{events: newEvents()}
	out := startProduct(t, cfg, evs)
	defer close(h.stall)
	evs.wait(t, EventConnected)
	time.Sleep(50 * time.Millisecond) // a read is now stuck in the PLC
	begin := time.Now()
	st := out.Stats()
	if d := time.Since(begin); d > 20*time.Millisecond {
		t.Errorf("Stats waited %v for a stalled product register read", d)
	}
	if st.ProductReads != 0 || evs.selections() != "" {
		t.Errorf("stats %+v, selections %q while the PLC does not answer", st, evs.selections())
	}
}

func TestProductRegisterOption(t *testing.T) {
	cfg := testCfg("127.0.0.1:1", "strobe")
	if _, err := New(cfg, Options{ProductRegister: 70000}); err == nil || err.Error() != "plc: product register 70000 is not a Modbus address (0..65535)" {
		t.Errorf("error %v", err)
	}
}

package plc

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/inspectd/inspectd/inspection"
)

// DefaultProductPoll is how often the product register is read when
// Options.ProductPoll is 0 (changeover.plc_poll's default).
const DefaultProductPoll = 100 * time.Millisecond

// productPoller reads the product register every productPoll while the
// PLC is connected, and hands the code to the host's SelectProductCode
// (source "plc") when it changed, and once after every (re)connect: the
// PLC's selection holds again for a daemon that lost it. Code 0 means "no
// product selected" and is not handed on. A refused selection is logged;
// the daemon reports it as an event. It never holds mu across I/O.
func (p *Output) productPoller() {
	defer close(p.pollDone)
	t := time.NewTicker(p.productPoll)
	defer t.Stop()
	var (
		last    uint16
		gen     uint64 // connection of the last read; 0: none yet
		refused bool   // the last read was refused by the PLC (reported once)
		noHost  bool   // the host cannot select products (reported once)
	)
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		connected, g, h := p.connected, p.connGen, p.host
		p.mu.Unlock()
		if !connected {
			continue
		}
		v, err := p.readProduct()
		if err != nil {
			var me modbus.Error
			if errors.As(err, &me) && !transportError(err) && !refused {
				refused = true
				p.emit(inspection.Warning, EventError, fmt.Sprintf("PLC refused reading the product register %d: %v; the product is not selected by the PLC until it answers", p.productReg, err),
					map[string]string{"register": strconv.Itoa(p.productReg)})
			}
			continue
		}
		refused = false
		p.mu.Lock()
		p.stats.ProductReads++
		p.stats.ProductCode = v
		p.mu.Unlock()
		if g == gen && v == last {
			continue
		}
		gen, last = g, v
		if v == 0 {
			p.log.Debug("product register is 0: no product selected by the PLC", "register", p.productReg)
			continue
		}
		sel, ok := h.(inspection.ProductSelector)
		if !ok {
			if !noHost {
				noHost = true
				p.log.Warn("the PLC selects a product but the daemon has no product changeover; ignored", "register", p.productReg, "code", v)
			}
			continue
		}
		p.mu.Lock()
		p.stats.ProductSelections++
		p.mu.Unlock()
		if err := sel.SelectProductCode(int(v), inspection.ProductSourcePLC); err != nil {
			p.log.Warn("product selection by the PLC refused", "register", p.productReg, "code", v, "err", err)
			continue
		}
		p.log.Info("product selected by the PLC", "register", p.productReg, "code", v)
	}
}

// readProduct reads the product register, holding the connection. A
// transport error closes the connection and hands reconnection to the
// connector (reported like a lost connection in Deliver).
func (p *Output) readProduct() (uint16, error) {
	select {
	case p.conn <- struct{}{}:
	case <-p.stop:
		return 0, errClosing
	}
	// The connection may have been lost while waiting for it.
	p.mu.Lock()
	connected := p.connected
	p.mu.Unlock()
	if !connected {
		<-p.conn
		return 0, ErrDisconnected
	}
	v, err := p.client.ReadRegister(uint16(p.productReg), modbus.HOLDING_REGISTER)
	if transportError(err) {
		_ = p.client.Close()
	}
	<-p.conn
	if !transportError(err) {
		return v, err
	}
	p.mu.Lock()
	p.connected = false
	closing := p.closed
	p.mu.Unlock()
	if closing {
		return 0, err
	}
	select {
	case p.lost <- struct{}{}:
	default:
	}
	p.emit(inspection.Critical, EventDisconnected, fmt.Sprintf("PLC connection to %s lost reading the product register %d: %v", p.cfg.Address, p.productReg, err),
		map[string]string{"address": p.cfg.Address})
	p.log.Warn("connection lost", "err", err, "register", p.productReg)
	return 0, err
}

package mqtttest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a broker and can cut them: the client
// behind it loses the broker while every other client stays connected, so
// the broker sends that client's Will and keeps the other sessions live.
// Tests use it for a network outage of one client without restarting the
// broker. It also reads the MQTT packets it forwards: it records the packet
// identifiers the client uses on each connection, and can hold back the
// broker's PUBACKs (acknowledgements lost in the network).
type Proxy struct {
	// URL is tcp://127.0.0.1:PORT of the proxy.
	URL string

	t      testing.TB
	target string
	ln     net.Listener
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	holdAcks bool
	ids      [][]uint16 // packet identifiers from the client, per connection
}

// HoldAcks makes the proxy drop (on) or forward (off) the broker's PUBACKs.
func (p *Proxy) HoldAcks(on bool) {
	p.mu.Lock()
	p.holdAcks = on
	p.mu.Unlock()
}

// PacketIDs returns, per connection in the order they were made, the
// packet identifiers of the PUBLISH (QoS > 0), SUBSCRIBE and UNSUBSCRIBE
// packets the client sent on it.
func (p *Proxy) PacketIDs() [][]uint16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([][]uint16, len(p.ids))
	for i, v := range p.ids {
		out[i] = append([]uint16(nil), v...)
	}
	return out
}

// StartProxy listens on a free local port and forwards to b; it is closed
// when the test ends. Plain TCP only.
func StartProxy(t testing.TB, b *Broker) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mqtttest: proxy listen: %v", err)
	}
	p := &Proxy{t: t, target: b.Addr(), ln: ln, conns: map[net.Conn]struct{}{},
		URL: fmt.Sprintf("tcp://%s", ln.Addr())}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Cut closes every forwarded connection and refuses new ones until
// Restore: to the client it is a broker that went away.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore forwards new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		n := len(p.ids)
		p.ids = append(p.ids, nil)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(out, in, n, true)
		go p.pipe(in, out, n, false)
	}
}

// pipe copies MQTT packets from src to dst (fromClient: the client's side
// of connection conn), recording the client's packet identifiers and
// dropping the broker's PUBACKs while acknowledgements are held; when
// either side ends, or a packet cannot be read, both close.
func (p *Proxy) pipe(dst, src net.Conn, conn int, fromClient bool) {
	defer p.wg.Done()
	r := bufio.NewReader(src)
	for {
		pkt, err := readPacket(r)
		if err != nil {
			break
		}
		kind, qos := pkt.header>>4, (pkt.header>>1)&3
		p.mu.Lock()
		hold := p.holdAcks
		if fromClient {
			if id, ok := pkt.id(kind, qos); ok {
				p.ids[conn] = append(p.ids[conn], id)
			}
		}
		p.mu.Unlock()
		if !fromClient && kind == 4 && hold {
			continue
		}
		if _, err := dst.Write(pkt.raw); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// packet is one MQTT control packet as read from the wire.
type packet struct {
	header byte
	raw    []byte // the whole packet
	body   []byte // after the fixed header
}

// readPacket reads one control packet: the fixed header byte, the
// remaining length (variable-length integer) and the rest.
func readPacket(r *bufio.Reader) (packet, error) {
	h, err := r.ReadByte()
	if err != nil {
		return packet{}, err
	}
	raw := []byte{h}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return packet{}, err
		}
		raw = append(raw, b)
		n |= int(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return packet{}, fmt.Errorf("mqtttest: remaining length longer than 4 bytes")
		}
	}
	start := len(raw)
	raw = append(raw, make([]byte, n)...)
	if _, err := io.ReadFull(r, raw[start:]); err != nil {
		return packet{}, err
	}
	return packet{header: h, raw: raw, body: raw[start:]}, nil
}

// id returns the packet identifier of a PUBLISH with QoS > 0 (after the
// topic), a SUBSCRIBE or an UNSUBSCRIBE (first in the variable header).
func (p packet) id(kind, qos byte) (uint16, bool) {
	switch {
	case kind == 3 && qos > 0:
		if len(p.body) < 2 {
			return 0, false
		}
		off := 2 + int(binary.BigEndian.Uint16(p.body))
		if len(p.body) < off+2 {
			return 0, false
		}
		return binary.BigEndian.Uint16(p.body[off:]), true
	case kind == 8 || kind == 10:
		if len(p.body) < 2 {
			return 0, false
		}
		return binary.BigEndian.Uint16(p.body), true
	}
	return 0, false
}

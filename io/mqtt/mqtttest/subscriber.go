package mqtttest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Message is one received message.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
	Time     time.Time
}

// SubscriberOptions configures Subscribe.
type SubscriberOptions struct {
	// Topics to subscribe to (QoS 1); default "#".
	Topics []string
	// ClientID; default a unique "mqtttest-sub-N".
	ClientID string
	// Persistent uses CleanSession(false): with a broker started with
	// Persistence, messages published while the subscriber is
	// reconnecting are queued for it, across a broker Stop/Start.
	Persistent bool
	// Username and Password authenticate (Broker Users).
	Username, Password string
}

var subscriberSeq atomic.Int64

// Subscriber collects the messages of its topics. It reconnects by itself
// (within 100 ms of the broker answering) and subscribes again.
type Subscriber struct {
	t      testing.TB
	cli    paho.Client
	mu     sync.Mutex
	msgs   []Message
	notify chan struct{}
	ready  atomic.Bool
}

// Subscribe connects a Subscriber to b and closes it when the test ends.
func Subscribe(t testing.TB, b *Broker, o SubscriberOptions) *Subscriber {
	t.Helper()
	if len(o.Topics) == 0 {
		o.Topics = []string{"#"}
	}
	if o.ClientID == "" {
		o.ClientID = fmt.Sprintf("mqtttest-sub-%d-%d", os.Getpid(), subscriberSeq.Add(1))
	}
	s := &Subscriber{t: t, notify: make(chan struct{}, 1)}
	opts := ClientOptions(t, b, o.ClientID).
		SetCleanSession(!o.Persistent).
		SetUsername(o.Username).SetPassword(o.Password).
		SetOnConnectHandler(func(c paho.Client) {
			filters := map[string]byte{}
			for _, tp := range o.Topics {
				filters[tp] = 1
			}
			tok := c.SubscribeMultiple(filters, s.receive)
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				s.ready.Store(true)
				s.wake()
			}
		}).
		SetConnectionLostHandler(func(paho.Client, error) { s.ready.Store(false) })
	s.cli = paho.NewClient(opts)
	tok := s.cli.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtttest: subscriber connect to %s: %v", b.URL, tok.Error())
	}
	s.WaitReady(10 * time.Second)
	t.Cleanup(s.Close)
	return s
}

// ClientOptions returns paho options for a test client of b: its URL, the
// test CA (and client certificate) for TLS, fast reconnects.
func ClientOptions(t testing.TB, b *Broker, clientID string) *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker(b.URL).SetClientID(clientID).
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(100 * time.Millisecond).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(5 * time.Second).
		SetOrderMatters(true)
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tc := &tls.Config{RootCAs: pool}
		if pair, err := tls.LoadX509KeyPair(b.ClientCertFile, b.ClientKeyFile); err == nil {
			tc.Certificates = []tls.Certificate{pair}
		}
		o.SetTLSConfig(tc)
	}
	return o
}

func (s *Subscriber) receive(_ paho.Client, m paho.Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, Message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...), Retained: m.Retained(), Time: time.Now()})
	s.mu.Unlock()
	s.wake()
}

func (s *Subscriber) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// WaitReady waits until the subscriber is connected and subscribed.
func (s *Subscriber) WaitReady(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !s.ready.Load() {
		if time.Now().After(deadline) {
			s.t.Fatalf("mqtttest: subscriber not subscribed within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Messages returns a copy of the messages received so far, in arrival
// order; with topic suffixes given, only those whose topic ends with one.
func (s *Subscriber) Messages(suffixes ...string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msgs {
		if len(suffixes) == 0 {
			out = append(out, m)
			continue
		}
		for _, suf := range suffixes {
			if strings.HasSuffix(m.Topic, suf) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// WaitFor waits until cond holds for the messages received so far and
// returns them; it fails the test after timeout.
func (s *Subscriber) WaitFor(timeout time.Duration, what string, cond func([]Message) bool) []Message {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		msgs := s.Messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-s.notify:
		case <-tick.C:
		case <-deadline.C:
			s.t.Fatalf("mqtttest: timed out after %s waiting for %s (%d messages received)", timeout, what, len(msgs))
		}
	}
}

// Publish sends a message (QoS 1) and waits for the broker's
// acknowledgement.
func (s *Subscriber) Publish(topic string, payload []byte, retained bool) {
	s.t.Helper()
	tok := s.cli.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		s.t.Fatalf("mqtttest: publish %s: %v", topic, tok.Error())
	}
}

// Close disconnects.
func (s *Subscriber) Close() { s.cli.Disconnect(100) }

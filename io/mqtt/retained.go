package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Retained commands.
//
// A retained command would run again on every reconnect, so commands that
// arrive with the retain flag are refused. But MQTT 3.1.1 sets the flag
// only on messages sent because of a new subscription [MQTT-3.3.1-9]: a
// command published with retain while the station is subscribed arrives
// as a live message, and would run once before every later delivery of it
// is refused.
//
// So before running a command the worker asks the broker: it subscribes to
// the command's exact topic (the broker then sends the retained message of
// that topic, if any, with the flag set) and, in a second SUBSCRIBE, to the
// station's own status topic, whose retained online/offline message the
// client keeps on the broker. The broker handles the two in order on the
// connection and paho's router delivers in order, so once the retained
// status has arrived, the retained command would have arrived before it.
// A retained copy equal to the command means it was published retained:
// the command is refused. Cost: one round trip to the broker per command.
//
// When the check cannot complete (the broker keeps no retained messages,
// or its ACL refuses the subscriptions), it is switched off for the rest of
// the connection with a warning, and commands run unchecked, as before.

// retainProbeTimeout bounds one check (at most connect_timeout).
const retainProbeTimeout = 2 * time.Second

// retainProbe is one check in flight.
type retainProbe struct {
	topic    string
	payload  []byte
	retained bool          // a retained copy equal to payload arrived
	barrier  chan struct{} // closed when the retained status arrived
	once     sync.Once
}

// probing reports whether a retained message on topic with payload is the
// copy the check in flight asked for.
func (s *jsonSession) probing(topic string, payload []byte) bool {
	s.cmds.probeMu.Lock()
	defer s.cmds.probeMu.Unlock()
	p := s.cmds.probe
	return p != nil && p.topic == topic && bytes.Equal(p.payload, payload)
}

// onProbe is paho's handler for the check's two subscriptions.
func (s *jsonSession) onProbe(_ paho.Client, m paho.Message) {
	s.cmds.probeMu.Lock()
	defer s.cmds.probeMu.Unlock()
	p := s.cmds.probe
	if p == nil || !m.Retained() {
		return
	}
	switch m.Topic() {
	case p.topic:
		if bytes.Equal(m.Payload(), p.payload) {
			p.retained = true
		}
	case s.c.topics.status:
		p.once.Do(func() { close(p.barrier) })
	}
}

// heldRetained reports whether the broker holds payload as the retained
// message of topic (see above). An error means the check could not
// complete; it is then off until the next connect.
func (s *jsonSession) heldRetained(topic string, payload []byte) (bool, error) {
	c := s.c
	if s.cmds.probeOff.Load() {
		return false, nil
	}
	cl := c.client()
	if cl == nil || !cl.IsConnectionOpen() {
		return false, errNotConnected
	}
	p := &retainProbe{topic: topic, payload: payload, barrier: make(chan struct{})}
	s.cmds.probeMu.Lock()
	s.cmds.probe = p
	s.cmds.probeMu.Unlock()
	defer func() {
		s.cmds.probeMu.Lock()
		s.cmds.probe = nil
		s.cmds.probeMu.Unlock()
		c.watch(c.log.Debug, "unsubscribe of the retained-command check", cl.Unsubscribe(topic, c.topics.status))
	}()
	wait := min(retainProbeTimeout, c.cfg.ConnectTimeout.D)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	// Two SUBSCRIBE packets, in this order (one packet's filters would be
	// in map order).
	toks := []paho.Token{cl.Subscribe(topic, 0, s.onProbe), cl.Subscribe(c.topics.status, 0, s.onProbe)}
	var err error
	for _, tok := range toks {
		select {
		case <-tok.Done():
		case <-timer.C:
			err = fmt.Errorf("no SUBACK within %s", wait)
		case <-c.bg.Done():
			err = errors.New("the client is stopping")
		}
		if err != nil {
			break
		}
		if err = tok.Error(); err != nil {
			break
		}
		if st, ok := tok.(*paho.SubscribeToken); ok {
			for filter, code := range st.Result() {
				if code >= 0x80 {
					err = fmt.Errorf("the broker refused the subscription to %s (not allowed by its ACL?)", filter)
				}
			}
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		select {
		case <-p.barrier:
		case <-timer.C:
			err = fmt.Errorf("the broker sent no retained message on %s within %s (retained messages not kept, or the online status never published?)", c.topics.status, wait)
		case <-c.bg.Done():
			err = errors.New("the client is stopping")
		}
	}
	s.cmds.probeMu.Lock()
	held := p.retained
	s.cmds.probeMu.Unlock()
	if err != nil && !held {
		s.cmds.probeOff.Store(true)
		return false, err
	}
	return held, nil
}

// retainedError is the refusal of a retained command.
func (s *jsonSession) retainedError(name string) error {
	return fmt.Errorf("retained commands are ignored (they would run again on every reconnect); publish without -r and clear it with: mosquitto_pub -r -n -t %s%s", s.c.topics.cmd, name)
}

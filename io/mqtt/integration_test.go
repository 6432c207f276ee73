package mqtt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

func hasStatus(state, reason string) func([]mqtttest.Message) bool {
	return func(msgs []mqtttest.Message) bool {
		for _, m := range msgs {
			if !strings.HasSuffix(m.Topic, "/status") {
				continue
			}
			var s mqtt.StatusMessage
			if json.Unmarshal(m.Payload, &s) == nil && s.State == state && (reason == "" || s.Reason == reason) {
				return true
			}
		}
		return false
	}
}

func TestPublishResultsEventsStatsSchemas(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/#"}})
	cfg := baseConfig(t, b)
	cfg.StatsInterval = config.Dur(time.Second)
	c := startClient(t, cfg, newFakeControl())
	sub.WaitFor(5*time.Second, "online status", hasStatus(mqtt.StateOnline, ""))
	for i := 1; i <= 20; i++ {
		if err := c.Deliver(context.Background(), result(i)); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			c.Event(inspection.Event{Severity: inspection.Warning, Kind: inspection.EventCameraOffline, Message: "camera gone", Fields: map[string]string{"source": "rtsp://cam"}})
		}
	}
	msgs := sub.WaitFor(10*time.Second, "20 results, an event and a stats message", func(m []mqtttest.Message) bool {
		return len(sub.Messages("/result")) >= 20 && len(sub.Messages("/event")) >= 1 && len(sub.Messages("/stats")) >= 1
	})
	if dups := checkInOrder(t, resultIDs(t, msgs), 20); dups != 0 {
		t.Errorf("%d duplicates without an outage", dups)
	}
	// The event sits between result 10 and 11, as delivered.
	var order []string
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/event") {
			order = append(order, "event")
		} else if strings.HasSuffix(m.Topic, "/result") {
			order = append(order, "r")
		}
	}
	if strings.Join(order[:11], ",") != strings.Repeat("r,", 10)+"event" {
		t.Errorf("event not in delivery order: %v", order)
	}
	for _, m := range msgs {
		if m.Retained && !strings.HasSuffix(m.Topic, "/status") {
			t.Errorf("%s is retained", m.Topic)
		}
	}
	var st mqtt.StatsMessage
	json.Unmarshal(sub.Messages("/stats")[0].Payload, &st)
	if st.Counts == nil || st.Counts.Total != 10 || st.Camera.State != inspection.CameraOnline || st.Drops.Sinks != 1 {
		t.Errorf("stats message lacks the daemon's figures: %+v", st)
	}
	s := c.Stats()
	if s.PublishedResults != 20 || s.OutboxDepth != 0 || s.Published < 21 {
		t.Errorf("stats %+v", s)
	}
	// Graceful close: retained offline with reason shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sub.WaitFor(5*time.Second, "offline (shutdown)", hasStatus(mqtt.StateOffline, mqtt.ReasonShutdown))
	n := loadSchemas(t).validateAll(t, sub.Messages())
	t.Logf("validated against the schemas: %v", n)
	for _, k := range []string{"result", "status", "stats", "event"} {
		if n[k] == 0 {
			t.Errorf("no %s message validated", k)
		}
	}
}

// TestOutageAndPublisherRestart is the acceptance test: 1,000
// results; the broker stops for 10 s mid-run; the publisher process is
// SIGKILLed and restarted on the same outbox while the broker is down; all
// 1,000 result ids arrive, in order.
func TestOutageAndPublisherRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s outage")
	}
	const total = 1000
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Persistence: true})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/result"}, Persistent: true, ClientID: "scada"})
	outbox := t.TempDir()
	args := []string{"-broker", b.URL, "-outbox", outbox, "-station", station, "-interval", "4ms", "-keepalive", "2s"}
	p1 := startPublisher(t, append(args, "-from", "1", "-to", fmt.Sprint(total))...)
	sub.WaitFor(20*time.Second, "300 results before the outage", func([]mqtttest.Message) bool { return uniqueResults(sub.Messages()) >= 300 })

	b.Stop()
	down := time.Now()
	t.Logf("broker stopped after %d results arrived", uniqueResults(sub.Messages()))
	deadline := time.Now().Add(5 * time.Second)
	for p1.Persisted() < 500 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p1.done
	killedAt := p1.Persisted()
	t.Logf("publisher SIGKILLed with results 1..%d persisted (broker down)", killedAt)

	p2 := startPublisher(t, append(args, "-from", fmt.Sprint(killedAt+1), "-to", fmt.Sprint(total), "-drain", "60s")...)
	p2.waitLine(t, "persisted 1000", 15*time.Second)
	time.Sleep(time.Until(down.Add(10 * time.Second)))
	b.Start()
	t.Logf("broker restarted after %s", time.Since(down).Round(100*time.Millisecond))

	msgs := sub.WaitFor(30*time.Second, "all 1000 results", func([]mqtttest.Message) bool { return uniqueResults(sub.Messages()) >= total })
	ids := resultIDs(t, msgs)
	dups := checkInOrder(t, ids, total)
	t.Logf("all %d result ids arrived in order; %d messages, %d duplicates", total, len(ids), dups)
	p2.waitLine(t, "closed depth=0", 20*time.Second)
	loadSchemas(t).validateAll(t, msgs)
}

func TestLastWillOnKillAndOnlineOnRestart(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	outbox := t.TempDir()
	args := []string{"-broker", b.URL, "-outbox", outbox, "-station", station, "-keepalive", "1s", "-idle"}
	p := startPublisher(t, args...)
	p.waitLine(t, "started", 10*time.Second)
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/status"}})
	sub.WaitFor(5*time.Second, "retained online", hasStatus(mqtt.StateOnline, ""))
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	killed := time.Now()
	sub.WaitFor(10*time.Second, "Last Will offline", hasStatus(mqtt.StateOffline, mqtt.ReasonConnectionLost))
	t.Logf("Last Will arrived %s after kill -9", time.Since(killed).Round(10*time.Millisecond))
	// A subscriber arriving now gets the retained offline.
	late := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/status"}})
	msgs := late.WaitFor(5*time.Second, "retained offline", hasStatus(mqtt.StateOffline, mqtt.ReasonConnectionLost))
	if !msgs[0].Retained {
		t.Error("offline status is not retained")
	}
	p2 := startPublisher(t, args...)
	p2.waitLine(t, "started", 10*time.Second)
	late.WaitFor(5*time.Second, "online after restart", hasStatus(mqtt.StateOnline, ""))
	loadSchemas(t).validateAll(t, append(sub.Messages(), late.Messages()...))
}

func TestOutboxFullDropsOldestAndStartWithBrokerDown(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	b.Stop()
	cfg := baseConfig(t, b)
	cfg.OutboxMaxMessages = 10
	c, err := mqtt.New(mqtt.Options{Config: cfg, Station: station, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	start := time.Now()
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatalf("an unreachable broker must not fail Start: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Start took %s with the broker down", d)
	}
	for i := 1; i <= 25; i++ {
		c.Deliver(context.Background(), result(i))
	}
	c.Flush(context.Background())
	s := c.Stats()
	// 25 results + 1 outbox_drop event into 10 slots.
	if s.OutboxDepth != 10 || s.Dropped != 16 {
		t.Fatalf("depth %d dropped %d; want 10 and 16", s.OutboxDepth, s.Dropped)
	}
	b.Start()
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/#"}})
	msgs := sub.WaitFor(15*time.Second, "the 10 newest messages", func([]mqtttest.Message) bool {
		return len(sub.Messages("/result"))+len(sub.Messages("/event")) >= 10
	})
	// The newest 10 of the 26 messages arrive: the last results, and the
	// outbox_drop event unless later results pushed it out too (it is
	// written when the first drop happens; the count stays in the stats).
	ids := resultIDs(t, msgs)
	ev := sub.Messages("/event")
	if len(ids)+len(ev) != 10 || len(ev) > 1 {
		t.Fatalf("%d results and %d events arrived, want 10 messages", len(ids), len(ev))
	}
	for i, id := range ids {
		if want := fmt.Sprintf("%s-%06d", station, 25-len(ids)+1+i); id != want {
			t.Errorf("result %d is %s, want %s (newest kept, in order)", i, id, want)
		}
	}
	if len(ev) == 1 && !strings.Contains(string(ev[0].Payload), `"kind":"outbox_drop"`) {
		t.Errorf("unexpected event %s", ev[0].Payload)
	}
	loadSchemas(t).validateAll(t, msgs)
}

// TestReconnectReleasesMessageIDs: the packet identifiers of publishes a
// lost connection left unacknowledged are not carried into the next one.
// paho's own reconnect keeps them reserved for ever (it expects to resume
// them), so a link that drops often would use up the 65,535 identifiers;
// the client connects a fresh paho client each time instead, so every
// connection starts from identifier 1 however many publishes were lost
// before it. Acknowledgements are held back by the proxy, each connection
// is cut with a result in flight, and the result still arrives once they
// flow again.
func TestReconnectReleasesMessageIDs(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	proxy := mqtttest.StartProxy(t, b)
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/result"}})
	cfg := baseConfig(t, b)
	cfg.Broker = proxy.URL
	proxy.HoldAcks(true)
	c := startClient(t, cfg, newFakeControl())
	if err := c.Deliver(context.Background(), result(1)); err != nil {
		t.Fatal(err)
	}
	// A connection carries a SUBSCRIBE (commands), the online status and
	// the result: three identifiers.
	const cuts = 3
	for k := range cuts + 1 {
		deadline := time.Now().Add(15 * time.Second)
		for {
			ids := proxy.PacketIDs()
			if len(ids) > k && len(ids[k]) >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("connection %d: packet identifiers %v; want a SUBSCRIBE and two publishes", k+1, ids)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if k < cuts {
			proxy.Cut()
			proxy.Restore()
		}
	}
	proxy.HoldAcks(false)
	sub.WaitFor(15*time.Second, "the result held back on every connection", func(m []mqtttest.Message) bool { return len(m) >= 1 })
	ids := proxy.PacketIDs()
	for k, v := range ids {
		if v[0] != 1 {
			t.Errorf("connection %d starts from packet identifier %d, want 1 (identifiers of earlier connections kept: %v)", k+1, v[0], ids)
		}
	}
	t.Logf("packet identifiers per connection: %v", ids)
}

package mqtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

// TestCloseDrainsThenReturnsPromptly: Close publishes what the outbox
// holds and returns as soon as the outbox is empty (it waits for that, not
// for its context), then says goodbye.
func TestCloseDrainsThenReturnsPromptly(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/#"}})
	c, err := mqtt.New(mqtt.Options{Config: baseConfig(t, b), Station: station, Logger: testLogger(t), Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	sub.WaitFor(5*time.Second, "online status", hasStatus(mqtt.StateOnline, ""))
	const n = 50
	for i := 1; i <= n; i++ {
		if err := c.Deliver(context.Background(), result(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took > 10*time.Second {
		t.Errorf("Close took %s for %d results: it did not notice the outbox was empty", took, n)
	}
	if s := c.Stats(); s.PublishedResults != n || s.OutboxDepth != 0 {
		t.Errorf("after Close: %d results published, depth %d; want %d and 0", s.PublishedResults, s.OutboxDepth, n)
	}
	msgs := sub.WaitFor(5*time.Second, "all results and offline", func([]mqtttest.Message) bool {
		return uniqueResults(sub.Messages()) == n && hasStatus(mqtt.StateOffline, mqtt.ReasonShutdown)(sub.Messages())
	})
	checkInOrder(t, resultIDs(t, msgs), n)
	t.Logf("Close drained %d results in %s", n, took.Round(time.Millisecond))
}

package mqtt_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
	"github.com/inspectd/inspectd/io/mqtt/sparkplug"
)

// eventMessages returns the Event/Message of the NDATA events of kind.
func eventMessages(ms []spMsg, kind string) []string {
	var out []string
	for _, m := range ms {
		if k := m.metric(sparkplug.MetricEventKind); k != nil && k.GetStringValue() == kind {
			out = append(out, m.metric(sparkplug.MetricEventMessage).GetStringValue())
		}
	}
	return out
}

// lastActiveProduct returns Properties/Active Product of the newest
// DBIRTH or DDATA carrying it.
func lastActiveProduct(ms []spMsg) string {
	p := ""
	for _, m := range ms {
		if m.Type != sparkplug.DBIRTH && m.Type != sparkplug.DDATA {
			continue
		}
		if x := m.metric(sparkplug.MetricActiveProduct); x != nil {
			p = x.GetStringValue()
		}
	}
	return p
}

// TestSparkplugProductAndModelInstall: DCMD Device Control/Product selects
// the product with source sparkplug and DDATA announces it (also a switch
// made elsewhere); NCMD Node Control/Model Install runs the install with
// its progress and outcome as model_install events; malformed and refused
// commands are rejection events that change nothing.
func TestSparkplugProductAndModelInstall(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	h := newHost(t, b, false)
	ctl := newChangeoverHost(inspection.ProductSourceSparkplug)
	c := startSparkplug(t, spConfig(t, b), ctl, t.TempDir())
	ms := h.waitFor("DBIRTH", 10*time.Second, func(ms []spMsg) bool { return countType(ms, sparkplug.DBIRTH) == 1 })
	for _, m := range ms {
		switch m.Type {
		case sparkplug.NBIRTH:
			if x := m.metric(sparkplug.MetricModelInstall); x == nil || x.GetStringValue() != "" || x.GetDatatype() != 12 {
				t.Errorf("NBIRTH %s = %v, want an empty String", sparkplug.MetricModelInstall, x)
			}
		case sparkplug.DBIRTH:
			for _, name := range []string{sparkplug.MetricActiveProduct, sparkplug.MetricControlProduct} {
				if x := m.metric(name); x == nil || x.GetStringValue() != "gear" {
					t.Errorf("DBIRTH %s = %v, want gear", name, x)
				}
			}
		}
	}

	h.command(sparkplug.DCMD, cmd(t, strM(sparkplug.MetricControlProduct, "shaft")))
	h.waitFor("DDATA with product shaft", 10*time.Second, func(ms []spMsg) bool { return lastActiveProduct(ms) == "shaft" })
	ctl.cmu.Lock()
	if got := strings.Join(ctl.selected, " "); got != "shaft/sparkplug" {
		t.Errorf("selections %q, want shaft/sparkplug", got)
	}
	ctl.cmu.Unlock()

	// A switch made by another source (the daemon's product_switched
	// event): DDATA follows.
	ctl.cmu.Lock()
	ctl.active = "gear"
	ctl.cmu.Unlock()
	c.Event(inspection.Event{Severity: inspection.Info, Kind: inspection.EventProductSwitched, Message: "product gear"})
	h.waitFor("DDATA with product gear", 10*time.Second, func(ms []spMsg) bool { return lastActiveProduct(ms) == "gear" })

	// Install: progress and outcome as events.
	good := `{"url":"https://files.plant/gear.tar.gz","sha256":"` + testSHA + `","signature":"` + testSig + `","product":"gear","activate":true}`
	h.command(sparkplug.NCMD, cmd(t, strM(sparkplug.MetricModelInstall, good)))
	ms = h.waitFor("install outcome", 10*time.Second, func(ms []spMsg) bool {
		for _, msg := range eventMessages(ms, inspection.EventModelInstall) {
			if strings.HasPrefix(msg, "model install done") {
				return true
			}
		}
		return false
	})
	got := strings.Join(eventMessages(ms, inspection.EventModelInstall), " | ")
	want := "model install download (product gear): 0 of 1000 bytes | model install download (product gear): 1000 of 1000 bytes | " +
		"model install verify (product gear): hash and signature good | model install available (product gear) | " +
		"model install done: product gear, archive " + testSHA + ", bundle sha256:new, active (1500 ms)"
	if got != want {
		t.Errorf("model_install events\n%s\nwant\n%s", got, want)
	}
	ctl.cmu.Lock()
	if len(ctl.installs) != 1 || ctl.installs[0] != (inspection.ModelInstall{URL: "https://files.plant/gear.tar.gz", SHA256: testSHA, Signature: testSig, Product: "gear", Activate: true}) {
		t.Errorf("installs %+v", ctl.installs)
	}
	ctl.failWith = errors.New("signature by an untrusted key (key id 0123456789abcdef)")
	ctl.cmu.Unlock()
	h.command(sparkplug.NCMD, cmd(t, strM(sparkplug.MetricModelInstall, good)))
	h.waitFor("install failure", 10*time.Second, func(ms []spMsg) bool {
		for _, msg := range eventMessages(ms, inspection.EventModelInstall) {
			if msg == "model_install failed (the running models are untouched): signature by an untrusted key (key id 0123456789abcdef)" {
				return true
			}
		}
		return false
	})

	// Refused and malformed: one rejection event each, nothing changes.
	bad := []struct {
		mt      sparkplug.MessageType
		payload []byte
		want    string
	}{
		{sparkplug.DCMD, cmd(t, strM(sparkplug.MetricControlProduct, "nut")), `product "nut" not selected: product "nut": unknown product`},
		{sparkplug.DCMD, cmd(t, strM(sparkplug.MetricControlProduct, "a b")), `DCMD metric "Device Control/Product": "a b" contains " "`},
		{sparkplug.DCMD, cmd(t, strM(sparkplug.MetricControlProduct, "")), `DCMD metric "Device Control/Product": is empty`},
		{sparkplug.DCMD, cmd(t, dblM(sparkplug.MetricThresholdImage, 0.9), strM(sparkplug.MetricControlProduct, "nut")), `product "nut" not selected`},
		{sparkplug.DCMD, cmd(t, boolM(sparkplug.MetricControlProduct, true)), `DCMD metric "Device Control/Product": must be a String (the name of a [[product]]), got datatype Boolean`},
		{sparkplug.NCMD, cmd(t, strM(sparkplug.MetricModelInstall, strings.Replace(good, "https", "ftp", 1))), `NCMD metric "Node Control/Model Install": field url: "ftp://files.plant/gear.tar.gz": the scheme must be https`},
		{sparkplug.NCMD, cmd(t, strM(sparkplug.MetricModelInstall, `{"correlation_id":"1"}`)), `NCMD metric "Node Control/Model Install": field correlation_id: unknown for Node Control/Model Install; allowed: url, sha256, signature, product, activate, size`},
		{sparkplug.NCMD, cmd(t, strM(sparkplug.MetricModelInstall, "install please")), `NCMD metric "Node Control/Model Install": field payload: not a JSON object`},
		{sparkplug.NCMD, cmd(t, strM(sparkplug.MetricModelInstall, strings.Replace(good, testSig, "AAAA", 1)), boolM(sparkplug.MetricRebirth, true)), `field signature: is 3 bytes once decoded`},
	}
	for _, tc := range bad {
		h.command(tc.mt, tc.payload)
	}
	ms = h.waitFor("rejection events", 10*time.Second, func(ms []spMsg) bool {
		return len(eventMessages(ms, sparkplug.EventCommandRejected)) == len(bad)
	})
	msgs := eventMessages(ms, sparkplug.EventCommandRejected)
	for i, tc := range bad {
		if !strings.Contains(msgs[i], tc.want) {
			t.Errorf("rejection %d: event message %q does not contain %q", i, msgs[i], tc.want)
		}
	}
	if n := countType(ms, sparkplug.NBIRTH); n != 1 {
		t.Errorf("%d NBIRTHs: the rebirth of a rejected NCMD ran", n)
	}
	ctl.cmu.Lock()
	if len(ctl.installs) != 2 || len(ctl.selected) != 1 || ctl.active != "gear" {
		t.Errorf("after rejected commands: installs %d (want 2), selections %v, active %q", len(ctl.installs), ctl.selected, ctl.active)
	}
	ctl.cmu.Unlock()
	if st := ctl.Status(); st.Model.Threshold != 0.5 {
		t.Errorf("threshold %v: the DCMD whose product was refused changed it", st.Model.Threshold)
	}
	checkSession(t, h.msgs())
}

package mqtt_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/mqtt/mqtttest"
)

// changeoverHost is a fakeControl that also selects products and
// installs models (the daemon's optional interfaces of issue 26).
type changeoverHost struct {
	*fakeControl

	cmu      sync.Mutex
	active   string
	products map[string]int // name → code
	source   string         // the authoritative source
	selected []string       // "name/source" of every successful selection

	installs  []inspection.ModelInstall
	activates []string // "product/sha"
	rollbacks []string
	release   chan struct{} // an install waits for it when not nil
	entered   chan struct{} // an install signals it started
	failWith  error
}

var (
	_ inspection.ProductSelector = (*changeoverHost)(nil)
	_ inspection.ModelManager    = (*changeoverHost)(nil)
)

func newChangeoverHost(source string) *changeoverHost {
	return &changeoverHost{fakeControl: newFakeControl(), active: "gear", source: source,
		products: map[string]int{"gear": 1, "shaft": 2}}
}

func (h *changeoverHost) SelectProduct(name, source string) error {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	if source != h.source {
		return fmt.Errorf("product %q from %s refused: %w (changeover.source is %q)", name, source, inspection.ErrProductSource, h.source)
	}
	if _, ok := h.products[name]; !ok {
		return fmt.Errorf("product %q: %w (configured: gear, shaft)", name, inspection.ErrUnknownProduct)
	}
	h.active = name
	h.selected = append(h.selected, name+"/"+source)
	return nil
}

func (h *changeoverHost) SelectProductCode(code int, source string) error {
	h.cmu.Lock()
	var name string
	for n, c := range h.products {
		if c == code {
			name = n
		}
	}
	h.cmu.Unlock()
	if name == "" {
		return fmt.Errorf("product code %d: %w", code, inspection.ErrUnknownProduct)
	}
	return h.SelectProduct(name, source)
}

func (h *changeoverHost) Status() inspection.Status {
	st := h.fakeControl.Status()
	h.cmu.Lock()
	defer h.cmu.Unlock()
	st.Model.Product = h.active
	st.Products.Active = h.active
	return st
}

func (h *changeoverHost) InstallModel(ctx context.Context, req inspection.ModelInstall, progress func(inspection.ModelProgress)) (inspection.ModelOutcome, error) {
	h.cmu.Lock()
	h.installs = append(h.installs, req)
	release, entered, fail := h.release, h.entered, h.failWith
	h.cmu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	progress(inspection.ModelProgress{Stage: "download", Bytes: 0, Total: 1000})
	progress(inspection.ModelProgress{Stage: "download", Bytes: 500, Total: 1000}) // throttled
	progress(inspection.ModelProgress{Stage: "download", Bytes: 1000, Total: 1000})
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return inspection.ModelOutcome{}, ctx.Err()
		}
	}
	if fail != nil {
		return inspection.ModelOutcome{}, fail
	}
	progress(inspection.ModelProgress{Stage: "verify", Detail: "hash and signature good"})
	progress(inspection.ModelProgress{Stage: "available"})
	product := req.Product
	if product == "" {
		product = "gear"
	}
	state := "available"
	if req.Activate {
		state = "active"
	}
	return inspection.ModelOutcome{Product: product, ArchiveSHA256: req.SHA256, BundleHash: "sha256:new", State: state,
		Bytes: 1000, Duration: 1500 * time.Millisecond}, nil
}

func (h *changeoverHost) ActivateModel(ctx context.Context, product, sha string) (inspection.ModelOutcome, error) {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	h.activates = append(h.activates, product+"/"+sha)
	if sha == strings.Repeat("0", 64) {
		return inspection.ModelOutcome{}, errors.New("archive 0000… is not installed on this station")
	}
	return inspection.ModelOutcome{Product: "gear", ArchiveSHA256: sha, BundleHash: "sha256:new", State: "active", Previous: strings.Repeat("1", 64)}, nil
}

func (h *changeoverHost) RollbackModel(ctx context.Context, product string) (inspection.ModelOutcome, error) {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	h.rollbacks = append(h.rollbacks, product)
	if product == "shaft" {
		return inspection.ModelOutcome{}, errors.New("product shaft has no previous bundle")
	}
	return inspection.ModelOutcome{Product: "gear", ArchiveSHA256: strings.Repeat("1", 64), BundleHash: "sha256:old", State: "rolled_back"}, nil
}

var (
	testSHA = strings.Repeat("ab", 32)
	testSig = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 64)))
)

func installPayload(corr, more string) string {
	return `{"correlation_id":"` + corr + `","url":"https://files.plant/gear.tar.gz","sha256":"` + testSHA + `","signature":"` + testSig + `"` + more + `}`
}

// events returns the payloads of the events of kind on the event topic.
func eventsOf(msgs []mqtttest.Message, kind string) []inspection.Event {
	var out []inspection.Event
	for _, m := range msgs {
		var e inspection.Event
		if strings.HasSuffix(m.Topic, "/event") && json.Unmarshal(m.Payload, &e) == nil && e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestProductAndModelCommands: cmd/product and cmd/model_* on a host with
// product changeover and model rollout, through a real broker: the host
// is called with the right arguments and source, replies carry the
// outcome or the reason, install progress goes out as events, one model
// command runs at a time, a duplicate of a running install is not run
// twice, and bad requests change nothing.
func TestProductAndModelCommands(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/reply/#", "inspectd/+/status", "inspectd/+/event"}})
	h := newChangeoverHost(inspection.ProductSourceMQTT)
	startClient(t, baseConfig(t, b), h)
	sub.WaitFor(5*time.Second, "online", hasStatus(mqtt.StateOnline, ""))
	time.Sleep(200 * time.Millisecond) // the SUBSCRIBE follows the CONNACK

	// product: selected with source mqtt; unknown and refused selections
	// answer with the daemon's reason.
	r := ask(t, sub, "product", `{"correlation_id":"p1","product":"shaft"}`, "p1")
	if !r.OK || fmt.Sprint(r.Result) != "map[product:shaft]" {
		t.Errorf("product: reply %+v", r)
	}
	for _, tc := range []struct{ corr, payload, field, want string }{
		{"p2", `{"correlation_id":"p2","product":"nut"}`, "", `product "nut" not selected: product "nut": unknown product (configured: gear, shaft)`},
		{"p3", `{"correlation_id":"p3","product":"g/1"}`, "product", `field product: "g/1" contains "/"`},
		{"p4", `{"correlation_id":"p4"}`, "product", "field product: is required"},
	} {
		r := ask(t, sub, "product", tc.payload, tc.corr)
		if r.OK || r.Field != tc.field || !strings.HasPrefix(r.Error, tc.want) {
			t.Errorf("product %s: reply %+v; want field %q, error %q", tc.payload, r, tc.field, tc.want)
		}
	}
	h.cmu.Lock()
	if fmt.Sprint(h.selected) != "[shaft/mqtt]" || h.active != "shaft" {
		t.Errorf("selections %v, active %q; want [shaft/mqtt], shaft", h.selected, h.active)
	}
	h.source = inspection.ProductSourcePLC
	h.cmu.Unlock()
	if r := ask(t, sub, "product", `{"correlation_id":"p5","product":"gear"}`, "p5"); r.OK ||
		r.Error != `product "gear" not selected: product "gear" from mqtt refused: not the configured product source (changeover.source is "plc")` {
		t.Errorf("product from a source that is not authoritative: %+v", r)
	}

	// model_install: progress events (throttled within a stage, the last
	// download step kept), then the outcome in the reply.
	r = ask(t, sub, "model_install", installPayload("i1", `,"product":"gear","activate":true,"size":1000`), "i1")
	if !r.OK {
		t.Fatalf("model_install: %+v", r)
	}
	res, _ := r.Result.(map[string]any)
	if res["product"] != "gear" || res["sha256"] != testSHA || res["state"] != "active" || res["duration_ms"] != 1500.0 || res["bundle_hash"] != "sha256:new" {
		t.Errorf("model_install result %v", res)
	}
	sub.WaitFor(5*time.Second, "the last progress event", func(msgs []mqtttest.Message) bool {
		evs := eventsOf(msgs, inspection.EventModelInstall)
		return len(evs) > 0 && evs[len(evs)-1].Fields["stage"] == "available"
	})
	var stages []string
	for _, e := range eventsOf(sub.Messages(), inspection.EventModelInstall) {
		if e.Fields["correlation_id"] != "i1" || e.Fields["sha256"] != testSHA || e.Fields["product"] != "gear" || e.Station != station {
			t.Errorf("progress event %+v", e)
		}
		stages = append(stages, e.Fields["stage"]+":"+e.Fields["bytes"])
	}
	if got := strings.Join(stages, " "); got != "download:0 download:1000 verify: available:" {
		t.Errorf("progress events %q; want download:0 download:1000 verify: available:", got)
	}
	h.cmu.Lock()
	if len(h.installs) != 1 || h.installs[0] != (inspection.ModelInstall{URL: "https://files.plant/gear.tar.gz", SHA256: testSHA, Signature: testSig, Product: "gear", Activate: true, Size: 1000}) {
		t.Errorf("installs %+v", h.installs)
	}
	h.cmu.Unlock()

	// One model command at a time; a duplicate of the running install is
	// not run again and gets the one reply when it is done.
	h.cmu.Lock()
	h.release, h.entered = make(chan struct{}), make(chan struct{}, 1)
	h.cmu.Unlock()
	sub.Publish("inspectd/"+station+"/cmd/model_install", []byte(installPayload("i2", "")), false)
	<-h.entered
	sub.Publish("inspectd/"+station+"/cmd/model_install", []byte(installPayload("i2", "")), false)
	if r := ask(t, sub, "model_rollback", `{"correlation_id":"busy"}`, "busy"); r.OK || r.Error != "another model command is in progress; retry when its reply has come" {
		t.Errorf("rollback during an install: %+v", r)
	}
	if r := ask(t, sub, "status", `{"correlation_id":"st"}`, "st"); !r.OK {
		t.Errorf("status during an install: %+v", r)
	}
	close(h.release)
	if r := waitReply(t, sub, "model_install", "i2"); !r.OK {
		t.Errorf("install i2: %+v", r)
	}
	time.Sleep(300 * time.Millisecond)
	if n := countReplies(sub, "model_install", "i2"); n != 1 {
		t.Errorf("%d replies to install i2 sent twice while running; want 1", n)
	}
	h.cmu.Lock()
	if len(h.installs) != 2 || len(h.rollbacks) != 0 {
		t.Errorf("installs %d (want 2: the duplicate is not run), rollbacks %v (want none: refused as busy)", len(h.installs), h.rollbacks)
	}
	h.release, h.entered, h.failWith = nil, nil, errors.New("hash mismatch: the archive's SHA-256 is cd…, the command names ab…")
	h.cmu.Unlock()
	// Repeated after its reply: answered from the memo, not run again.
	if r := askAgain(t, sub, "model_install", installPayload("i2", ""), "i2"); !r.OK {
		t.Errorf("repeated install i2: %+v", r)
	}
	if r := ask(t, sub, "model_install", installPayload("i3", ""), "i3"); r.OK ||
		r.Error != "model_install failed (the running models are untouched): hash mismatch: the archive's SHA-256 is cd…, the command names ab…" {
		t.Errorf("failing install: %+v", r)
	}

	// model_activate and model_rollback.
	r = ask(t, sub, "model_activate", `{"correlation_id":"a1","sha256":"`+strings.ToUpper(testSHA)+`","product":"gear"}`, "a1")
	if res, _ := r.Result.(map[string]any); !r.OK || res["state"] != "active" || res["previous_sha256"] != strings.Repeat("1", 64) {
		t.Errorf("model_activate: %+v", r)
	}
	if r := ask(t, sub, "model_activate", `{"correlation_id":"a2","sha256":"`+strings.Repeat("0", 64)+`"}`, "a2"); r.OK ||
		r.Error != "model_activate failed (the running model stays): archive 0000… is not installed on this station" {
		t.Errorf("failing activate: %+v", r)
	}
	if r := ask(t, sub, "model_rollback", `{"correlation_id":"rb1"}`, "rb1"); !r.OK || r.Result.(map[string]any)["state"] != "rolled_back" {
		t.Errorf("model_rollback: %+v", r)
	}
	if r := ask(t, sub, "model_rollback", `{"correlation_id":"rb2","product":"shaft"}`, "rb2"); r.OK ||
		r.Error != "model_rollback failed (the running model stays): product shaft has no previous bundle" {
		t.Errorf("failing rollback: %+v", r)
	}

	// Bad requests are refused before anything runs.
	for i, tc := range []struct{ cmd, payload, field, want string }{
		{"model_install", installPayload("%s", `,"size":-5`), "size", "field size: -5 is negative"},
		{"model_install", strings.Replace(installPayload("%s", ""), "https", "file", 1), "url", `field url: "file://files.plant/gear.tar.gz": the scheme must be https`},
		{"model_install", strings.Replace(installPayload("%s", ""), testSig, "AAAA", 1), "signature", "field signature: is 3 bytes once decoded"},
		{"model_activate", `{"correlation_id":"%s","sha256":"xyz"}`, "sha256", `field sha256: "xyz" is not 64 hex digits`},
		{"model_rollback", `{"correlation_id":"%s","product":"a b"}`, "product", `field product: "a b" contains " "`},
	} {
		corr := fmt.Sprintf("bad%d", i)
		r := ask(t, sub, tc.cmd, fmt.Sprintf(tc.payload, corr), corr)
		if r.OK || r.Field != tc.field || !strings.HasPrefix(r.Error, tc.want) {
			t.Errorf("%s: reply %+v; want field %q, error %q", tc.cmd, r, tc.field, tc.want)
		}
	}
	h.cmu.Lock()
	if len(h.installs) != 3 || fmt.Sprint(h.activates) != "[gear/"+testSHA+" /"+strings.Repeat("0", 64)+"]" || fmt.Sprint(h.rollbacks) != "[ shaft]" {
		t.Errorf("host calls: installs %d, activates %v, rollbacks %q", len(h.installs), h.activates, h.rollbacks)
	}
	h.cmu.Unlock()
	loadSchemas(t).validateAll(t, sub.Messages())
}

// TestProductCommandsWithoutSupport: a host without product changeover or
// model rollout answers each command with the reason, and runs nothing.
func TestProductCommandsWithoutSupport(t *testing.T) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	sub := mqtttest.Subscribe(t, b, mqtttest.SubscriberOptions{Topics: []string{"inspectd/+/reply/#", "inspectd/+/status"}})
	startClient(t, baseConfig(t, b), newFakeControl())
	sub.WaitFor(5*time.Second, "online", hasStatus(mqtt.StateOnline, ""))
	time.Sleep(200 * time.Millisecond)
	for _, tc := range []struct{ cmd, payload, want string }{
		{"product", `{"correlation_id":"n1","product":"gear"}`, "product is not available on this station (its daemon has no product changeover)"},
		{"model_install", installPayload("n2", ""), "model_install is not available on this station (its daemon does not install models)"},
		{"model_activate", `{"correlation_id":"n3","sha256":"` + testSHA + `"}`, "model_activate is not available on this station (its daemon does not install models)"},
		{"model_rollback", `{"correlation_id":"n4"}`, "model_rollback is not available on this station (its daemon does not install models)"},
	} {
		var corr struct {
			ID string `json:"correlation_id"`
		}
		json.Unmarshal([]byte(tc.payload), &corr)
		if r := ask(t, sub, tc.cmd, tc.payload, corr.ID); r.OK || r.Error != tc.want {
			t.Errorf("%s: reply %+v; want error %q", tc.cmd, r, tc.want)
		}
	}
}

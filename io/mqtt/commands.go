package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/inspectd/inspectd/inspection"
)

// Command names, the last level of <prefix>/<station>/cmd/<name>.
const (
	CmdTrigger   = "trigger"
	CmdReload    = "reload"
	CmdThreshold = "threshold"
	CmdStatus    = "status"
	CmdPause     = "pause"
	CmdResume    = "resume"
	// CmdClearFault clears the outputs' latched faults (the GPIO FIFO
	// overflow, this output's damaged-outbox and lost-results notices)
	// after their cause is fixed.
	CmdClearFault = "clear_fault"
	// CmdProduct selects the active product (changeover; the host must
	// implement inspection.ProductSelector).
	CmdProduct = "product"
	// CmdModelInstall downloads, verifies and installs a signed bundle
	// archive; CmdModelActivate makes an installed one a product's model;
	// CmdModelRollback returns a product to its previous bundle (the host
	// must implement inspection.ModelManager).
	CmdModelInstall  = "model_install"
	CmdModelActivate = "model_activate"
	CmdModelRollback = "model_rollback"
)

// Command limits.
const (
	maxCorrelationID = 128
	maxPartID        = 128
	maxPayload       = 4096
	commandQueue     = 32
	rememberedIDs    = 256 // replies kept to answer repeated requests
	// ReloadTimeout bounds Control.Reload started by a command.
	ReloadTimeout = 2 * time.Minute
	// ModelInstallTimeout bounds a model_install when
	// Options.ModelInstallTimeout is 0: the whole download
	// (rollout.download_timeout, 10 min by default), verification, unpack
	// and the bundle's load and warm-up.
	ModelInstallTimeout = 20 * time.Minute
	// ModelActivateTimeout bounds model_activate and model_rollback (the
	// bundle's load and warm-up, and the swap between two parts).
	ModelActivateTimeout = 5 * time.Minute
	// maxURL bounds the url of model_install, in bytes.
	maxURL = 2048
	// maxProductName is the longest product name ([[product]] name).
	maxProductName = 64
	// progressEvery is the least time between two model_install progress
	// events of the same stage (stage changes are always reported).
	progressEvery = time.Second
)

// commandFields lists the fields each command accepts besides
// correlation_id.
var commandFields = map[string][]string{
	CmdTrigger:    {"part_id"},
	CmdReload:     nil,
	CmdThreshold:  {"image_threshold", "pixel_threshold"},
	CmdStatus:     nil,
	CmdPause:      nil,
	CmdResume:     nil,
	CmdClearFault: nil,
	CmdProduct:    {"product"},
	// modelInstallFields, as the NCMD Node Control/Model Install takes
	// them (without correlation_id).
	CmdModelInstall:  modelInstallFields,
	CmdModelActivate: {"sha256", "product"},
	CmdModelRollback: {"product"},
}

// modelInstallFields are the fields of a model_install request besides
// correlation_id.
var modelInstallFields = []string{"url", "sha256", "signature", "product", "activate", "size"}

// fieldError is a request problem attributed to one field.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return "field " + e.field + ": " + e.msg }

func fieldErr(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// request is a decoded, validated command.
type request struct {
	name          string
	correlationID string
	partID        string
	image, pixel  *float64
	// product is the product of product, model_activate and
	// model_rollback ("" = the default product for the model commands).
	product string
	sha256  string                  // model_activate
	install inspection.ModelInstall // model_install
}

// describe names what a request asks for besides its command and
// correlation id ("" when nothing): two requests with the same command and
// description are the same request.
func (r request) describe() string {
	var parts []string
	switch r.name {
	case CmdTrigger:
		if r.partID == "" {
			parts = append(parts, "no part_id")
		} else {
			parts = append(parts, fmt.Sprintf("part_id %q", r.partID))
		}
	case CmdThreshold:
		for _, f := range []struct {
			name string
			v    *float64
		}{{"image_threshold", r.image}, {"pixel_threshold", r.pixel}} {
			if f.v != nil {
				parts = append(parts, fmt.Sprintf("%s %g", f.name, *f.v))
			}
		}
	case CmdProduct:
		parts = append(parts, fmt.Sprintf("product %q", r.product))
	case CmdModelInstall:
		parts = append(parts, describeInstall(r.install))
	case CmdModelActivate:
		parts = append(parts, fmt.Sprintf("sha256 %s, product %q", r.sha256, r.product))
	case CmdModelRollback:
		parts = append(parts, fmt.Sprintf("product %q", r.product))
	}
	return strings.Join(parts, ", ")
}

// parseRequest validates a command payload completely before anything is
// executed: a bad request changes nothing.
func parseRequest(name string, payload []byte) (request, error) {
	req := request{name: name}
	allowed, known := commandFields[name]
	if len(payload) > maxPayload {
		return req, fieldErr("payload", "%d bytes is larger than %d", len(payload), maxPayload)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil || raw == nil {
		if err == nil {
			err = errors.New("null")
		}
		return req, fieldErr("payload", "not a JSON object (%v); send e.g. {\"correlation_id\":\"1\"}", err)
	}
	// The correlation id first, so that later errors can be correlated.
	if v, ok := raw["correlation_id"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return req, fieldErr("correlation_id", "must be a string")
		}
		req.correlationID = s
	}
	switch {
	case req.correlationID == "":
		return req, fieldErr("correlation_id", "is required (a non-empty string the reply echoes)")
	case len(req.correlationID) > maxCorrelationID:
		id := req.correlationID
		req.correlationID = id[:maxCorrelationID]
		return req, fieldErr("correlation_id", "is %d bytes long; at most %d are allowed", len(id), maxCorrelationID)
	}
	if !known {
		return req, fieldErr("command", "unknown command %q; use one of %s", name, strings.Join(commandNames(), ", "))
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k != "correlation_id" && !slices.Contains(allowed, k) {
			ok := append([]string{"correlation_id"}, allowed...)
			return req, fieldErr(k, "unknown for command %s; allowed: %s", name, strings.Join(ok, ", "))
		}
	}
	switch name {
	case CmdTrigger:
		if v, ok := raw["part_id"]; ok {
			if err := json.Unmarshal(v, &req.partID); err != nil {
				return req, fieldErr("part_id", "must be a string")
			}
			if err := checkPartID(req.partID); err != nil {
				return req, err
			}
		}
	case CmdThreshold:
		var err error
		if req.image, err = threshold(raw, "image_threshold"); err != nil {
			return req, err
		}
		if req.pixel, err = threshold(raw, "pixel_threshold"); err != nil {
			return req, err
		}
		if req.image == nil && req.pixel == nil {
			return req, fieldErr("image_threshold", "set image_threshold and/or pixel_threshold")
		}
	case CmdProduct:
		v, ok := raw["product"]
		if !ok {
			return req, fieldErr("product", "is required (the name of a [[product]] of the station)")
		}
		var err error
		if req.product, err = productName(v); err != nil {
			return req, err
		}
	case CmdModelInstall:
		var err error
		if req.install, err = modelInstall(raw); err != nil {
			return req, err
		}
	case CmdModelActivate:
		v, ok := raw["sha256"]
		if !ok {
			return req, fieldErr("sha256", "is required (the archive's SHA-256 as model_install named it)")
		}
		var err error
		if req.sha256, err = sha256Hex(v); err != nil {
			return req, err
		}
		if v, ok := raw["product"]; ok {
			if req.product, err = productName(v); err != nil {
				return req, err
			}
		}
	case CmdModelRollback:
		if v, ok := raw["product"]; ok {
			var err error
			if req.product, err = productName(v); err != nil {
				return req, err
			}
		}
	}
	return req, nil
}

func threshold(raw map[string]json.RawMessage, field string) (*float64, error) {
	v, ok := raw[field]
	if !ok {
		return nil, nil
	}
	var f float64
	if bytes.Equal(bytes.TrimSpace(v), []byte("null")) || json.Unmarshal(v, &f) != nil {
		return nil, fieldErr(field, "must be a number in (0, 1], got %s", truncate(string(v), 40))
	}
	if !(f > 0 && f <= 1) {
		return nil, fieldErr(field, "%g is out of range (0, 1]", f)
	}
	return &f, nil
}

func checkPartID(s string) error {
	switch {
	case len(s) > maxPartID:
		return fieldErr("part_id", "is %d bytes long; at most %d are allowed", len(s), maxPartID)
	case !utf8.ValidString(s):
		return fieldErr("part_id", "is not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fieldErr("part_id", "contains the non-printable character %U", r)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func commandNames() []string {
	names := make([]string, 0, len(commandFields))
	for n := range commandFields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// inbound is a command as received.
type inbound struct {
	name     string
	payload  []byte
	retained bool
}

// commandState is the JSON command machinery: a bounded queue handled by
// one goroutine (reload runs on its own), and the replies to recent
// requests so that a redelivered request (QoS 1 duplicate) is answered,
// not executed twice, and a different request under a used correlation id
// is refused rather than answered with the old reply.
type commandState struct {
	queue     chan inbound
	reloading atomic.Bool

	mu     sync.Mutex
	recent map[string]remembered
	order  []string

	// probe is the retained-command check in flight (retained.go).
	probeMu sync.Mutex
	probe   *retainProbe
	// probeOff is set when the check cannot work on the current
	// connection (cleared at every connect).
	probeOff atomic.Bool
}

// remembered is the reply to an executed request and what the request
// asked for (request.describe).
type remembered struct {
	what  string
	reply []byte
}

// memo says under which key a reply is remembered and what the request
// asked for; the zero memo remembers nothing.
type memo struct {
	key, what string
}

func (s *commandState) init() {
	s.queue = make(chan inbound, commandQueue)
	s.recent = make(map[string]remembered)
}

func (s *commandState) remembered(key string) (remembered, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recent[key]
	return r, ok
}

func (s *commandState) remember(m memo, reply []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recent[m.key]; !ok {
		s.order = append(s.order, m.key)
	}
	s.recent[m.key] = remembered{what: m.what, reply: reply}
	for len(s.order) > rememberedIDs {
		delete(s.recent, s.order[0])
		s.order = s.order[1:]
	}
}

// commandWorker executes queued commands until the client stops.
func (s *jsonSession) commandWorker() {
	for {
		select {
		case <-s.c.bg.Done():
			return
		case in := <-s.cmds.queue:
			s.handleCommand(in)
		}
	}
}

// onCommand is paho's message handler: it only queues (paho's router must
// not block).
func (s *jsonSession) onCommand(_ paho.Client, m paho.Message) {
	c := s.c
	name := strings.TrimPrefix(m.Topic(), c.topics.cmd)
	if m.Retained() && s.probing(m.Topic(), m.Payload()) {
		// The retained copy a check of ours asked for (retained.go): the
		// worker refuses the command it was checking.
		return
	}
	if len(m.Payload()) == 0 {
		// Someone cleared a retained command: nothing to do, no reply.
		c.log.Debug("empty command message ignored", "command", name)
		return
	}
	in := inbound{name: name, payload: append([]byte(nil), m.Payload()...), retained: m.Retained()}
	select {
	case s.cmds.queue <- in:
	default:
		c.commands.Add(1)
		c.commandErrors.Add(1)
		c.log.Warn("command queue full; command refused", "command", name)
		req, _ := parseRequest(name, in.payload)
		s.sendReply(name, Reply{CorrelationID: req.correlationID, Command: name,
			Error: "busy: too many commands queued; retry later"}, memo{})
	}
}

// handleCommand validates and executes one command and replies.
func (s *jsonSession) handleCommand(in inbound) {
	c := s.c
	c.commands.Add(1)
	if in.retained {
		// A retained command would run again on every reconnect.
		req, _ := parseRequest(in.name, in.payload)
		s.fail(in.name, req.correlationID, memo{}, s.retainedError(in.name))
		return
	}
	req, err := parseRequest(in.name, in.payload)
	if err != nil {
		s.fail(in.name, req.correlationID, memo{}, err)
		return
	}
	key := memo{key: in.name + "\x00" + req.correlationID, what: req.describe()}
	if prev, ok := s.cmds.remembered(key.key); ok {
		if prev.what != key.what {
			s.fail(in.name, req.correlationID, memo{}, fieldErr("correlation_id",
				"%q was already used for a different %s request (%s); this request (%s) was not executed: use a fresh correlation_id per request",
				req.correlationID, in.name, orNothing(prev.what), orNothing(key.what)))
			return
		}
		c.log.Info("repeated command answered without running it again", "command", in.name, "correlation_id", req.correlationID)
		s.publishReply(in.name, prev.reply)
		return
	}
	host := c.host
	if host == nil {
		s.fail(in.name, req.correlationID, key, errors.New("commands are not available in this process"))
		return
	}
	// MQTT 3.1.1 clears the retain flag of a message published while we
	// are subscribed: ask the broker whether it holds this command as
	// retained before running it (retained.go).
	if held, err := s.heldRetained(c.topics.cmd+in.name, in.payload); held {
		s.fail(in.name, req.correlationID, memo{}, s.retainedError(in.name))
		return
	} else if err != nil {
		c.log.Warn("cannot check whether commands are retained on this connection; running them unchecked until the next connect",
			"error", err, "command", in.name)
	}
	switch in.name {
	case CmdTrigger:
		if err := host.Trigger(req.partID, inspection.TriggerMQTT); err != nil {
			s.fail(in.name, req.correlationID, key, fmt.Errorf("trigger refused: %w", err))
			return
		}
		res := map[string]any{"accepted": true}
		if req.partID != "" {
			res["part_id"] = req.partID
		}
		s.succeed(in.name, req.correlationID, key, res)
	case CmdThreshold:
		if err := host.SetThresholds(req.image, req.pixel); err != nil {
			s.fail(in.name, req.correlationID, key, err)
			return
		}
		m := host.Status().Model
		c.log.Info("thresholds changed by command (runtime only)", "image", m.Threshold, "pixel", m.PixelThreshold)
		s.succeed(in.name, req.correlationID, key, ThresholdInfo{Image: m.Threshold, Pixel: m.PixelThreshold, Source: m.ThresholdFrom})
	case CmdStatus:
		s.succeed(in.name, req.correlationID, key, host.Status())
	case CmdPause:
		host.Pause()
		s.succeed(in.name, req.correlationID, key, map[string]any{"paused": true})
	case CmdResume:
		host.Resume()
		s.succeed(in.name, req.correlationID, key, map[string]any{"paused": false})
	case CmdClearFault:
		if err := host.ClearFaults(); err != nil {
			s.fail(in.name, req.correlationID, key, fmt.Errorf("clear_fault: %w", err))
			return
		}
		problems := host.Status().Problems
		if problems == nil {
			problems = []string{}
		}
		c.log.Info("latched faults cleared by command", "problems_left", len(problems))
		s.succeed(in.name, req.correlationID, key, map[string]any{"cleared": true, "problems": problems})
	case CmdProduct:
		sel, err := c.selector(in.name)
		if err != nil {
			s.fail(in.name, req.correlationID, key, err)
			return
		}
		if err := sel.SelectProduct(req.product, inspection.ProductSourceMQTT); err != nil {
			s.fail(in.name, req.correlationID, key, fmt.Errorf("product %q not selected: %w", req.product, err))
			return
		}
		c.log.Info("product selected by command", "product", req.product, "correlation_id", req.correlationID)
		s.succeed(in.name, req.correlationID, key, map[string]any{"product": req.product})
	case CmdModelInstall, CmdModelActivate, CmdModelRollback:
		mm, err := c.modelManager(in.name)
		if err != nil {
			s.fail(in.name, req.correlationID, key, err)
			return
		}
		name, corr := in.name, req.correlationID
		job := modelJob{cmd: name, corrID: corr, req: req, done: func(out inspection.ModelOutcome, err error) {
			if err != nil {
				s.fail(name, corr, key, modelFailure(name, err))
				return
			}
			c.log.Info("model command done", "command", name, "correlation_id", corr, "product", out.Product,
				"sha256", out.ArchiveSHA256, "state", out.State, "duration_ms", out.DurationMs)
			s.succeed(name, corr, key, out)
		}}
		started, err := c.models.start(c, mm, key.key+"\x00"+key.what, job, c.modelTimeout(name))
		switch {
		case err != nil:
			// Not remembered: the same request may be sent again later.
			s.fail(in.name, req.correlationID, memo{}, err)
		case !started:
			c.log.Info("repeated model command ignored: it is running; its reply follows when it is done",
				"command", in.name, "correlation_id", req.correlationID)
		}
	case CmdReload:
		if !s.cmds.reloading.CompareAndSwap(false, true) {
			s.fail(in.name, req.correlationID, memo{}, errors.New("a reload is already in progress"))
			return
		}
		started := c.routines.Go(func() {
			defer s.cmds.reloading.Store(false)
			ctx, cancel := context.WithTimeout(c.bg, ReloadTimeout)
			defer cancel()
			start := time.Now()
			if err := host.Reload(ctx); err != nil {
				s.fail(in.name, req.correlationID, key, fmt.Errorf("reload failed (the previous configuration stays): %w", err))
				return
			}
			m := host.Status().Model
			s.succeed(in.name, req.correlationID, key, map[string]any{
				"duration_ms": float64(time.Since(start).Microseconds()) / 1000,
				"product":     m.Product, "bundle_hash": m.BundleHash,
			})
		})
		if !started {
			s.cmds.reloading.Store(false)
			s.fail(in.name, req.correlationID, memo{}, errors.New("the MQTT client is stopping"))
		}
	}
}

func (s *jsonSession) succeed(name, corrID string, key memo, result any) {
	s.sendReply(name, Reply{CorrelationID: corrID, Command: name, OK: true, Result: result}, key)
}

func (s *jsonSession) fail(name, corrID string, key memo, err error) {
	s.c.commandErrors.Add(1)
	r := Reply{CorrelationID: corrID, Command: name, Error: err.Error()}
	var fe *fieldError
	if errors.As(err, &fe) {
		r.Field = fe.field
	}
	s.c.log.Warn("command failed", "command", name, "correlation_id", corrID, "error", err)
	s.sendReply(name, r, key)
}

// sendReply publishes a reply on <base>/reply/<name> (an unknown command's
// name is used as is: it cannot contain wildcards, MQTT forbids them in
// topic names). A non-zero key remembers it for repeated requests.
func (s *jsonSession) sendReply(name string, r Reply, key memo) {
	r.Time = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		s.c.log.Error("cannot encode reply", "command", name, "error", err)
		return
	}
	if key.key != "" {
		s.cmds.remember(key, b)
	}
	s.publishReply(name, b)
}

func orNothing(s string) string {
	if s == "" {
		return "no fields"
	}
	return s
}

func (s *jsonSession) publishReply(name string, b []byte) {
	c := s.c
	tok := c.client().Publish(c.topics.reply+name, c.qos, false, b)
	c.watch(c.log.With("command", name).Warn, "reply", tok)
}

package mqtt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// This file holds what the product and model commands share between the
// JSON commands (cmd/product, cmd/model_*) and the Sparkplug commands
// (DCMD Device Control/Product, NCMD Node Control/Model Install): strict
// validation of their fields, and the execution of an install, activation
// or rollback in the background with its progress as events.

// signatureBytes is the length of an ed25519 signature.
const signatureBytes = 64

// checkProductName checks a product name as [[product]] names are made:
// 1-64 of [A-Za-z0-9_.-].
func checkProductName(s string) error {
	if s == "" || len(s) > maxProductName {
		return fmt.Errorf("%q must be 1-%d characters of A-Z a-z 0-9 _ . -", truncate(s, 80), maxProductName)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("%q contains %q; a product name is 1-%d characters of A-Z a-z 0-9 _ . -", truncate(s, 80), string(c), maxProductName)
		}
	}
	return nil
}

// productName decodes and checks the product field.
func productName(v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return "", fieldErr("product", "must be a string (a [[product]] name)")
	}
	if err := checkProductName(s); err != nil {
		return "", fieldErr("product", "%v", err)
	}
	return s, nil
}

// sha256Hex decodes and checks the sha256 field: 64 hex digits, returned
// in lower case.
func sha256Hex(v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return "", fieldErr("sha256", "must be a string of 64 hex digits (the archive's SHA-256, as inspectd sign prints it)")
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", fieldErr("sha256", "%q is not 64 hex digits (the archive's SHA-256, as inspectd sign prints it)", truncate(s, 80))
	}
	return strings.ToLower(s), nil
}

// modelInstall decodes and checks the fields of a model_install request
// (the caller has refused unknown fields).
func modelInstall(raw map[string]json.RawMessage) (inspection.ModelInstall, error) {
	var req inspection.ModelInstall
	str := func(field, what string) (string, error) {
		v, ok := raw[field]
		if !ok {
			return "", fieldErr(field, "is required (%s)", what)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return "", fieldErr(field, "must be a string (%s)", what)
		}
		return s, nil
	}
	var err error
	if req.URL, err = str("url", "the http(s) URL of the bundle archive"); err != nil {
		return req, err
	}
	if err := checkBundleURL(req.URL); err != nil {
		return req, err
	}
	v, ok := raw["sha256"]
	if !ok {
		return req, fieldErr("sha256", "is required (the archive's SHA-256, as inspectd sign prints it)")
	}
	if req.SHA256, err = sha256Hex(v); err != nil {
		return req, err
	}
	if req.Signature, err = str("signature", "the base64 ed25519 signature inspectd sign prints"); err != nil {
		return req, err
	}
	if sig, err := base64.StdEncoding.DecodeString(req.Signature); err != nil || len(sig) != signatureBytes {
		what := "not standard base64"
		if err == nil {
			what = fmt.Sprintf("%d bytes once decoded", len(sig))
		}
		return req, fieldErr("signature", "is %s; want the base64 of a %d-byte ed25519 signature (inspectd sign prints it)", what, signatureBytes)
	}
	if v, ok := raw["product"]; ok {
		if req.Product, err = productName(v); err != nil {
			return req, err
		}
	}
	if v, ok := raw["activate"]; ok {
		if err := json.Unmarshal(v, &req.Activate); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return req, fieldErr("activate", "must be true or false, got %s", truncate(string(v), 40))
		}
	}
	if v, ok := raw["size"]; ok {
		if err := json.Unmarshal(v, &req.Size); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return req, fieldErr("size", "must be a whole number of bytes, got %s", truncate(string(v), 40))
		}
		if req.Size < 0 {
			return req, fieldErr("size", "%d is negative; give the archive's size in bytes, or leave it out", req.Size)
		}
	}
	return req, nil
}

// checkBundleURL checks the url of model_install: http or https, a host,
// no credentials (the command reaches every subscriber of the topic), at
// most maxURL bytes. Whether plain http is allowed is the station's
// decision (rollout.allow_http).
func checkBundleURL(s string) error {
	if len(s) > maxURL {
		return fieldErr("url", "is %d bytes long; at most %d are allowed", len(s), maxURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fieldErr("url", "cannot be parsed: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fieldErr("url", "%q: the scheme must be https (or http where rollout.allow_http is set), got %q", truncate(s, 80), u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return fieldErr("url", "%q has no host", truncate(s, 80))
	case u.User != nil:
		return fieldErr("url", "carries credentials; they would reach every subscriber of the command topic and the logs: serve the archive without them")
	}
	return nil
}

// ParseModelInstall validates a model_install request without its
// correlation_id: the String of the Sparkplug NCMD Node Control/Model
// Install. It checks exactly what the JSON command checks.
func ParseModelInstall(payload []byte) (inspection.ModelInstall, error) {
	if len(payload) > maxPayload {
		return inspection.ModelInstall{}, fieldErr("payload", "%d bytes is larger than %d", len(payload), maxPayload)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil || raw == nil {
		if err == nil {
			err = errors.New("null")
		}
		return inspection.ModelInstall{}, fieldErr("payload", `not a JSON object (%v); write e.g. {"url":"https://…","sha256":"…","signature":"…"}`, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(modelInstallFields, k) {
			return inspection.ModelInstall{}, fieldErr(k, "unknown for Node Control/Model Install; allowed: %s", strings.Join(modelInstallFields, ", "))
		}
	}
	return modelInstall(raw)
}

// describeInstall names what an install asks for (request.describe).
func describeInstall(m inspection.ModelInstall) string {
	d := fmt.Sprintf("url %q, sha256 %s, product %q, activate %v", m.URL, m.SHA256, m.Product, m.Activate)
	if m.Size > 0 {
		d += ", size " + strconv.FormatInt(m.Size, 10)
	}
	return d + ", signature " + m.Signature
}

// notAvailable is the error of a command whose interface the host lacks.
func notAvailable(cmd, what string) error {
	return fmt.Errorf("%s is not available on this station (its daemon %s)", cmd, what)
}

// selector returns the host's product selection, or the error that says
// why there is none.
func (c *Client) selector(cmd string) (inspection.ProductSelector, error) {
	if c.host == nil {
		return nil, errors.New("commands are not available in this process")
	}
	sel, ok := c.host.(inspection.ProductSelector)
	if !ok {
		return nil, notAvailable(cmd, "has no product changeover")
	}
	return sel, nil
}

// modelManager returns the host's model rollout, or the error that says
// why there is none.
func (c *Client) modelManager(cmd string) (inspection.ModelManager, error) {
	if c.host == nil {
		return nil, errors.New("commands are not available in this process")
	}
	mm, ok := c.host.(inspection.ModelManager)
	if !ok {
		return nil, notAvailable(cmd, "does not install models")
	}
	return mm, nil
}

// modelJob is one model command for runModel: what to call, for which
// request, and how to report.
type modelJob struct {
	cmd    string // CmdModelInstall, CmdModelActivate or CmdModelRollback
	corrID string // "" for a Sparkplug command
	req    request
	// done receives the outcome or the error, on the job's goroutine.
	done func(inspection.ModelOutcome, error)
}

// modelRunner runs model commands one at a time, each on its own
// goroutine of the client (c.routines), bounded by a timeout and by
// Close.
type modelRunner struct {
	mu      sync.Mutex
	running string // what the job in progress is (job key), "" when none
}

// errModelBusy: another model command is running.
var errModelBusy = errors.New("another model command is in progress; retry when its reply has come")

// start runs job in the background; it returns at once. key names the
// request (command, correlation id and what it asks): a repeat of the job
// in progress (a QoS 1 duplicate) returns (false, nil) and is not run
// again; any other request while a job runs returns errModelBusy.
func (m *modelRunner) start(c *Client, mm inspection.ModelManager, key string, job modelJob, timeout time.Duration) (bool, error) {
	m.mu.Lock()
	switch {
	case m.running == key:
		m.mu.Unlock()
		return false, nil
	case m.running != "":
		m.mu.Unlock()
		return false, errModelBusy
	}
	m.running = key
	m.mu.Unlock()
	release := func() {
		m.mu.Lock()
		m.running = ""
		m.mu.Unlock()
	}
	started := c.routines.Go(func() {
		ctx, cancel := context.WithTimeout(c.bg, timeout)
		defer cancel()
		out, err := runModel(ctx, c, mm, job)
		if err != nil && ctx.Err() != nil && c.bg.Err() == nil {
			err = fmt.Errorf("%w (timed out after %s)", err, timeout)
		}
		// Free the runner before the reply goes out, so that a command
		// sent on receipt of the reply is not refused as busy.
		release()
		job.done(out, err)
	})
	if !started {
		release()
		return false, errors.New("the MQTT client is stopping")
	}
	return true, nil
}

// runModel calls the host for job; an install's progress becomes events.
func runModel(ctx context.Context, c *Client, mm inspection.ModelManager, job modelJob) (inspection.ModelOutcome, error) {
	start := time.Now()
	var (
		out inspection.ModelOutcome
		err error
	)
	switch job.cmd {
	case CmdModelInstall:
		p := &progressEvents{c: c, corrID: job.corrID, req: job.req.install}
		out, err = mm.InstallModel(ctx, job.req.install, p.report)
	case CmdModelActivate:
		out, err = mm.ActivateModel(ctx, job.req.product, job.req.sha256)
	case CmdModelRollback:
		out, err = mm.RollbackModel(ctx, job.req.product)
	default:
		err = fmt.Errorf("%s is not a model command", job.cmd)
	}
	if err == nil && out.DurationMs == 0 {
		d := out.Duration
		if d == 0 {
			d = time.Since(start)
		}
		out.DurationMs = float64(d.Microseconds()) / 1000
	}
	return out, err
}

// modelFailure words the error of a failed model command.
func modelFailure(cmd string, err error) error {
	switch cmd {
	case CmdModelInstall:
		return fmt.Errorf("model_install failed (the running models are untouched): %w", err)
	case CmdModelActivate:
		return fmt.Errorf("model_activate failed (the running model stays): %w", err)
	}
	return fmt.Errorf("model_rollback failed (the running model stays): %w", err)
}

// progressEvents turns an install's progress into events of kind
// model_install on the client's event path: every change of stage, and
// within a stage at most one per progressEvery (the last of a download,
// bytes = total, always).
type progressEvents struct {
	c      *Client
	corrID string
	req    inspection.ModelInstall

	mu    sync.Mutex
	stage string
	at    time.Time
}

func (p *progressEvents) report(pr inspection.ModelProgress) {
	now := time.Now()
	p.mu.Lock()
	same := pr.Stage == p.stage
	if same && now.Sub(p.at) < progressEvery && !(pr.Total > 0 && pr.Bytes == pr.Total) {
		p.mu.Unlock()
		return
	}
	p.stage, p.at = pr.Stage, now
	p.mu.Unlock()
	msg := "model install " + pr.Stage
	if p.req.Product != "" {
		msg += " (product " + p.req.Product + ")"
	}
	switch {
	case pr.Total > 0:
		msg += fmt.Sprintf(": %d of %d bytes", pr.Bytes, pr.Total)
	case pr.Bytes > 0:
		msg += fmt.Sprintf(": %d bytes", pr.Bytes)
	}
	if pr.Detail != "" {
		msg += ": " + pr.Detail
	}
	f := map[string]string{"stage": pr.Stage, "sha256": p.req.SHA256}
	if p.corrID != "" {
		f["correlation_id"] = p.corrID
	}
	if p.req.Product != "" {
		f["product"] = p.req.Product
	}
	if pr.Bytes > 0 || pr.Total > 0 {
		f["bytes"] = strconv.FormatInt(pr.Bytes, 10)
	}
	if pr.Total > 0 {
		f["total"] = strconv.FormatInt(pr.Total, 10)
	}
	if pr.Detail != "" {
		f["detail"] = pr.Detail
	}
	p.c.Event(inspection.Event{Time: now, Severity: inspection.Info, Kind: inspection.EventModelInstall, Message: msg, Fields: f})
}

// modelTimeout is the bound of a model command.
func (c *Client) modelTimeout(cmd string) time.Duration {
	if cmd == CmdModelInstall {
		return c.installTimeout
	}
	return ModelActivateTimeout
}

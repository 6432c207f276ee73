package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/inspectd/inspectd/inspection"
)

// Fleet subcommands: each is one MQTT JSON command sent to every station
// (docs/mqtt.md, <prefix>/<station>/cmd/<name>).
const (
	fleetInstall  = "install"  // cmd/model_install
	fleetActivate = "activate" // cmd/model_activate
	fleetRollback = "rollback" // cmd/model_rollback
)

// fleetCommand maps a fleet subcommand to the station's command name.
var fleetCommand = map[string]string{
	fleetInstall:  "model_install",
	fleetActivate: "model_activate",
	fleetRollback: "model_rollback",
}

const fleetUsage = `fleet install|activate|rollback --broker URL (--stations a,b | --stations-file F) [flags]

Sends a model command to many stations over MQTT and waits for every reply:
  install   cmd/model_install: each station downloads the signed bundle archive, checks
            its SHA-256 and signature, unpacks and verifies it (full bundle load and a
            warm-up) and makes it available; --activate also makes it the product's model.
            Needs --url, --sha256 and --signature, or --sig FILE.sig (inspectd sign).
  activate  cmd/model_activate: makes the installed archive --sha256 the model.
  rollback  cmd/model_rollback: makes the product's previous bundle its model again.
Prints one line per station (outcome, time, bundle hash or the reason) and a summary
with the total time. A station that is offline when the command is sent never gets it
(commands are not queued): it is reported as offline or as no reply.
Exit status: 0 every station succeeded, 1 any failed or did not reply, 2 bad usage.`

// fleetDefaults are the reply timeouts: an install downloads and warms up
// a bundle; activation and rollback only swap loaded models.
var fleetDefaults = map[string]time.Duration{
	fleetInstall:  10 * time.Minute,
	fleetActivate: 2 * time.Minute,
	fleetRollback: 2 * time.Minute,
}

// fleetOptions is a parsed fleet command line.
type fleetOptions struct {
	sub, command string
	broker       string
	prefix       string
	stations     []string
	timeout      time.Duration
	verbose      bool
	clientID     string
	username     string
	passwordFile string
	caFile       string
	certFile     string
	keyFile      string
	// request fields (only the sub-command's are sent)
	url, sha256, signature, product string
	activate                        bool
	size                            int64
}

// productName is the [[product]] name rule (config).
var productName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func runFleet(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(s.stderr, "Usage: inspectd %s\n", fleetUsage)
		return usageErr("fleet: name a subcommand: install, activate or rollback")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(s.stdout, "Usage: inspectd %s\n", fleetUsage)
		return nil
	}
	o, done, err := parseFleet(s, args[0], args[1:])
	if done || err != nil {
		return err
	}
	return o.run(ctx, s)
}

// parseFleet parses the flags of one fleet subcommand.
func parseFleet(s streams, sub string, args []string) (o fleetOptions, done bool, err error) {
	cmdName, ok := fleetCommand[sub]
	if !ok {
		return o, true, usageErr("fleet: unknown subcommand %q; use install, activate or rollback", sub)
	}
	o.sub, o.command = sub, cmdName
	fs := newFlagSet(s, "fleet "+sub, fleetUsage)
	fs.StringVar(&o.broker, "broker", "", "MQTT broker `URL`: tcp://host:1883, ssl://host:8883 (required)")
	fs.StringVar(&o.prefix, "prefix", "inspectd", "the stations' mqtt.topic_prefix")
	stations := fs.String("stations", "", "comma-separated station `ids` (station.id)")
	stationsFile := fs.String("stations-file", "", "`file` with one station id per line (# comments, blank lines ignored)")
	fs.DurationVar(&o.timeout, "timeout", fleetDefaults[sub], "how long to wait for every reply")
	fs.BoolVar(&o.verbose, "v", false, "print progress events and replies as they arrive (to standard error)")
	fs.StringVar(&o.clientID, "client-id", "", "MQTT client id (default inspectd-fleet-<host>-<pid>)")
	fs.StringVar(&o.username, "username", "", "MQTT user name")
	fs.StringVar(&o.passwordFile, "password-file", "", "`file` whose first line is the MQTT password")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM `file` of the CA that signed the broker's certificate (ssl:// only)")
	fs.StringVar(&o.certFile, "cert-file", "", "client certificate `file` (PEM)")
	fs.StringVar(&o.keyFile, "key-file", "", "client key `file` (PEM)")
	fs.StringVar(&o.product, "product", "", "the [[product]] (\"\": the bundle's product, or the station's only product)")
	var sigFile string
	switch sub {
	case fleetInstall:
		fs.StringVar(&o.url, "url", "", "where the stations download the archive (https://, or http:// where rollout.allow_http)")
		fs.StringVar(&o.sha256, "sha256", "", "hex SHA-256 of the archive")
		fs.StringVar(&o.signature, "signature", "", "base64 ed25519 signature of the archive (inspectd sign)")
		fs.StringVar(&sigFile, "sig", "", "`FILE.sig` written by inspectd sign (url, sha256, signature, size)")
		fs.BoolVar(&o.activate, "activate", false, "activate the bundle once installed (between two parts)")
		fs.Int64Var(&o.size, "size", 0, "archive size in bytes (0: from --sig, or unknown)")
	case fleetActivate:
		fs.StringVar(&o.sha256, "sha256", "", "hex SHA-256 of the installed archive to activate (required)")
	}
	if done, err := parseFlags(fs, s, args); done {
		return o, true, err
	}
	if err := noArgs(fs); err != nil {
		return o, true, err
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if u, err := url.Parse(o.broker); o.broker == "" {
		bad("--broker is required (e.g. tcp://broker:1883)")
	} else if err != nil || u.Host == "" || u.Scheme == "" {
		bad("--broker %q is not a broker URL (e.g. tcp://broker:1883 or ssl://broker:8883)", o.broker)
	}
	if o.prefix == "" || strings.ContainsAny(o.prefix, "+#") || strings.HasPrefix(o.prefix, "/") || strings.HasSuffix(o.prefix, "/") {
		bad("--prefix %q: use a non-empty topic path without wildcards (+, #) or leading/trailing '/'", o.prefix)
	}
	switch {
	case *stations != "" && *stationsFile != "":
		bad("give --stations or --stations-file, not both")
	case *stations != "":
		o.stations, err = parseStations(strings.Split(*stations, ","), "--stations")
	case *stationsFile != "":
		o.stations, err = readStationsFile(*stationsFile)
	default:
		bad("name the stations: --stations st01,st02 or --stations-file FILE")
	}
	if err != nil {
		bad("%v", err)
	}
	if o.timeout <= 0 {
		bad("--timeout %s must be positive", o.timeout)
	}
	if o.product != "" && !productName.MatchString(o.product) {
		bad("--product %q: a product name is 1-64 of A-Z a-z 0-9 _ . -", o.product)
	}
	if sub == fleetInstall {
		if sigFile != "" {
			if o.sha256 != "" || o.signature != "" {
				bad("give --sig FILE.sig or --sha256 and --signature, not both")
			} else if err := o.readSig(sigFile); err != nil {
				bad("%v", err)
			}
		}
		if o.url == "" {
			bad("--url is required (where the stations download the archive; inspectd sign leaves the url empty)")
		} else if u, err := url.Parse(o.url); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("--url %q: want an https:// (or http://) URL", o.url)
		}
		if o.signature == "" {
			bad("--signature is required (or --sig FILE.sig)")
		} else if b, err := base64.StdEncoding.DecodeString(o.signature); err != nil || len(b) != 64 {
			bad("--signature: want the standard base64 of a 64-byte ed25519 signature (inspectd sign)")
		}
		if o.size < 0 {
			bad("--size %d must be 0 or more", o.size)
		}
	}
	if sub == fleetInstall || sub == fleetActivate {
		o.sha256 = strings.ToLower(o.sha256)
		if o.sha256 == "" {
			bad("--sha256 is required (hex SHA-256 of the archive)")
		} else if b, err := hex.DecodeString(o.sha256); err != nil || len(b) != 32 {
			bad("--sha256 %q: want 64 hex digits", o.sha256)
		}
	}
	if (o.certFile == "") != (o.keyFile == "") {
		bad("--cert-file and --key-file go together")
	}
	if len(errs) > 0 {
		return o, true, usageErr("fleet %s: %s", sub, strings.Join(errs, "; "))
	}
	if o.clientID == "" {
		host, _ := os.Hostname()
		o.clientID = fmt.Sprintf("inspectd-fleet-%s-%d", host, os.Getpid())
	}
	return o, false, nil
}

// readSig reads what `inspectd sign` wrote: url, sha256, signature, size.
func (o *fleetOptions) readSig(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--sig: %w", err)
	}
	var sig struct {
		URL       string `json:"url"`
		SHA256    string `json:"sha256"`
		Signature string `json:"signature"`
		Size      int64  `json:"size"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sig); err != nil {
		return fmt.Errorf("--sig %s: not the JSON inspectd sign writes ({\"url\",\"sha256\",\"signature\",\"size\"}): %v", path, err)
	}
	o.sha256, o.signature = sig.SHA256, sig.Signature
	if o.url == "" {
		o.url = sig.URL
	}
	if o.size == 0 {
		o.size = sig.Size
	}
	return nil
}

// parseStations checks station ids: non-empty, no MQTT wildcards or
// slashes, no white space, no duplicates.
func parseStations(ids []string, where string) ([]string, error) {
	var out []string
	for i, id := range ids {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if strings.ContainsAny(id, "+#/") || strings.IndexFunc(id, unicode.IsSpace) >= 0 || len(id) > 64 {
			return nil, fmt.Errorf("%s: station id %q (entry %d) must be 1-64 characters without '+', '#', '/' or spaces", where, id, i+1)
		}
		if slices.Contains(out, id) {
			return nil, fmt.Errorf("%s: station %q is listed twice", where, id)
		}
		out = append(out, id)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no station ids", where)
	}
	return out, nil
}

func readStationsFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--stations-file: %w", err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		if i := strings.IndexByte(t, '#'); i >= 0 {
			t = t[:i]
		}
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if _, err := parseStations([]string{t}, fmt.Sprintf("%s:%d", path, line)); err != nil {
			return nil, err
		}
		ids = append(ids, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--stations-file: %w", err)
	}
	return parseStations(ids, "--stations-file "+path)
}

// tlsConfig loads the broker CA and the client certificate.
func (o fleetOptions) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", o.caFile)
		}
		tc.RootCAs = pool
	}
	if o.certFile != "" {
		pair, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// payload is the JSON request sent to station (only the fields of the
// subcommand; a station refuses unknown fields).
func (o fleetOptions) payload(corrID string) []byte {
	req := map[string]any{"correlation_id": corrID}
	if o.product != "" {
		req["product"] = o.product
	}
	switch o.sub {
	case fleetInstall:
		req["url"], req["sha256"], req["signature"] = o.url, o.sha256, o.signature
		if o.activate {
			req["activate"] = true
		}
		if o.size > 0 {
			req["size"] = o.size
		}
	case fleetActivate:
		req["sha256"] = o.sha256
	}
	b, _ := json.Marshal(req)
	return b
}

// fleetReply is a station's reply (io/mqtt Reply) with the outcome of a
// model command as its result.
type fleetReply struct {
	CorrelationID string                   `json:"correlation_id"`
	OK            bool                     `json:"ok"`
	Error         string                   `json:"error"`
	Result        *inspection.ModelOutcome `json:"result"`
}

// stationState is what the fleet command knows of one station.
type stationState struct {
	id       string
	corrID   string
	sent     time.Time
	done     bool
	outcome  string // ok, FAILED, OFFLINE, NO REPLY
	detail   string
	took     time.Duration
	status   string // last availability seen: online, offline (reason)
	progress string // last model_install event
}

// fleetRoute says which station a subscribed topic belongs to and what
// it carries: "reply", "event" or "status".
type fleetRoute struct {
	st   *stationState
	kind string
}

// fleetMsg is one message from the broker, or the loss of the connection.
type fleetMsg struct {
	topic   string
	payload []byte
	lost    error
}

func (o fleetOptions) run(ctx context.Context, s streams) error {
	start := time.Now()
	states := make(map[string]*stationState, len(o.stations))
	byTopic := map[string]fleetRoute{}
	nonce := strconv.FormatInt(start.UnixNano(), 36)
	for _, id := range o.stations {
		st := &stationState{id: id, corrID: "fleet-" + o.sub + "-" + nonce + "-" + id}
		states[id] = st
		base := o.prefix + "/" + id + "/"
		byTopic[base+"reply/"+o.command] = fleetRoute{st, "reply"}
		byTopic[base+"event"] = fleetRoute{st, "event"}
		byTopic[base+"status"] = fleetRoute{st, "status"}
	}
	msgs := make(chan fleetMsg, 4096)
	stop := make(chan struct{})
	defer close(stop)
	deliver := func(m fleetMsg) {
		select {
		case msgs <- m:
		case <-stop:
		}
	}
	filters := map[string]byte{}
	for t := range byTopic {
		filters[t] = 1
	}
	subscribed := make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker(o.broker).SetClientID(o.clientID).
		SetCleanSession(true).SetOrderMatters(false).
		SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second).
		SetAutoReconnect(true).SetMaxReconnectInterval(5 * time.Second).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) {}).
		SetConnectionLostHandler(func(_ paho.Client, err error) { deliver(fleetMsg{lost: err}) }).
		SetOnConnectHandler(func(c paho.Client) {
			// Clean session: subscribe on every (re)connect.
			tok := c.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
				deliver(fleetMsg{topic: m.Topic(), payload: append([]byte(nil), m.Payload()...)})
			})
			go func() {
				tok.Wait()
				select {
				case subscribed <- tok.Error():
				default:
				}
			}()
		})
	if o.username != "" {
		opts.SetUsername(o.username)
	}
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return failure(fmt.Errorf("fleet: --password-file: %w", err))
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		opts.SetPassword(strings.TrimRight(pw, "\r"))
	}
	if u, _ := url.Parse(o.broker); u != nil && u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ws" {
		tc, err := o.tlsConfig()
		if err != nil {
			return failure(fmt.Errorf("fleet: %w", err))
		}
		opts.SetTLSConfig(tc)
	} else if o.caFile != "" || o.certFile != "" {
		return usageErr("fleet: --ca-file/--cert-file are for a TLS broker (ssl://…), not %s", o.broker)
	}
	cli := paho.NewClient(opts)
	tok := cli.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		err := tok.Error()
		if err == nil {
			err = errors.New("no answer within 15s")
		}
		return failure(fmt.Errorf("fleet: connect to %s: %w", o.broker, err))
	}
	defer cli.Disconnect(250)
	select {
	case err := <-subscribed:
		if err != nil {
			return failure(fmt.Errorf("fleet: subscribe to the stations' replies on %s: %w", o.broker, err))
		}
	case <-time.After(15 * time.Second):
		return failure(fmt.Errorf("fleet: %s did not acknowledge the subscription within 15s", o.broker))
	case <-ctx.Done():
		return &exitError{code: exitInterrupted, err: errors.New("fleet: interrupted before anything was sent")}
	}
	// Retained availability arrives right after the subscription: give it
	// a moment, so that a station known to be offline is not sent a command
	// it would never see.
	o.drain(msgs, states, byTopic, 300*time.Millisecond, s)

	pending := 0
	for _, id := range o.stations {
		st := states[id]
		if strings.HasPrefix(st.status, "offline") {
			st.done, st.outcome, st.detail = true, "OFFLINE", "not sent: the station is "+st.status
			continue
		}
		st.sent = time.Now()
		t := cli.Publish(o.prefix+"/"+id+"/cmd/"+o.command, 1, false, o.payload(st.corrID))
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			err := t.Error()
			if err == nil {
				err = errors.New("no acknowledgement within 10s")
			}
			st.done, st.outcome, st.detail = true, "FAILED", "publish: "+err.Error()
			continue
		}
		pending++
	}
	fmt.Fprintf(s.stderr, "fleet %s: sent to %d of %d stations; waiting up to %s for their replies\n", o.sub, pending, len(o.stations), o.timeout)

	deadline := time.NewTimer(o.timeout)
	defer deadline.Stop()
	interrupted := false
wait:
	for pending > 0 {
		select {
		case m := <-msgs:
			if o.handle(m, states, byTopic, s) {
				pending--
			}
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			interrupted = true
			break wait
		}
	}
	for _, st := range states {
		if st.done {
			continue
		}
		st.done, st.took = true, time.Since(st.sent)
		switch {
		case interrupted:
			st.outcome, st.detail = "NO REPLY", "interrupted before the reply (the station may still be working)"
		default:
			st.outcome, st.detail = "NO REPLY", fmt.Sprintf("no reply within %s", o.timeout)
		}
		if st.status != "" {
			st.detail += "; station " + st.status
		}
		if st.progress != "" {
			st.detail += "; last progress: " + st.progress
		}
	}
	total := time.Since(start)
	return o.report(s, states, total, interrupted)
}

// drain handles messages for d (the retained availability after subscribing).
func (o fleetOptions) drain(msgs chan fleetMsg, states map[string]*stationState, byTopic map[string]fleetRoute, d time.Duration, s streams) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case m := <-msgs:
			o.handle(m, states, byTopic, s)
		case <-t.C:
			return
		}
	}
}

// handle records one message; it reports whether a pending station got
// its final answer.
func (o fleetOptions) handle(m fleetMsg, states map[string]*stationState, byTopic map[string]fleetRoute, s streams) bool {
	if m.lost != nil {
		fmt.Fprintf(s.stderr, "fleet: connection to %s lost (%v); reconnecting — replies sent meanwhile are lost\n", o.broker, m.lost)
		return false
	}
	e, ok := byTopic[m.topic]
	if !ok {
		return false
	}
	st := e.st
	switch e.kind {
	case "status":
		var sm struct{ State, Reason string }
		if json.Unmarshal(m.payload, &sm) != nil || sm.State == "" {
			return false
		}
		st.status = sm.State
		if sm.Reason != "" {
			st.status += " (" + sm.Reason + ")"
		}
		if o.verbose {
			fmt.Fprintf(s.stderr, "  %-12s status %s\n", st.id, st.status)
		}
		if sm.State == "offline" && !st.done && !st.sent.IsZero() {
			// A station that drops off the broker loses the command (or
			// its reply): it will not answer.
			st.done, st.outcome, st.took = true, "OFFLINE", time.Since(st.sent)
			st.detail = "the station went " + st.status + " before replying"
			if st.progress != "" {
				st.detail += "; last progress: " + st.progress
			}
			return true
		}
	case "event":
		var ev inspection.Event
		if json.Unmarshal(m.payload, &ev) != nil {
			return false
		}
		switch ev.Kind {
		case inspection.EventModelInstall, inspection.EventModelActivated, inspection.EventModelRollback:
		default:
			return false
		}
		if sha := ev.Fields["sha256"]; o.sha256 != "" && sha != "" && sha != o.sha256 {
			return false // another archive's install
		}
		if id := ev.Fields["correlation_id"]; id != "" && id != st.corrID {
			return false // another request's progress
		}
		st.progress = ev.Message
		if o.verbose {
			fmt.Fprintf(s.stderr, "  %-12s %s: %s\n", st.id, ev.Kind, ev.Message)
		}
	case "reply":
		var r fleetReply
		if json.Unmarshal(m.payload, &r) != nil || r.CorrelationID != st.corrID || st.done {
			return false
		}
		st.done, st.took = true, time.Since(st.sent)
		if r.OK {
			st.outcome, st.detail = "ok", describeOutcome(r.Result)
		} else {
			st.outcome, st.detail = "FAILED", r.Error
		}
		if o.verbose {
			fmt.Fprintf(s.stderr, "  %-12s reply after %s: %s %s\n", st.id, st.took.Round(10*time.Millisecond), st.outcome, oneLine(st.detail))
		}
		return true
	}
	return false
}

func describeOutcome(r *inspection.ModelOutcome) string {
	if r == nil {
		return "(no outcome in the reply)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s", r.State)
	if r.Product != "" {
		fmt.Fprintf(&b, " product %s", r.Product)
	}
	if r.BundleHash != "" {
		fmt.Fprintf(&b, " bundle %s", r.BundleHash)
	}
	if r.ArchiveSHA256 != "" {
		fmt.Fprintf(&b, " archive %s", short(r.ArchiveSHA256))
	}
	if r.Previous != "" {
		fmt.Fprintf(&b, " (previous %s)", short(r.Previous))
	}
	return b.String()
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// report prints the table and the summary; any station that did not
// succeed makes the command fail.
func (o fleetOptions) report(s streams, states map[string]*stationState, total time.Duration, interrupted bool) error {
	w := s.stdout
	fmt.Fprintf(w, "%-12s %-8s %9s  %s\n", "STATION", "OUTCOME", "TIME", "DETAIL")
	counts := map[string]int{}
	var slowest *stationState
	for _, id := range o.stations {
		st := states[id]
		counts[st.outcome]++
		took := "-"
		if !st.sent.IsZero() {
			took = fmt.Sprintf("%.2fs", st.took.Seconds())
		}
		fmt.Fprintf(w, "%-12s %-8s %9s  %s\n", st.id, st.outcome, took, oneLine(st.detail))
		if st.outcome == "ok" && (slowest == nil || st.took > slowest.took) {
			slowest = st
		}
	}
	ok := counts["ok"]
	failed := len(o.stations) - ok
	fmt.Fprintf(w, "fleet %s: %d of %d stations ok, %d failed, %d offline, %d no reply; total %.2fs",
		o.sub, ok, len(o.stations), counts["FAILED"], counts["OFFLINE"], counts["NO REPLY"], total.Seconds())
	if slowest != nil {
		fmt.Fprintf(w, " (slowest ok: %s %.2fs)", slowest.id, slowest.took.Seconds())
	}
	fmt.Fprintln(w)
	if interrupted {
		return &exitError{code: exitInterrupted, err: fmt.Errorf("fleet %s: interrupted; %d stations had not replied", o.sub, counts["NO REPLY"])}
	}
	if failed > 0 {
		return failure(fmt.Errorf("fleet %s: %d of %d stations did not succeed", o.sub, failed, len(o.stations)))
	}
	return nil
}

// oneLine keeps a reason on the station's line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

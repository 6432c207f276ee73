package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/mqtt/sparkplug"
	pb "github.com/inspectd/inspectd/io/mqtt/sparkplug/sparkplugpb"
)

// deviceCheckPeriod is how often the camera state is compared with the
// device's birth state (camera events trigger an immediate check).
const deviceCheckPeriod = time.Second

var (
	// errNotBorn: the connection is up but its NBIRTH is not sent yet, or
	// it was lost.
	errNotBorn = errors.New("sparkplug: no NBIRTH on the current connection")
	// errBadRecord: an outbox record that cannot be decoded; it is
	// skipped.
	errBadRecord = errors.New("sparkplug: undecodable outbox record")
)

// spbNode is the Sparkplug B edge node of a Client in mode "sparkplug". It
// owns the session rules: the NDEATH Will with bdSeq (a new bdSeq, persisted,
// before every CONNECT), NBIRTH with seq 0 first after every connect, DBIRTH
// and DDEATH of the camera device, one seq (0–255) across every N/D message
// in the order they are handed to paho, and NCMD/DCMD.
type spbNode struct {
	c           *Client
	topics      sparkplug.Topics
	dir         string           // the state directory, where the bdSeq file lives
	bd          *sparkplug.BdSeq // opened by open
	allowReboot bool
	reboot      func()
	log         *slog.Logger

	devWake chan struct{}
	devWant atomic.Bool // camera state from events, used without a host
	cmdq    chan inbound

	// mu orders seq assignment with the hand-over to paho, so that the
	// broker receives seq in order.
	mu        sync.Mutex
	bdSeq     uint64
	seq       uint64
	born      bool      // NBIRTH sent on the current connection
	sessionAt time.Time // when the current connection came up: older records are historical
	devBorn   bool
	// devProduct is the active product the device last announced
	// (DBIRTH, DDATA): a change is sent as DDATA.
	devProduct string
	last       *inspection.Result
	lastEvent  *inspection.Event
	model      inspection.Model // model identity last announced
	counts     inspection.Counts
}

// newSpbNode checks the IDs; it reads nothing yet (open does).
func newSpbNode(c *Client, o Options, log *slog.Logger) (*spbNode, error) {
	sc := o.Config.Sparkplug
	topics, err := sparkplug.NewTopics(sc.GroupID, sc.EdgeNodeIDFor(o.Station), sc.DeviceID)
	if err != nil {
		return nil, err
	}
	s := &spbNode{
		c: c, topics: topics, dir: o.StateDir, allowReboot: sc.AllowReboot, reboot: o.Reboot,
		log:     log.With("group_id", topics.Group, "edge_node_id", topics.Node),
		devWake: make(chan struct{}, 1), cmdq: make(chan inbound, commandQueue),
	}
	s.devWant.Store(true)
	return s, nil
}

// open reads the bdSeq file in the state directory and takes (persists)
// the bdSeq of the first CONNECT; it takes the model identity to announce
// from the host.
func (s *spbNode) open() error {
	bd, err := sparkplug.OpenBdSeq(s.dir)
	if err != nil {
		return err
	}
	first, err := bd.Next()
	if err != nil {
		return err
	}
	var model inspection.Model
	if h := s.c.host; h != nil {
		m := h.Status().Model
		model = inspection.Model{Product: m.Product, BundleHash: m.BundleHash}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bd, s.bdSeq, s.model = bd, first, model
	return nil
}

// configure sets the Will, NDEATH with the current bdSeq, and the
// on-connect handler.
func (s *spbNode) configure(o *paho.ClientOptions) {
	s.mu.Lock()
	will := s.deathPayload(s.bdSeq)
	s.mu.Unlock()
	o.SetBinaryWill(s.topics.NodeTopic(sparkplug.NDEATH), will, 1, false).
		SetOnConnectHandler(s.onConnect)
}

func (s *spbNode) deathPayload(bdSeq uint64) []byte {
	b, err := sparkplug.Marshal(sparkplug.NodeDeath(time.Now(), bdSeq))
	if err != nil {
		s.log.Error("cannot encode NDEATH", "error", err)
	}
	return b
}

// nextAttempt runs before every connection attempt after the first: a new
// bdSeq, which configure puts in the Will of the attempt's client. Messages
// of the lost session (with its seq) are not resent by paho (noStore); the
// publisher sends them again after the new NBIRTH, with new seq numbers.
func (s *spbNode) nextAttempt() {
	v, err := s.bd.Next()
	if err != nil {
		s.log.Error("cannot persist bdSeq; after a restart it may repeat", "error", err, "file", s.bd.Path())
	}
	s.mu.Lock()
	s.bdSeq = v
	s.mu.Unlock()
	s.log.Debug("new session", "broker", s.c.cfg.Broker, "bdSeq", v)
}

// onConnect subscribes to NCMD and DCMD, sends NBIRTH (and DBIRTH when
// the camera is online), then lets the publisher go.
func (s *spbNode) onConnect(cl paho.Client) {
	c := s.c
	if !c.noteConnected(cl) {
		return
	}
	connAt := time.Now()
	filters := map[string]byte{s.topics.NodeTopic(sparkplug.NCMD): 1, s.topics.DeviceTopic(sparkplug.DCMD): 1}
	sub := cl.SubscribeMultiple(filters, s.onCommand)
	if !sub.WaitTimeout(c.cfg.ConnectTimeout.D) || sub.Error() != nil {
		s.log.Error("could not subscribe to NCMD/DCMD", "error", sub.Error())
	}
	want := s.deviceWanted()
	s.mu.Lock()
	s.sessionAt = connAt
	s.birthLocked(time.Now(), want)
	s.mu.Unlock()
	if cl.IsConnectionOpen() {
		c.conn.set(true)
	}
}

// connectionLost marks the session dead (the broker sends the Will).
func (s *spbNode) connectionLost() {
	s.mu.Lock()
	s.born, s.devBorn = false, false
	s.mu.Unlock()
}

func (s *spbNode) nextSeq() uint64 {
	v := s.seq
	s.seq = (s.seq + 1) % 256
	return v
}

// publishLocked encodes p and hands it to paho; s.mu is held.
func (s *spbNode) publishLocked(topic string, p *pb.Payload) paho.Token {
	b, err := sparkplug.Marshal(p)
	if err != nil {
		s.log.Error("cannot encode payload", "topic", topic, "error", err)
		b = nil
	}
	return s.c.client().Publish(topic, s.c.qos, false, b)
}

// watch logs a failed state message without blocking the caller.
func (s *spbNode) watch(what string, tok paho.Token) { s.c.watch(s.log.Warn, what, tok) }

// birthLocked sends NBIRTH with seq 0 and the current bdSeq, then DBIRTH
// when device is true; s.mu is held.
func (s *spbNode) birthLocked(now time.Time, device bool) {
	s.seq = 0
	st := sparkplug.NodeState{BdSeq: s.bdSeq, Version: s.c.version, Model: s.model, Last: s.last,
		Counters: s.counters(), LastEvent: s.lastEvent}
	s.watch("NBIRTH", s.publishLocked(s.topics.NodeTopic(sparkplug.NBIRTH), sparkplug.NodeBirth(now, s.nextSeq(), st)))
	s.born = true
	s.devBorn = false
	if device {
		d := s.deviceState()
		s.watch("DBIRTH", s.publishLocked(s.topics.DeviceTopic(sparkplug.DBIRTH), sparkplug.DeviceBirth(now, s.nextSeq(), d)))
		s.devBorn, s.devProduct = true, d.ActiveProduct
	}
	s.log.Info("NBIRTH sent", "bdSeq", s.bdSeq, "device_born", s.devBorn)
}

// rebirth answers Node Control/Rebirth.
func (s *spbNode) rebirth() {
	want := s.deviceWanted()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.born {
		s.birthLocked(time.Now(), want)
	}
}

func (s *spbNode) counters() sparkplug.Counters {
	st := s.c.Stats()
	cs := sparkplug.Counters{Counts: s.counts, OutboxDepth: uint64(max(st.OutboxDepth, 0)), Dropped: st.Dropped, Reconnects: st.Reconnects}
	if s.c.host != nil {
		cs.Counts = s.c.host.Status().Counts
	}
	return cs
}

func (s *spbNode) deviceState() sparkplug.DeviceState {
	if s.c.host == nil {
		return sparkplug.DeviceState{}
	}
	st := s.c.host.Status()
	return sparkplug.DeviceState{Camera: st.Camera, Counts: st.CameraN, Image: st.Model.Threshold,
		Pixel: st.Model.PixelThreshold, Source: st.Model.ThresholdFrom, ActiveProduct: activeProduct(st), HasInfo: true}
}

// activeProduct is the station's active product: the changeover's, or the
// model's product on a station without [[product]]s.
func activeProduct(st inspection.Status) string {
	if st.Products.Active != "" {
		return st.Products.Active
	}
	return st.Model.Product
}

// deviceWanted says whether the camera device should be alive: the
// daemon's camera state when there is a host, else the last camera
// event (online until told otherwise).
func (s *spbNode) deviceWanted() bool {
	if s.c.host != nil {
		return s.c.host.Status().Camera.State == inspection.CameraOnline
	}
	return s.devWant.Load()
}

// noteEvent reacts to camera events with a device check.
func (s *spbNode) noteEvent(e inspection.Event) {
	switch e.Kind {
	case inspection.EventCameraOnline:
		s.devWant.Store(true)
	case inspection.EventCameraOffline, inspection.EventCameraStalled:
		s.devWant.Store(false)
	case inspection.EventProductSwitched:
		// syncDevice sends the new Properties/Active Product.
	default:
		return
	}
	select {
	case s.devWake <- struct{}{}:
	default:
	}
}

// start runs the device watcher and the command worker until the client
// stops.
func (s *spbNode) start() {
	c := s.c
	c.routines.Go(func() {
		t := time.NewTicker(deviceCheckPeriod)
		defer t.Stop()
		for {
			select {
			case <-c.bg.Done():
				return
			case <-t.C:
			case <-s.devWake:
			}
			s.syncDevice()
		}
	})
	c.routines.Go(func() {
		for {
			select {
			case <-c.bg.Done():
				return
			case in := <-s.cmdq:
				s.handleCommand(in)
			}
		}
	})
}

// syncDevice sends DBIRTH or DDEATH when the camera state and the device's
// birth state differ, and DDATA when the active product changed.
func (s *spbNode) syncDevice() {
	want := s.deviceWanted()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.born {
		return
	}
	if want == s.devBorn {
		if s.devBorn && s.c.host != nil {
			if d := s.deviceState(); d.ActiveProduct != s.devProduct {
				s.dataLocked(d)
				s.log.Info("active product changed: DDATA sent", "product", d.ActiveProduct)
			}
		}
		return
	}
	now := time.Now()
	if want {
		d := s.deviceState()
		s.watch("DBIRTH", s.publishLocked(s.topics.DeviceTopic(sparkplug.DBIRTH), sparkplug.DeviceBirth(now, s.nextSeq(), d)))
		s.devProduct = d.ActiveProduct
		s.log.Info("camera online: DBIRTH sent", "device_id", s.topics.Device)
	} else {
		s.watch("DDEATH", s.publishLocked(s.topics.DeviceTopic(sparkplug.DDEATH), sparkplug.DeviceDeath(now, s.nextSeq())))
		s.log.Warn("camera offline: DDEATH sent", "device_id", s.topics.Device)
	}
	s.devBorn = want
}

// publish sends one outbox record as NDATA with the next seq. Records
// produced before the current connection came up (while offline) are
// marked historical; their metric timestamps are the original ones.
func (s *spbNode) publish(r record) (paho.Token, error) {
	var (
		res *inspection.Result
		ev  *inspection.Event
	)
	switch r.kind {
	case kindResult:
		res = new(inspection.Result)
		if err := json.Unmarshal(r.payload, res); err != nil {
			return nil, fmt.Errorf("%w: result: %v", errBadRecord, err)
		}
	case kindEvent:
		ev = new(inspection.Event)
		if err := json.Unmarshal(r.payload, ev); err != nil {
			return nil, fmt.Errorf("%w: event: %v", errBadRecord, err)
		}
	default:
		return nil, fmt.Errorf("%w: kind %s", errBadRecord, r.kind)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.born {
		return nil, errNotBorn
	}
	topic := s.topics.NodeTopic(sparkplug.NDATA)
	if res != nil {
		hist := res.VerdictTime.Before(s.sessionAt)
		changed := res.Model != s.model
		tok := s.publishLocked(topic, sparkplug.ResultData(now, s.nextSeq(), res, hist, changed))
		s.model = res.Model
		if s.last == nil || !res.VerdictTime.Before(s.last.VerdictTime) {
			s.last = res
		}
		s.counts.Total++
		switch res.Verdict {
		case inspection.OK:
			s.counts.OK++
		case inspection.NG:
			s.counts.NG++
		default:
			s.counts.Error++
		}
		return tok, nil
	}
	tok := s.publishLocked(topic, sparkplug.EventData(now, s.nextSeq(), *ev, ev.Time.Before(s.sessionAt)))
	if s.lastEvent == nil || !ev.Time.Before(s.lastEvent.Time) {
		s.lastEvent = ev
	}
	return tok, nil
}

// publishStats sends the counters (NDATA) and the device metrics (DDATA)
// every stats_interval.
func (s *spbNode) publishStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.born {
		return
	}
	now := time.Now()
	s.watch("NDATA", s.publishLocked(s.topics.NodeTopic(sparkplug.NDATA), sparkplug.CountersData(now, s.nextSeq(), s.counters())))
	if s.devBorn && s.c.host != nil {
		s.dataLocked(s.deviceState())
	}
	s.c.statsPublished.Add(1)
}

// dataLocked sends the device's metrics d as DDATA; s.mu is held.
func (s *spbNode) dataLocked(d sparkplug.DeviceState) {
	s.watch("DDATA", s.publishLocked(s.topics.DeviceTopic(sparkplug.DDATA), sparkplug.DeviceData(time.Now(), s.nextSeq(), d)))
	s.devProduct = d.ActiveProduct
}

// goodbye publishes NDEATH before an intentional disconnect (the broker
// does not send the Will then).
func (s *spbNode) goodbye(ctx context.Context) {
	s.mu.Lock()
	born := s.born
	s.born, s.devBorn = false, false
	bd := s.bdSeq
	s.mu.Unlock()
	if !born {
		return
	}
	tok := s.c.client().Publish(s.topics.NodeTopic(sparkplug.NDEATH), 1, false, s.deathPayload(bd))
	if !tok.WaitTimeout(goodbyeWait(ctx)) || tok.Error() != nil {
		s.log.Warn("could not publish NDEATH; the broker sends the Will instead", "error", tok.Error())
	}
}

// onCommand is paho's handler for NCMD and DCMD: it only queues.
func (s *spbNode) onCommand(_ paho.Client, m paho.Message) {
	in := inbound{name: m.Topic(), payload: append([]byte(nil), m.Payload()...), retained: m.Retained()}
	select {
	case s.cmdq <- in:
	default:
		s.c.commands.Add(1)
		s.reject(in.name, errors.New("command queue full; retry later"))
	}
}

// reject reports a command that was not executed.
func (s *spbNode) reject(topic string, err error) {
	s.c.commandErrors.Add(1)
	s.log.Warn("Sparkplug command ignored", "topic", topic, "error", err)
	s.c.Event(inspection.Event{Time: time.Now(), Severity: inspection.Warning, Kind: sparkplug.EventCommandRejected,
		Message: fmt.Sprintf("command on %s ignored: %v", topic, err), Fields: map[string]string{"topic": topic, "error": err.Error()}})
}

// handleCommand validates a command completely, then executes it.
func (s *spbNode) handleCommand(in inbound) {
	c := s.c
	c.commands.Add(1)
	topic := in.name
	if in.retained {
		s.reject(topic, errors.New("retained commands are ignored (they would run again on every reconnect)"))
		return
	}
	p, _ := sparkplug.ParseTopic(topic)
	switch p.Type {
	case sparkplug.NCMD:
		cmd, err := sparkplug.ParseNodeCommand(in.payload)
		if err != nil {
			s.reject(topic, err)
			return
		}
		var (
			install inspection.ModelInstall
			mm      inspection.ModelManager
		)
		if cmd.ModelInstall != "" {
			if install, err = ParseModelInstall([]byte(cmd.ModelInstall)); err != nil {
				s.reject(topic, fmt.Errorf("sparkplug: NCMD metric %q: %w", sparkplug.MetricModelInstall, err))
				return
			}
			if mm, err = c.modelManager("Node Control/Model Install"); err != nil {
				s.reject(topic, err)
				return
			}
		}
		if cmd.Reboot {
			switch {
			case !s.allowReboot:
				s.reject(topic, errors.New("Node Control/Reboot refused: mqtt.sparkplug.allow_reboot is false"))
				return
			case s.reboot == nil:
				s.reject(topic, errors.New("Node Control/Reboot refused: this process cannot restart itself"))
				return
			}
		}
		if cmd.ClearFault {
			if c.host == nil {
				s.reject(topic, errors.New("Node Control/Clear Fault refused: commands are not available in this process"))
				return
			}
			if err := c.host.ClearFaults(); err != nil {
				s.reject(topic, fmt.Errorf("Node Control/Clear Fault: %w", err))
				return
			}
			s.log.Info("latched faults cleared by Node Control/Clear Fault", "problems_left", len(c.host.Status().Problems))
		}
		if cmd.Rebirth {
			s.log.Info("rebirth requested")
			s.rebirth()
		}
		if mm != nil {
			s.installModel(topic, mm, install)
		}
		if cmd.Reboot {
			s.log.Warn("reboot requested by Node Control/Reboot")
			c.Event(inspection.Event{Time: time.Now(), Severity: inspection.Warning, Kind: inspection.EventStopping,
				Message: "restart requested by Sparkplug Node Control/Reboot"})
			go s.reboot()
		}
	case sparkplug.DCMD:
		cmd, err := sparkplug.ParseDeviceCommand(in.payload)
		if err != nil {
			s.reject(topic, err)
			return
		}
		if c.host == nil {
			s.reject(topic, errors.New("commands are not available in this process"))
			return
		}
		s.mu.Lock()
		alive := s.devBorn
		s.mu.Unlock()
		if !alive {
			s.reject(topic, fmt.Errorf("device %s is offline (DDEATH); commands wait for its DBIRTH", s.topics.Device))
			return
		}
		if cmd.Product != "" {
			// First, so that a trigger in the same DCMD is the new
			// product's, and so that a refused selection changes nothing.
			if err := checkProductName(cmd.Product); err != nil {
				s.reject(topic, fmt.Errorf("sparkplug: DCMD metric %q: %w", sparkplug.MetricControlProduct, err))
				return
			}
			sel, err := c.selector(sparkplug.MetricControlProduct)
			if err != nil {
				s.reject(topic, err)
				return
			}
			if err := sel.SelectProduct(cmd.Product, inspection.ProductSourceSparkplug); err != nil {
				s.reject(topic, fmt.Errorf("product %q not selected: %w", cmd.Product, err))
				return
			}
			s.log.Info("product selected by DCMD", "product", cmd.Product)
			s.mu.Lock()
			if s.devBorn {
				s.dataLocked(s.deviceState())
			}
			s.mu.Unlock()
		}
		if cmd.ImageThreshold != nil || cmd.PixelThreshold != nil {
			if err := c.host.SetThresholds(cmd.ImageThreshold, cmd.PixelThreshold); err != nil {
				s.reject(topic, fmt.Errorf("threshold refused: %w", err))
				return
			}
			m := c.host.Status().Model
			s.log.Info("thresholds changed by DCMD (runtime only)", "image", m.Threshold, "pixel", m.PixelThreshold)
			s.mu.Lock()
			if s.devBorn {
				s.dataLocked(s.deviceState())
			}
			s.mu.Unlock()
		}
		if cmd.Trigger {
			if err := c.host.Trigger(cmd.PartID, inspection.TriggerMQTT); err != nil {
				s.reject(topic, fmt.Errorf("trigger refused: %w", err))
				return
			}
		}
	default:
		s.reject(topic, errors.New("not an NCMD or DCMD topic"))
	}
}

// installModel starts Node Control/Model Install in the background (one
// model command at a time, JSON or Sparkplug). Its progress and its
// outcome are events of kind model_install, published as NDATA (Event/*
// metrics); a refusal is a sparkplug_command_rejected event.
func (s *spbNode) installModel(topic string, mm inspection.ModelManager, req inspection.ModelInstall) {
	c := s.c
	job := modelJob{cmd: CmdModelInstall, req: request{name: CmdModelInstall, install: req},
		done: func(out inspection.ModelOutcome, err error) {
			if err != nil {
				err = modelFailure(CmdModelInstall, err)
				s.log.Warn("Node Control/Model Install failed", "sha256", req.SHA256, "error", err)
				c.Event(inspection.Event{Time: time.Now(), Severity: inspection.Warning, Kind: inspection.EventModelInstall,
					Message: err.Error(), Fields: map[string]string{"stage": "failed", "sha256": req.SHA256, "product": req.Product, "error": err.Error()}})
				return
			}
			msg := fmt.Sprintf("model install done: product %s, archive %s, bundle %s, %s (%.0f ms)", out.Product, out.ArchiveSHA256, out.BundleHash, out.State, out.DurationMs)
			s.log.Info("Node Control/Model Install done", "product", out.Product, "sha256", out.ArchiveSHA256, "state", out.State)
			c.Event(inspection.Event{Time: time.Now(), Severity: inspection.Info, Kind: inspection.EventModelInstall, Message: msg,
				Fields: map[string]string{"stage": "done", "sha256": out.ArchiveSHA256, "product": out.Product, "bundle_hash": out.BundleHash,
					"state": out.State, "duration_ms": fmt.Sprintf("%.0f", out.DurationMs)}})
		}}
	started, err := c.models.start(c, mm, "sparkplug\x00"+describeInstall(req), job, c.modelTimeout(CmdModelInstall))
	switch {
	case err != nil:
		s.reject(topic, fmt.Errorf("Node Control/Model Install: %w", err))
	case !started:
		s.log.Info("repeated Node Control/Model Install ignored: it is running", "sha256", req.SHA256)
	default:
		s.log.Info("Node Control/Model Install started", "url", req.URL, "sha256", req.SHA256, "product", req.Product)
	}
}

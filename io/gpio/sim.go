package gpio

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SimHistory is how many output changes Sim keeps.
const SimHistory = 1000

// Actuation is one recorded output change of the simulated chip.
type Actuation struct {
	Seq      uint64    `json:"seq"`               // changes since the chip was created, from 1
	PartID   string    `json:"part_id,omitempty"` // the part the change was for
	Line     string    `json:"line"`              // as configured
	Value    bool      `json:"value"`             // logical level (true = energised)
	Reason   string    `json:"reason,omitempty"`  // see Tag.Reason
	Time     time.Time `json:"time"`              // when Set ran
	Intended time.Time `json:"intended_time,omitzero"`
	// MonoNs is Time on the monotonic clock, in ns since the chip was
	// created (wall-clock steps do not affect it).
	MonoNs int64 `json:"mono_ns"`
	// ErrorUs is Time − Intended in µs (0 when not scheduled).
	ErrorUs float64 `json:"error_us"`
}

// Sim is a simulated GPIO chip. Outputs record every change with its
// monotonic time, the intended time and the part; inputs receive edges
// from Emit. It is safe for concurrent use.
type Sim struct {
	start time.Time

	mu      sync.Mutex
	outputs map[string]*simOutput
	inputs  map[string]*simInput
	levels  map[string]*simLevel // lines requested by Levels
	// input are the levels of input lines set with SetInput (logical:
	// true = active), whether requested or not.
	input map[string]bool
	ring  []Actuation
	next  int
	total uint64
	watch chan Actuation // nil without an observer
}

// Observe calls fn for every later output change, in order, from a
// goroutine of its own (the demo prints them); changes that arrive while fn
// is 256 changes behind are not passed to it (they stay recorded). Call it
// once, before the lines are used.
func (s *Sim) Observe(fn func(Actuation)) {
	ch := make(chan Actuation, 256)
	s.mu.Lock()
	s.watch = ch
	s.mu.Unlock()
	go func() {
		for a := range ch {
			fn(a)
		}
	}()
}

// NewSim returns an empty simulated chip.
func NewSim() *Sim {
	return &Sim{start: time.Now(), outputs: map[string]*simOutput{}, inputs: map[string]*simInput{},
		levels: map[string]*simLevel{}, input: map[string]bool{}}
}

type simOutput struct {
	sim    *Sim
	line   string
	value  bool
	closed bool
	fail   error
}

type simInput struct {
	line    string
	opts    InputOptions
	h       EdgeHandler
	seq     uint32
	closed  bool
	lastAct time.Time
}

// Output requests line as an output.
func (s *Sim) Output(line string, o OutputOptions) (Output, error) {
	if _, err := ParseLine(line); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used(line) {
		return nil, fmt.Errorf("line %q is already requested; each line has one role", line)
	}
	out := &simOutput{sim: s, line: line, value: o.Initial}
	s.outputs[line] = out
	return out, nil
}

// Input requests line as an input delivering edges to h.
func (s *Sim) Input(line string, o InputOptions, h EdgeHandler) (Input, error) {
	if _, err := ParseLine(line); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used(line) {
		return nil, fmt.Errorf("line %q is already requested; each line has one role", line)
	}
	in := &simInput{line: line, opts: o, h: h}
	s.inputs[line] = in
	return &simInputHandle{s: s, in: in}, nil
}

func (s *Sim) used(line string) bool {
	if o, ok := s.outputs[line]; ok && !o.closed {
		return true
	}
	if i, ok := s.inputs[line]; ok && !i.closed {
		return true
	}
	if l, ok := s.levels[line]; ok && !l.closed {
		return true
	}
	return false
}

// Close does nothing: lines are closed separately.
func (s *Sim) Close() error { return nil }

// Emit delivers one edge on an input line, on the caller's goroutine, as
// the kernel would: active-level edges only as requested, debounced,
// with consecutive sequence numbers. It reports whether the edge was
// delivered.
func (s *Sim) Emit(line string, rising bool) bool {
	s.mu.Lock()
	in, ok := s.inputs[line]
	if !ok || in.closed {
		s.mu.Unlock()
		return false
	}
	now := time.Now()
	if (in.opts.Edges == EdgeRising && !rising) || (in.opts.Edges == EdgeFalling && rising) {
		s.mu.Unlock()
		return false
	}
	if in.opts.Debounce > 0 && !in.lastAct.IsZero() && now.Sub(in.lastAct) < in.opts.Debounce {
		s.mu.Unlock()
		return false
	}
	in.lastAct = now
	in.seq++
	e := Edge{Line: line, Rising: rising, Time: now, Seq: in.seq, LineSeq: in.seq}
	h := in.h
	s.mu.Unlock()
	h(e)
	return true
}

// Lose makes the next n edges of line vanish as if the kernel buffer had
// overflowed: their sequence numbers are used up but never delivered.
func (s *Sim) Lose(line string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.inputs[line]; ok {
		in.seq += uint32(n)
	}
}

// FailOutput makes every later Set on line fail with err (nil heals it).
func (s *Sim) FailOutput(line string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.outputs[line]; ok {
		o.fail = err
	}
}

// Value returns the current logical level of an output line.
func (s *Sim) Value(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.outputs[line]; ok {
		return o.value
	}
	return false
}

// Actuations returns the recorded output changes, oldest first (at most
// SimHistory).
func (s *Sim) Actuations() []Actuation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Actuation, 0, len(s.ring))
	if len(s.ring) < SimHistory {
		return append(out, s.ring...)
	}
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

// Total returns how many output changes were recorded in all.
func (s *Sim) Total() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *Sim) record(a Actuation) {
	s.total++
	a.Seq = s.total
	if s.watch != nil {
		select {
		case s.watch <- a:
		default:
		}
	}
	if len(s.ring) < SimHistory {
		s.ring = append(s.ring, a)
		return
	}
	s.ring[s.next] = a
	s.next = (s.next + 1) % SimHistory
}

// Handler serves the recorded changes as JSON, newest last:
// {"total": n, "actuations": [...]}. Query parameters: limit (default
// 100, at most SimHistory), line, part_id.
func (s *Sim) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		limit := 100
		if q := r.URL.Query().Get("limit"); q != "" {
			n, err := strconv.Atoi(q)
			if err != nil || n < 1 {
				http.Error(w, "limit: want a positive integer", http.StatusBadRequest)
				return
			}
			limit = min(n, SimHistory)
		}
		line, part := r.URL.Query().Get("line"), r.URL.Query().Get("part_id")
		all := s.Actuations()
		sel := make([]Actuation, 0, min(limit, len(all)))
		for i := len(all) - 1; i >= 0 && len(sel) < limit; i-- {
			a := all[i]
			if (line != "" && a.Line != line) || (part != "" && a.PartID != part) {
				continue
			}
			sel = append(sel, a)
		}
		for i, j := 0, len(sel)-1; i < j; i, j = i+1, j-1 {
			sel[i], sel[j] = sel[j], sel[i]
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Total      uint64      `json:"total"`
			Actuations []Actuation `json:"actuations"`
		}{s.Total(), sel})
	})
}

func (o *simOutput) Set(v bool) error { return o.SetTagged(v, Tag{}) }

func (o *simOutput) SetTagged(v bool, t Tag) error {
	s := o.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.closed {
		return fmt.Errorf("set %q: line closed", o.line)
	}
	if o.fail != nil {
		return fmt.Errorf("set %q: %w", o.line, o.fail)
	}
	if o.value == v {
		return nil
	}
	now := time.Now()
	o.value = v
	a := Actuation{PartID: t.PartID, Line: o.line, Value: v, Reason: t.Reason, Time: now, Intended: t.Intended, MonoNs: int64(now.Sub(s.start))}
	if !t.Intended.IsZero() {
		a.ErrorUs = float64(now.Sub(t.Intended)) / float64(time.Microsecond)
	}
	s.record(a)
	return nil
}

func (o *simOutput) Close() error {
	o.sim.mu.Lock()
	defer o.sim.mu.Unlock()
	o.closed = true
	return nil
}

type simInputHandle struct {
	s  *Sim
	in *simInput
}

func (h *simInputHandle) Close() error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.in.closed = true
	return nil
}

// simLevel is one line requested by Levels.
type simLevel struct {
	closed bool
}

// Levels requests lines as plain inputs; Read returns the levels set with
// SetInput (false for a line never set).
func (s *Sim) Levels(lines []string, o InputOptions) (LevelReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, line := range lines {
		if _, err := ParseLine(line); err != nil {
			return nil, err
		}
		if s.used(line) || seen[line] {
			return nil, fmt.Errorf("line %q is already requested; each line has one role", line)
		}
		seen[line] = true
	}
	r := &simLevels{s: s, names: append([]string(nil), lines...)}
	for _, line := range lines {
		l := &simLevel{}
		s.levels[line] = l
		r.lines = append(r.lines, l)
	}
	return r, nil
}

// SetInput sets the logical level of an input line (true = active), as
// the wiring would: LevelReader.Read returns it. It emits no edge (Emit
// does).
func (s *Sim) SetInput(line string, active bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.input[line] = active
}

// SetCode sets lines, least significant bit first, to the binary code:
// line i is active when bit i of code is set.
func (s *Sim) SetCode(lines []string, code uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, line := range lines {
		s.input[line] = code&(1<<i) != 0
	}
}

type simLevels struct {
	s     *Sim
	names []string
	lines []*simLevel
}

func (r *simLevels) Read() ([]bool, error) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	out := make([]bool, len(r.names))
	for i, name := range r.names {
		if r.lines[i].closed {
			return nil, fmt.Errorf("read %q: line closed", name)
		}
		out[i] = r.s.input[name]
	}
	return out, nil
}

func (r *simLevels) Close() error {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	for _, l := range r.lines {
		l.closed = true
	}
	return nil
}

// InputHandler lets a demo or an operator drive the simulated inputs over
// HTTP. GET answers {"inputs":{line: level, …}}. POST sets levels and
// emits edges, from the query or an HTML form: set=line:1,line:0 (levels
// first), then edge=line (a rising edge on that edge-reporting input,
// e.g. the part-present line), and answers the levels and whether the
// edge was delivered.
func (s *Sim) InputHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		type answer struct {
			Inputs    map[string]bool `json:"inputs"`
			Edge      string          `json:"edge,omitempty"`
			Delivered bool            `json:"delivered,omitempty"`
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPost:
			if err := r.ParseForm(); err != nil {
				http.Error(w, "form: "+err.Error(), http.StatusBadRequest)
				return
			}
			sets := map[string]bool{}
			for _, spec := range strings.Split(r.Form.Get("set"), ",") {
				if spec = strings.TrimSpace(spec); spec == "" {
					continue
				}
				line, v, ok := strings.Cut(spec, ":")
				if !ok || (v != "0" && v != "1") || strings.TrimSpace(line) == "" {
					http.Error(w, fmt.Sprintf("set: %q is not line:0 or line:1", spec), http.StatusBadRequest)
					return
				}
				sets[strings.TrimSpace(line)] = v == "1"
			}
			for line, v := range sets {
				s.SetInput(line, v)
			}
			if e := r.Form.Get("edge"); e != "" {
				a := answer{Edge: e, Delivered: s.Emit(e, true)}
				if !a.Delivered {
					http.Error(w, fmt.Sprintf("edge: line %q is not a requested edge input (or the edge was debounced)", e), http.StatusConflict)
					return
				}
			}
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.mu.Lock()
		a := answer{Inputs: maps.Clone(s.input), Edge: r.Form.Get("edge")}
		s.mu.Unlock()
		a.Delivered = a.Edge != ""
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	})
}

// Package gpio drives the station's digital I/O: the reject actuator
// output, part-present and encoder inputs, ready and fault lamps, and an
// optional OK/NG + strobe handshake to a PLC.
//
// Hardware stays behind the small Chip, Output and Input interfaces. The
// Linux driver (chip_linux.go, github.com/warthog618/go-gpiocdev) and the
// simulated chip "sim" (Sim: records every output change with its
// monotonic time, for the demo, /api/actuations and acceptance checks)
// implement them; the scheduling is tested with Sim under testing/synctest.
//
// # Lifecycle
//
// New validates and allocates only: it requests no line and starts no
// goroutine, and on success the Actuator owns the chip. Start(ctx, host)
// requests the lines with the outputs at rest and starts the scheduler
// and the trigger goroutine; host (the daemon) receives the part-present
// triggers and the events. Close(ctx) lets the parts scheduled before
// ctx's deadline actuate, puts the outputs in the safe state, stops and
// waits for the goroutines, releases the lines and closes the chip. The
// Actuator is a prometheus.Collector of its counters.
//
// # Reject scheduling
//
// Actuator is the scheduler. It is an inspection.Sink ("gpio"), an
// inspection.ReadyIndicator (the ready lamp) and an
// inspection.TriggerObserver: PartTriggered registers a part with its due
// time (trigger + reject_delay, time mode) or due encoder count (count at
// trigger + reject_counts, encoder mode); Deliver records the verdict. At
// the due time or count the part's fate is decided from its verdict: OK
// passes, NG and ERROR reject, no verdict yet follows late_policy
// ("reject" by default). A verdict that arrives after the due time is
// late: counted and reported as an inspection.EventLateReject event. A
// result for a part that was never registered (free-run, a trigger that
// bypassed the observer) is scheduled from Result.TriggerTime.
//
// One goroutine owns the timing: it steps a min-heap of parts ordered by
// due time/count on one timer; triggers, verdicts and encoder edges only
// update state under a short lock (or none, for edges) and wake it, so no
// handler blocks. The state is split by owner: the schedule of parts
// (schedule.go), the output lines and what they show (safety.go), the
// OK/NG handshake (handshake.go) and the inputs (inputs.go).
//
// # Polarity
//
// "energise_to_pass" (the fail-safe default): the actuator is energised for
// reject_pulse at the due time only for parts that pass. Every other part —
// NG, ERROR, no verdict in time, unknown to the daemon, or any part while
// the actuator is halted, faulted, dead or unpowered — gets no pulse and is
// rejected. A reject decided while an earlier pass pulse is still active
// cuts that pulse short: the reject wins.
//
// "energise_to_reject": the actuator is energised for reject_pulse at the
// due time of every rejected part. It rests de-energised, so parts pass
// when the daemon is dead; while halted or faulted it is held energised.
//
// # Safe state
//
// Halt, Close, a failed output write and a FIFO overflow put every output
// into its safe state: the actuator rejects (de-energised for
// energise_to_pass, held energised for energise_to_reject), the ready lamp
// is off, the fault lamp on, the OK/NG/strobe lines off. A FIFO overflow
// latches until ClearFault; Halt and Close are final.
//
// # Health
//
// The Actuator is an inspection.HealthReporter: Problems names a latched
// fault, halted outputs, and the parts of the last minute whose fate was
// not decided by their verdict (no verdict at the actuation time, or a
// result that arrived after its part had passed the actuator). The daemon
// makes the station unhealthy (/healthz 503, status page) and adds them to
// every Result's Faults, so no result says OK unnoticed while the line
// rejects. It is an inspection.FaultClearer: ClearFault, reached through
// POST /api/clear-fault, the MQTT clear_fault command and SIGHUP, releases
// a latched fault and reports gpio_fault_cleared.
//
// # Inputs
//
// The part-present input turns each edge (debounced by the kernel) into a
// part ID, registers the part at the edge's timestamp and asks the Host
// given to Start for the trigger from a goroutine of its own. The
// encoder input counts rising edges. Lost edges — gaps in the kernel's
// per-line sequence numbers, or a full hand-off queue — are reported as
// EventLostEdges; the encoder count adds the lost edges back.
//
// Product code lines (Options.ProductLines, changeover source "gpio") are
// requested as plain inputs (Chip.Levels) and read in the part-present
// edge handler, least significant bit first; the code travels with the
// part to the trigger goroutine, which hands it to the host's
// inspection.ProductSelector.SelectProductCode right before the part's
// Trigger — unless it is the code selected last (a refused code is tried
// again at the next part; 0 selects nothing). Sim's SetInput and SetCode,
// and its InputHandler over HTTP, drive the code lines in tests and demos.
package gpio

package gpio

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/inspectd/inspectd/config"
)

// Output is one requested output line. Values are logical: true is the
// active (energised) level; active-low inversion happens below it.
type Output interface {
	// Set drives the line to v. It must be fast (one ioctl).
	Set(v bool) error
	// Close releases the line; the kernel reverts it to its default.
	Close() error
}

// Tag says why an output changed; chips that record changes (Sim) keep it.
type Tag struct {
	PartID   string    // the part the change is for; "" for lamps and safe state
	Intended time.Time // when the change was due; zero when not scheduled
	Reason   string    // "pass", "reject", "release", "safe", "ready", "fault", "ok", "ng", "strobe"
}

// TaggedOutput is implemented by outputs that record why they changed.
// The Actuator uses SetTagged when available.
type TaggedOutput interface {
	Output
	SetTagged(v bool, t Tag) error
}

// Edge is one input edge event.
type Edge struct {
	Line    string    // the line as configured (name or offset)
	Rising  bool      // inactive → active (after active-low inversion)
	Time    time.Time // when the kernel saw it, on this process's monotonic clock
	Seq     uint32    // sequence number in the request (0 when unknown)
	LineSeq uint32    // sequence number on this line, from 1 (0 when unknown)
}

// EdgeHandler receives edges. It runs on the chip's event goroutine and
// must not block.
type EdgeHandler func(Edge)

// Input is one requested input line delivering edges.
type Input interface {
	// Close stops the events and releases the line.
	Close() error
}

// Bias of an input line.
type Bias int

// Biases.
const (
	BiasAsIs Bias = iota
	BiasDisabled
	BiasPullUp
	BiasPullDown
)

// Drive of an output line.
type Drive int

// Drives.
const (
	DrivePushPull Drive = iota
	DriveOpenDrain
	DriveOpenSource
)

// EdgeKind selects the edges an input reports.
type EdgeKind int

// Edge kinds.
const (
	EdgeRising EdgeKind = iota
	EdgeFalling
	EdgeBoth
)

// OutputOptions configure an output line.
type OutputOptions struct {
	ActiveLow bool
	Drive     Drive
	Initial   bool // logical level requested with the line
}

// InputOptions configure an input line.
type InputOptions struct {
	ActiveLow   bool
	Bias        Bias
	Edges       EdgeKind
	Debounce    time.Duration
	EventBuffer int // kernel edge-event buffer, in events
}

// LevelReader is a group of input lines requested without edge events,
// whose levels are read on demand (the product code lines of changeover
// source "gpio").
type LevelReader interface {
	// Read returns the logical level of each line (true = active, after
	// active-low inversion), in the order requested. It must be fast (one
	// ioctl per line at most): edge handlers call it.
	Read() ([]bool, error)
	// Close releases the lines.
	Close() error
}

// Chip is a GPIO chip (the Linux driver or Sim).
type Chip interface {
	// Output requests line (a name or an offset) as an output.
	Output(line string, o OutputOptions) (Output, error)
	// Input requests line as an edge-reporting input; h receives its
	// edges and must not block.
	Input(line string, o InputOptions, h EdgeHandler) (Input, error)
	// Levels requests lines as plain inputs (o's Edges, Debounce and
	// EventBuffer are not used) read with LevelReader.Read.
	Levels(lines []string, o InputOptions) (LevelReader, error)
	// Close releases the chip (lines are closed separately).
	Close() error
}

// ErrNoChip is wrapped by Open when the chip does not exist.
var ErrNoChip = errors.New("no such device")

// Open opens the chip named by cfg.Chip: "sim" returns a new Sim, any
// other name the Linux character-device driver (an error elsewhere).
func Open(cfg config.GPIO) (Chip, error) {
	if cfg.Chip == "sim" {
		return NewSim(), nil
	}
	return openChip(cfg.Chip)
}

// LineSpec is a parsed line reference: an offset on the configured chip
// or a line name.
type LineSpec struct {
	Offset int    // ≥ 0 when the line is given by offset, -1 otherwise
	Name   string // the name when given by name
}

// ParseLine parses a configured line: digits are an offset, anything else
// is a line name.
func ParseLine(s string) (LineSpec, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return LineSpec{}, errors.New("empty line")
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n < 0 {
			return LineSpec{}, fmt.Errorf("line %q: negative offset", s)
		}
		return LineSpec{Offset: n}, nil
	}
	return LineSpec{Offset: -1, Name: t}, nil
}

// String returns the spec as configured.
func (l LineSpec) String() string {
	if l.Offset >= 0 {
		return strconv.Itoa(l.Offset)
	}
	return l.Name
}

// ParseBias maps the config value of gpio.bias (config defaults it).
func ParseBias(s string) (Bias, error) {
	switch s {
	case "as_is":
		return BiasAsIs, nil
	case "disabled":
		return BiasDisabled, nil
	case "pull_up":
		return BiasPullUp, nil
	case "pull_down":
		return BiasPullDown, nil
	}
	return 0, fmt.Errorf("gpio.bias %q: want as_is, disabled, pull_up or pull_down", s)
}

// ParseDrive maps the config value of gpio.drive (config defaults it).
func ParseDrive(s string) (Drive, error) {
	switch s {
	case "push_pull":
		return DrivePushPull, nil
	case "open_drain":
		return DriveOpenDrain, nil
	case "open_source":
		return DriveOpenSource, nil
	}
	return 0, fmt.Errorf("gpio.drive %q: want push_pull, open_drain or open_source", s)
}

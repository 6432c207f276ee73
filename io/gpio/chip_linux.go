//go:build linux

package gpio

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/warthog618/go-gpiocdev"
	"golang.org/x/sys/unix"
)

// linuxChip drives lines through the GPIO character device.
type linuxChip struct {
	name string
	chip *gpiocdev.Chip

	mu   sync.Mutex
	used map[string]string // "chip:offset" → configured line
}

func openChip(name string) (Chip, error) {
	c, err := gpiocdev.NewChip(name, gpiocdev.WithConsumer("inspectd"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("gpio.chip %q: %w", name, ErrNoChip)
		}
		return nil, fmt.Errorf("gpio.chip %q: %w", name, err)
	}
	return &linuxChip{name: name, chip: c, used: map[string]string{}}, nil
}

// resolve finds the chip and offset of a configured line: an offset on
// this chip, or a name on this chip first, then on every chip.
func (c *linuxChip) resolve(line string) (string, int, error) {
	spec, err := ParseLine(line)
	if err != nil {
		return "", 0, err
	}
	chip, off := c.name, spec.Offset
	if spec.Offset < 0 {
		if off, err = c.chip.FindLine(spec.Name); err != nil {
			chip, off, err = gpiocdev.FindLine(spec.Name)
			if err != nil {
				return "", 0, fmt.Errorf("line %q: not found on %s or any other chip", line, c.name)
			}
		}
	} else if off >= c.chip.Lines() {
		return "", 0, fmt.Errorf("line %q: offset out of range, %s has %d lines", line, c.name, c.chip.Lines())
	}
	key := fmt.Sprintf("%s:%d", chip, off)
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, dup := c.used[key]; dup {
		return "", 0, fmt.Errorf("line %q is %s offset %d, already requested as %q; each line has one role", line, chip, off, other)
	}
	c.used[key] = line
	return chip, off, nil
}

func (c *linuxChip) Output(line string, o OutputOptions) (Output, error) {
	chip, off, err := c.resolve(line)
	if err != nil {
		return nil, err
	}
	l, err := gpiocdev.RequestLine(chip, off, outputReqOptions(o)...)
	if err != nil {
		return nil, fmt.Errorf("request output %q (%s offset %d): %w", line, chip, off, err)
	}
	return &linuxOutput{l: l, name: line}, nil
}

func (c *linuxChip) Input(line string, o InputOptions, h EdgeHandler) (Input, error) {
	chip, off, err := c.resolve(line)
	if err != nil {
		return nil, err
	}
	eh := func(e gpiocdev.LineEvent) { h(convertEvent(line, e)) }
	l, err := gpiocdev.RequestLine(chip, off, inputReqOptions(o, eh)...)
	if err != nil {
		return nil, fmt.Errorf("request input %q (%s offset %d): %w", line, chip, off, err)
	}
	return l, nil
}

// Levels requests each line as a plain input; Read reads them one ioctl
// each (GPIO_V2_LINE_GET_VALUES_IOCTL), in order. On error the lines
// already requested are released.
func (c *linuxChip) Levels(lines []string, o InputOptions) (LevelReader, error) {
	r := &linuxLevels{}
	for _, line := range lines {
		chip, off, err := c.resolve(line)
		if err != nil {
			r.Close()
			return nil, err
		}
		l, err := gpiocdev.RequestLine(chip, off, levelReqOptions(o)...)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("request input %q (%s offset %d): %w", line, chip, off, err)
		}
		r.lines, r.names = append(r.lines, l), append(r.names, line)
	}
	return r, nil
}

func (c *linuxChip) Close() error { return c.chip.Close() }

// linuxLevels are the lines of Levels.
type linuxLevels struct {
	lines []*gpiocdev.Line
	names []string
}

func (r *linuxLevels) Read() ([]bool, error) {
	out := make([]bool, len(r.lines))
	for i, l := range r.lines {
		v, err := l.Value()
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", r.names[i], err)
		}
		out[i] = v != 0
	}
	return out, nil
}

func (r *linuxLevels) Close() error {
	var first error
	for _, l := range r.lines {
		if err := l.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// levelReqOptions maps InputOptions to the request options of a plain
// input (no edge detection: the kernel only reports the level).
func levelReqOptions(o InputOptions) []gpiocdev.LineReqOption {
	opts := []gpiocdev.LineReqOption{gpiocdev.WithConsumer("inspectd"), gpiocdev.AsInput}
	if o.ActiveLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	switch o.Bias {
	case BiasDisabled:
		opts = append(opts, gpiocdev.WithBiasDisabled)
	case BiasPullUp:
		opts = append(opts, gpiocdev.WithPullUp)
	case BiasPullDown:
		opts = append(opts, gpiocdev.WithPullDown)
	}
	return opts
}

type linuxOutput struct {
	l    *gpiocdev.Line
	name string
}

func (o *linuxOutput) Set(v bool) error {
	n := 0
	if v {
		n = 1
	}
	if err := o.l.SetValue(n); err != nil {
		return fmt.Errorf("set %q: %w", o.name, err)
	}
	return nil
}

func (o *linuxOutput) Close() error { return o.l.Close() }

// outputReqOptions maps OutputOptions to go-gpiocdev request options.
func outputReqOptions(o OutputOptions) []gpiocdev.LineReqOption {
	initial := 0
	if o.Initial {
		initial = 1
	}
	opts := []gpiocdev.LineReqOption{gpiocdev.WithConsumer("inspectd"), gpiocdev.AsOutput(initial)}
	if o.ActiveLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	switch o.Drive {
	case DriveOpenDrain:
		opts = append(opts, gpiocdev.AsOpenDrain)
	case DriveOpenSource:
		opts = append(opts, gpiocdev.AsOpenSource)
	default:
		opts = append(opts, gpiocdev.AsPushPull)
	}
	return opts
}

// inputReqOptions maps InputOptions to go-gpiocdev request options.
func inputReqOptions(o InputOptions, eh gpiocdev.EventHandler) []gpiocdev.LineReqOption {
	opts := levelReqOptions(o)
	switch o.Edges {
	case EdgeFalling:
		opts = append(opts, gpiocdev.WithFallingEdge)
	case EdgeBoth:
		opts = append(opts, gpiocdev.WithBothEdges)
	default:
		opts = append(opts, gpiocdev.WithRisingEdge)
	}
	if o.Debounce > 0 {
		opts = append(opts, gpiocdev.WithDebounce(o.Debounce))
	}
	if o.EventBuffer > 0 {
		opts = append(opts, gpiocdev.WithEventBufferSize(o.EventBuffer))
	}
	opts = append(opts, gpiocdev.WithMonotonicEventClock, gpiocdev.WithEventHandler(eh))
	return opts
}

// convertEvent turns a kernel event (CLOCK_MONOTONIC timestamp) into an
// Edge on this process's clock.
func convertEvent(line string, e gpiocdev.LineEvent) Edge {
	now := time.Now()
	var ts unix.Timespec
	at := now
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		if age := time.Duration(ts.Nano()) - e.Timestamp; age >= 0 && age < time.Minute {
			at = now.Add(-age)
		}
	}
	return Edge{Line: line, Rising: e.Type == gpiocdev.LineEventRisingEdge, Time: at, Seq: e.Seqno, LineSeq: e.LineSeqno}
}

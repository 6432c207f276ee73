package evaluate

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/inspectd/inspectd/logging"
)

// progressBarWidth is the number of cells of the progress bar.
const progressBarWidth = 24

// plainProgressInterval is the least time between two lines of the plain
// (non-terminal) progress output.
const plainProgressInterval = 5 * time.Second

// progress reports the progress of one category as a line
//
//	bottle      [##########--------------]  35/83   24.1 img/s  ETA 2s
//
// On a terminal the line is a bar redrawn in place with '\r' after every
// image. Anywhere else (a file, a pipe: a log) carriage returns would
// pile up into one huge line, so it writes whole, newline-terminated lines
// instead: one at the start, then at most one every plainProgressInterval,
// and the last. A nil writer draws nothing.
type progress struct {
	w       io.Writer
	name    string
	total   int
	now     func() time.Time
	start   time.Time
	lastLen int
	drawn   bool // terminal: a bar is on screen, not yet ended with '\n'

	plain       bool      // not a terminal: whole lines, rate-limited
	done        int       // images done at the last update
	lastPrint   time.Time // plain: when the last line was written
	printedDone int       // plain: done of the last line written (-1: none)
}

// newProgress starts the clock of a category's progress output. terminal
// tells whether w is a terminal (nil: logging.IsTerminal).
func newProgress(w io.Writer, name string, total int, now func() time.Time, terminal func(io.Writer) bool) *progress {
	p := &progress{w: w, name: name, total: total, now: now, printedDone: -1}
	if w != nil {
		if terminal == nil {
			terminal = logging.IsTerminal
		}
		p.plain = !terminal(w)
		p.start = now()
		p.show(0, true)
	}
	return p
}

// update reports done images.
func (p *progress) update(done int) {
	if p.w != nil {
		p.done = done
		p.show(done, false)
	}
}

// show redraws the bar (terminal) or writes a line when the last one is
// at least plainProgressInterval old or force is set (plain).
func (p *progress) show(done int, force bool) {
	if !p.plain {
		p.draw(done)
		return
	}
	t := p.now()
	if !force && t.Sub(p.lastPrint) < plainProgressInterval {
		return
	}
	p.lastPrint = t
	p.printedDone = done
	fmt.Fprintln(p.w, p.line(done))
}

// line is the progress line for done images.
func (p *progress) line(done int) string {
	filled := 0
	if p.total > 0 {
		filled = min(max(done, 0), p.total) * progressBarWidth / p.total
	}
	bar := strings.Repeat("#", filled) + strings.Repeat("-", progressBarWidth-filled)
	rate, eta := "    - img/s", "ETA -"
	if el := p.now().Sub(p.start).Seconds(); done > 0 && el > 0 {
		r := float64(done) / el
		rate = fmt.Sprintf("%5.1f img/s", r)
		eta = "ETA " + (time.Duration(float64(p.total-done) / r * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("%-12s [%s] %*d/%d  %s  %s", p.name, bar, len(fmt.Sprint(p.total)), done, p.total, rate, eta)
}

// draw redraws the terminal bar for done images, padded to cover the
// previous one.
func (p *progress) draw(done int) {
	line := p.line(done)
	pad := ""
	if n := p.lastLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.lastLen = len(line)
	fmt.Fprint(p.w, "\r"+line+pad)
	p.drawn = true
}

// finish ends the output: the terminal bar's line, or (plain) the last
// state when the last line written is older.
func (p *progress) finish() {
	if p.w == nil {
		return
	}
	if p.plain {
		if p.printedDone != p.done {
			p.show(p.done, true)
		}
		return
	}
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// abort ends the output after an error or cancellation.
func (p *progress) abort() { p.finish() }

package evaluate

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progressBarWidth is the number of cells of the progress bar.
const progressBarWidth = 24

// progress draws a single-line progress bar for one category:
//
//	bottle      [##########--------------]  35/83   24.1 img/s  ETA 2s
//
// redrawn in place with '\r'. A nil writer draws nothing.
type progress struct {
	w       io.Writer
	name    string
	total   int
	now     func() time.Time
	start   time.Time
	lastLen int
	drawn   bool
}

// newProgress starts the clock of a category's progress bar.
func newProgress(w io.Writer, name string, total int, now func() time.Time) *progress {
	p := &progress{w: w, name: name, total: total, now: now}
	if w != nil {
		p.start = now()
		p.draw(0)
	}
	return p
}

// update redraws the bar after done images.
func (p *progress) update(done int) {
	if p.w != nil {
		p.draw(done)
	}
}

// draw writes the line for done images, padded to cover the previous one.
func (p *progress) draw(done int) {
	filled := 0
	if p.total > 0 {
		filled = done * progressBarWidth / p.total
	}
	bar := strings.Repeat("#", filled) + strings.Repeat("-", progressBarWidth-filled)
	rate, eta := "    - img/s", "ETA -"
	if el := p.now().Sub(p.start).Seconds(); done > 0 && el > 0 {
		r := float64(done) / el
		rate = fmt.Sprintf("%5.1f img/s", r)
		eta = "ETA " + (time.Duration(float64(p.total-done) / r * float64(time.Second))).Round(time.Second).String()
	}
	line := fmt.Sprintf("%-12s [%s] %*d/%d  %s  %s", p.name, bar, len(fmt.Sprint(p.total)), done, p.total, rate, eta)
	pad := ""
	if n := p.lastLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.lastLen = len(line)
	fmt.Fprint(p.w, "\r"+line+pad)
	p.drawn = true
}

// finish ends the line.
func (p *progress) finish() {
	if p.w != nil && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// abort ends the line after an error or cancellation.
func (p *progress) abort() { p.finish() }

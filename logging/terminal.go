package logging

import (
	"io"
	"os"
)

// IsTerminal reports whether w is a terminal: an *os.File on a character
// device. Progress output redraws a line with '\r' only there; in a file
// or a pipe (a log) it writes whole lines, a few at most per minute.
// (/dev/null counts as a terminal too, harmlessly: nobody reads it.)
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

package logging

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Regular files, pipes and buffers are not terminals; a character device
// is.
func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var nilFile *os.File
	for name, wr := range map[string]io.Writer{"file": f, "pipe": w, "buffer": &bytes.Buffer{}, "nil *os.File": nilFile} {
		if IsTerminal(wr) {
			t.Errorf("IsTerminal(%s) = true", name)
		}
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if !IsTerminal(null) {
		t.Errorf("IsTerminal(%s) = false, want true (a character device)", os.DevNull)
	}
}

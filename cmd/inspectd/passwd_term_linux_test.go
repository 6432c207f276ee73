package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the controller and the terminal of a new
// pseudo-terminal.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptmx, tty
}

// TestPasswdOnTerminal: on a terminal passwd asks twice, with the echo
// off (the password never comes back on the terminal), and restores the
// echo.
func TestPasswdOnTerminal(t *testing.T) {
	ptmx, tty := openPTY(t)
	old := os.Stdin
	os.Stdin = tty
	defer func() { os.Stdin = old }()

	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCLI(t, "passwd", "--user", "anna", "--role", "admin")
		done <- result{code, stdout, stderr}
	}()
	// Type the password twice, a line at a time, once the echo is off.
	waitEchoOff := func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
			if err == nil && tio.Lflag&unix.ECHO == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the echo was never switched off")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitEchoOff()
	if _, err := ptmx.Write([]byte("terminal-secret\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	waitEchoOff()
	if _, err := ptmx.Write([]byte("terminal-secret\n")); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("passwd did not finish")
	}
	if r.code != 0 || !strings.HasPrefix(r.stdout, "anna:admin:$2a$12$") || !strings.Contains(r.stderr, "Password: ") || !strings.Contains(r.stderr, "Repeat: ") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// Whatever the terminal shows back: never the password. (The read
	// may block for good once everything is read; the goroutine is left.)
	echoed := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		n, _ := ptmx.Read(buf)
		echoed <- string(buf[:n])
	}()
	select {
	case e := <-echoed:
		if strings.Contains(e, "terminal-secret") {
			t.Errorf("the password was echoed: %q", e)
		}
	case <-time.After(300 * time.Millisecond):
	}
	if tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("the echo was not restored: %v", err)
	}
}

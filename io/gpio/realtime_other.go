//go:build !linux

package gpio

import (
	"errors"
	"runtime"
	"time"
)

// enterRealtime locks the goroutine to its thread; realtime priority is
// Linux-only.
func enterRealtime() error {
	runtime.LockOSThread()
	return errors.New("realtime priority is only available on Linux")
}

// sleepUntil sleeps until t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

//go:build linux

package gpio

import (
	"errors"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// realtimePriority is the SCHED_FIFO priority of the reject scheduler's
// thread: above every normal thread (the engine's), below the kernel's
// own interrupt threads (50).
const realtimePriority = 10

// enterRealtime locks the calling goroutine to its OS thread and gives the
// thread SCHED_FIFO priority, so that it runs the moment its sleep ends
// even while the engine keeps every core busy. It needs root,
// CAP_SYS_NICE or an RLIMIT_RTPRIO of at least realtimePriority (the unit
// file sets LimitRTPRIO); without them the thread keeps normal priority
// and the error says why.
func enterRealtime() error {
	runtime.LockOSThread()
	attr := unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: realtimePriority}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		if errors.Is(err, unix.EPERM) {
			return errors.New("no permission for SCHED_FIFO (run with LimitRTPRIO=20 or CAP_SYS_NICE)")
		}
		return err
	}
	return nil
}

// sleepUntil sleeps in the kernel until t on the monotonic clock: a thread
// with realtime priority wakes within microseconds of t, where the Go
// runtime's timers can wake a millisecond or more late on a busy box.
func sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		time.Sleep(d)
		return
	}
	ts := unix.NsecToTimespec(now.Nano() + d.Nanoseconds())
	for {
		err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
		if err != unix.EINTR {
			return
		}
	}
}

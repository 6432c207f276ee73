package daemon

import (
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells the service manager about the daemon's state (systemd's
// sd_notify protocol: READY=1, STATUS=…, WATCHDOG=1, STOPPING=1).
type Notifier interface {
	// Notify sends one state line; it reports false when no manager
	// listens (not started by systemd).
	Notify(state string) (bool, error)
	// WatchdogInterval is the manager's watchdog timeout, 0 when disabled.
	WatchdogInterval() time.Duration
}

// Systemd is the Notifier for a daemon started by systemd: it writes to
// $NOTIFY_SOCKET and reads the watchdog period from $WATCHDOG_USEC.
type Systemd struct{}

// Notify sends state to $NOTIFY_SOCKET.
func (Systemd) Notify(state string) (bool, error) { return sddaemon.SdNotify(false, state) }

// WatchdogInterval returns $WATCHDOG_USEC when it is meant for this
// process, else 0.
func (Systemd) WatchdogInterval() time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

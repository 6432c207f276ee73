//go:build !unix

package mqtt

import (
	"os"
	"time"
)

// lockFile does nothing where flock is not available; bbolt's own lock
// still refuses a second process.
func lockFile(*os.File, time.Duration) error { return nil }

// openNoFollow opens path read-only.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

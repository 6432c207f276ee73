//go:build workstation

// Package gocompute opens the pure-Go GoMLX backend the trainers run on,
// configured the one way that is known not to hang.
//
// The backend's default executes independent graph nodes in parallel on a
// shared worker pool, and a large matrix product inside such a node fans
// out again on the same pool (workerspool.Saturate) without giving its own
// worker back. On 2 cores (4 workers) two concurrent products can hold every
// worker while each waits for a free one: a deadlock, seen here once in a
// metal_plate IMM training that stopped at step 472 with all goroutines in
// sync.Cond.Wait (github.com/gomlx/compute v0.1.6). With "ops_sequential"
// the nodes run one after another from the caller's goroutine, so only the
// products fan out and nothing waits on itself.
package gocompute

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
)

// Config is the backend configuration string New uses.
const Config = "ops_sequential"

// New returns a pure-Go backend that runs graph nodes sequentially.
func New() (compute.Backend, error) {
	return gobackend.New(Config)
}

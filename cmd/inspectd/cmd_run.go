package main

import (
	"context"
	"errors"
	"fmt"
)

// errDaemonNotBuilt is returned by `inspectd run` until the inspection
// pipeline exists; the daemon must never pretend to inspect.
var errDaemonNotBuilt = errors.New("the inspection daemon is not built yet in this version; nothing was started")

func runDaemon(_ context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "run", "run [-c FILE]\n\nRuns the inspection daemon with the given configuration.")
	path := addConfigFlag(fs)
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if _, err := loadConfig(*path); err != nil {
		return err
	}
	return failure(fmt.Errorf("run: %s is valid, but %w", *path, errDaemonNotBuilt))
}

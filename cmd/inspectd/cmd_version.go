package main

import (
	"context"
	"fmt"

	"github.com/inspectd/inspectd/buildinfo"
)

func printVersion(_ context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "version", "version\n\nPrints the version, commit, Go version and build flavour (edge or workstation).")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	fmt.Fprint(s.stdout, buildinfo.Get().String())
	return nil
}

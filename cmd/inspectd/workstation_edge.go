//go:build !workstation

package main

import (
	"context"
)

// workstationCommands in the edge build answers the workstation-only
// command names with an explanation and exit status 2.
func workstationCommands() []command {
	var cmds []command
	for _, c := range []struct{ name, summary string }{
		{"train", "train a model bundle (workstation build only)"},
		{"eval", "evaluate a bundle on a dataset (workstation build only)"},
		{"dataset", "prepare datasets (workstation build only)"},
	} {
		name := c.name
		cmds = append(cmds, command{name, c.summary, func(context.Context, streams, []string) error {
			return usageErr("%s needs the workstation build; this binary is the edge build (build it with `make build-workstation` or `go build -tags workstation ./cmd/inspectd`)", name)
		}})
	}
	return cmds
}

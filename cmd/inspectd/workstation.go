//go:build workstation

package main

import (
	"context"
	"fmt"
)

// workstationCommands lists the training and evaluation commands. Those
// whose capability has not landed yet say so and exit 1.
func workstationCommands() []command {
	notYet := func(name string) func(context.Context, streams, []string) error {
		return func(context.Context, streams, []string) error {
			return failure(fmt.Errorf("%s is not built yet in this version", name))
		}
	}
	return []command{
		{"train", "train a model bundle from good images", notYet("train")},
		{"eval", "evaluate a bundle on a dataset (metrics, latency, HTML report)", evalCommand},
		{"dataset", "prepare datasets: rto (rotated/shifted copy), synth (synthetic parts)", datasetCommand},
	}
}

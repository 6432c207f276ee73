package main

import (
	"context"
	"errors"
)

func runBench(_ context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "bench", "bench [flags]\n\nTimes the inference stages on this machine.")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	return failure(errors.New("bench: the inference engine is not built yet in this version"))
}

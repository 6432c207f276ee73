package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/models/bundle"
)

// addConfigFlag registers -c/-config and returns the value pointer.
func addConfigFlag(fs interface {
	StringVar(p *string, name, value, usage string)
}) *string {
	p := new(string)
	fs.StringVar(p, "c", "/etc/inspectd/inspectd.toml", "configuration `file`")
	fs.StringVar(p, "config", "/etc/inspectd/inspectd.toml", "same as -c")
	return p
}

// loadConfig loads path, mapping unreadable files to exit 2 and invalid
// configurations to exit 1.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg, nil
	}
	if errors.Is(err, config.ErrInvalid) {
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("%s is invalid:\n%w", path, err)}
	}
	return nil, &exitError{code: exitUsage, err: err}
}

func checkConfig(_ context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "check-config", "check-config [-c FILE]\n\nValidates the configuration file and prints every problem, one per line, then\nverifies the model bundle it names as the daemon does at start-up (manifest, every\nchecksum, graph shapes, template).\nExit status: 0 valid, 1 invalid, 2 unreadable file or bad usage.")
	path := addConfigFlag(fs)
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := verifyBundle(cfg); err != nil {
		return err
	}
	if cfg.MQTT.Enabled {
		if err := mqtt.CheckFiles(cfg.MQTT); err != nil {
			return &exitError{code: exitFailure, err: fmt.Errorf("%s is invalid:\n%s: %v", cfg.File, cfg.File, err)}
		}
	}
	fmt.Fprintf(s.stdout, "%s: configuration is valid; model bundle %s verified\n", *path, cfg.Model.Bundle)
	return nil
}

// verifyBundle loads the configured bundle with every check the daemon
// makes before its first part, reporting a failure as a problem of the
// model.bundle key.
func verifyBundle(cfg *config.Config) error {
	if _, err := bundle.Load(cfg.Model.Bundle); err != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("%s is invalid:\n%s", cfg.File, cfg.Problem("model.bundle", "%v", err))}
	}
	return nil
}

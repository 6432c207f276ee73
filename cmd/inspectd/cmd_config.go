package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/inspectd/inspectd/config"
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
	fs := newFlagSet(s, "check-config", "check-config [-c FILE]\n\nValidates the configuration file and prints every problem, one per line, then\nverifies the model bundle it names as the daemon does at start-up (manifest, every\nchecksum, graph shapes and baked-in values, template) and what the daemon needs of\nthis machine: the directories it writes, the HTTP listen address, ONNX Runtime and\nthe execution provider, the GPIO chip, the camera source, the MQTT files.\nThe configuration must be a regular file of at most 1 MiB.\nExit status: 0 valid, 1 invalid, 2 unreadable file or bad usage.")
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
	ps := bundleProblems(cfg)
	var env config.Problems
	if err := verifyEnvironment(cfg); errors.As(err, &env) {
		ps = append(ps, env...)
	} else if err != nil {
		return failure(fmt.Errorf("%s: %w", cfg.File, err))
	}
	if len(ps) > 0 {
		sort.SliceStable(ps, func(i, j int) bool { return lineOrder(ps[i]) < lineOrder(ps[j]) })
		return &exitError{code: exitFailure, err: fmt.Errorf("%s is invalid:\n%w", cfg.File, ps)}
	}
	if len(cfg.Products) > 0 {
		var names []string
		for _, p := range cfg.Products {
			names = append(names, fmt.Sprintf("%s (%s)", p.Name, p.Bundle))
		}
		fmt.Fprintf(s.stdout, "%s: configuration is valid; model bundles of %d products verified: %s; this machine has what it needs\n", *path, len(names), strings.Join(names, ", "))
		return nil
	}
	fmt.Fprintf(s.stdout, "%s: configuration is valid; model bundle %s verified; this machine has what it needs\n", *path, cfg.Model.Bundle)
	return nil
}

// lineOrder sorts problems by line, those without one last.
func lineOrder(p config.Problem) int {
	if p.Line <= 0 {
		return 1 << 30
	}
	return p.Line
}

// bundleProblems loads every configured bundle (model.bundle, or each
// [[product]]'s) with every check the daemon makes before its first part
// and returns a problem of the bundle's key (model.bundle, or
// product[N].bundle naming the product) for each that does not load.
func bundleProblems(cfg *config.Config) config.Problems {
	var ps config.Problems
	if len(cfg.Products) == 0 {
		if _, err := bundle.Load(cfg.Model.Bundle); err != nil {
			ps = append(ps, cfg.Problem("model.bundle", "%v", err))
		}
		return ps
	}
	for i, p := range cfg.Products {
		if _, err := bundle.Load(p.Bundle); err != nil {
			ps = append(ps, cfg.Problem(fmt.Sprintf("product[%d].bundle", i+1), "product %q: %v", p.Name, err))
		}
	}
	return ps
}

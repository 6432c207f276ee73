// Command inspectd is the inline visual defect-inspection daemon and its
// tools: configuration check, benchmarks and, in the workstation build,
// dataset preparation, training and evaluation.
//
// main only sets up signals and exit codes; run dispatches subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/inspectd/inspectd/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = &exitError{code: exitInterrupted, err: errors.New("interrupted; nothing was written")}
	}
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// Exit codes, shared by every subcommand.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem (e.g. invalid config)
	exitUsage   = 2 // bad usage, unreadable input, or a command this build lacks
	// exitInterrupted is the shell's convention for a command ended by
	// SIGINT (128 + 2).
	exitInterrupted = 130
)

// exitError carries an exit code; its message (if any) is printed once.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func failure(err error) error { return &exitError{code: exitFailure, err: err} }

// exitCode prints err (if it has a message) and maps it to an exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "inspectd: %s\n", msg)
	}
	return code
}

// streams are the standard output and error of a command.
type streams struct {
	stdout, stderr io.Writer
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, s streams, args []string) error
}

// commands lists every subcommand of this build.
func commands() []command {
	cmds := []command{
		{"run", "run the inspection daemon", runDaemon},
		{"check-config", "validate a configuration file", checkConfig},
		{"version", "print version, commit, Go version and build flavour", printVersion},
		{"bench", "time the inference stages on this machine", runBench},
		{"keys", "generate and show the publisher keys that sign bundle archives", keysCommand},
		{"sign", "sign a bundle archive for the fleet rollout", signCommand},
		{"pack", "pack a verified bundle into an archive for the fleet rollout", packCommand},
		{"fleet", "install, activate or roll back a signed bundle on many stations over MQTT", runFleet},
		{"passwd", "print a users-file line (bcrypt) for the status page's login", passwdCommand},
	}
	cmds = append(cmds, workstationCommands()...)
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

// run dispatches args to a subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := streams{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		printUsage(stderr)
		return &exitError{code: exitUsage}
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			// `inspectd help bench` = `inspectd bench --help`.
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		printUsage(stdout)
		return nil
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, s, args[1:])
		}
	}
	printUsage(stderr)
	return usageErr("unknown command %q", name)
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: inspectd <command> [flags]\n\nInline visual defect inspection (%s build).\n\nCommands:\n", buildinfo.Flavour)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'inspectd <command> --help' for the flags of a command.\n")
}

// newFlagSet returns a flag set for a subcommand whose --help prints the
// synopsis and flags to stdout.
func newFlagSet(s streams, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(s.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: inspectd %s\n", synopsis)
		if hasFlags(fs) {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseFlags parses args; --help prints usage to stdout and ends the
// command successfully, other errors are usage errors.
func parseFlags(fs *flag.FlagSet, s streams, args []string) (done bool, err error) {
	// The flag package prints the usage itself on -help and on errors;
	// print it once, here, to the right stream.
	usage := fs.Usage
	fs.Usage = func() {}
	err = fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(s.stdout)
			fs.Usage()
			return true, nil
		}
		fs.Usage()
		return true, &exitError{code: exitUsage, err: nil}
	}
	return false, nil
}

// noArgs rejects positional arguments.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageErr("%s: unexpected argument %q (flags go before arguments; see --help)", fs.Name(), strings.Join(fs.Args(), " "))
	}
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// Package buildinfo reports what was built: the release version and commit
// (stamped by the Makefile through -ldflags), the Go toolchain, and the
// build flavour (edge or workstation, chosen by the "workstation" build tag).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set at link time:
//
//	go build -ldflags "-X github.com/inspectd/inspectd/buildinfo.Version=1.2.0 -X github.com/inspectd/inspectd/buildinfo.Commit=abc123"
//
// Without them, Commit falls back to the VCS revision Go embeds in the binary.
var (
	Version = "0.0.0-dev"
	Commit  = ""
)

// Info describes the running binary.
type Info struct {
	Version   string
	Commit    string
	Modified  bool // built from a tree with uncommitted changes
	GoVersion string
	Flavour   string // "edge" or "workstation"
	Platform  string // GOOS/GOARCH
}

// Get returns the build information of the running binary.
func Get() Info {
	info := Info{
		Version:   Version,
		Commit:    Commit,
		GoVersion: runtime.Version(),
		Flavour:   Flavour,
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String renders the information as the `inspectd version` output.
func (i Info) String() string {
	commit := i.Commit
	if i.Modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("inspectd %s\ncommit:   %s\ngo:       %s\nflavour:  %s\nplatform: %s\n",
		i.Version, commit, i.GoVersion, i.Flavour, i.Platform)
}

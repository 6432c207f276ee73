// Command printinfo prints buildinfo.Get() for buildinfo's tests, which
// build it with -ldflags and build tags and check what it prints.
package main

import (
	"fmt"

	"github.com/inspectd/inspectd/buildinfo"
)

func main() {
	fmt.Print(buildinfo.Get().String())
	fmt.Printf("workstation: %v\n", buildinfo.Workstation)
}

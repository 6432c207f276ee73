//go:build !workstation

package main

// wantFlavour is what `inspectd version` must print in the edge build,
// decided by this file's build constraint, not by buildinfo.
const wantFlavour = "edge"

//go:build workstation

package main

// wantFlavour is what `inspectd version` must print in the workstation
// build, decided by this file's build constraint, not by buildinfo.
const wantFlavour = "workstation"

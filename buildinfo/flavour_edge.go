//go:build !workstation

package buildinfo

// Flavour is "edge": the daemon build, without training or evaluation.
const Flavour = "edge"

// Workstation reports whether training and evaluation are built in.
const Workstation = false

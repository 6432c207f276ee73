//go:build workstation

package buildinfo

// Flavour is "workstation": the daemon plus training and evaluation.
const Flavour = "workstation"

// Workstation reports whether training and evaluation are built in.
const Workstation = true

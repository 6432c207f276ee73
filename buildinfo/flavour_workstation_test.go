//go:build workstation

package buildinfo

// wantFlavour is what the workstation build must report.
const wantFlavour = "workstation"

//go:build !workstation

package buildinfo

// wantFlavour is what the edge build must report.
const wantFlavour = "edge"

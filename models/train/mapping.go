//go:build workstation

package train

import (
	"fmt"
	"strings"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/train/alm"
	"github.com/inspectd/inspectd/models/train/imm"
	"github.com/inspectd/inspectd/models/train/memory"
)

// immConfig maps the recipe onto the IMM trainer's settings.
func immConfig(r *Recipe) imm.Config {
	c := imm.Config{
		Size: r.Align.Size, Height: r.Align.Size, Width: r.Align.Size,
		Channels:     r.Align.Channels,
		Steps:        r.Align.Steps,
		Batch:        r.Align.Batch,
		LearningRate: r.Align.LearningRate,
		Seed:         uint64(r.Seed),
	}
	// imm.Config treats zero ranges as "use the default"; a recipe's zero
	// means "no such motion", so pass a negligible range instead, or turn
	// augmentation off when both are zero.
	const none = 1e-9
	c.MaxRotationDeg, c.MaxShiftFrac = r.Align.MaxRotationDeg, r.Align.MaxShiftFrac
	switch {
	case c.MaxRotationDeg == 0 && c.MaxShiftFrac == 0:
		c.NoAugment = true
	case c.MaxRotationDeg == 0:
		c.MaxRotationDeg = none
	case c.MaxShiftFrac == 0:
		c.MaxShiftFrac = none
	}
	return c.WithDefaults()
}

// almConfig maps the recipe onto the ALM trainer's settings.
func almConfig(r *Recipe) alm.Config {
	c := alm.DefaultConfig()
	c.D, c.MappingLayers = r.ALM.D, r.ALM.MappingLayers
	c.Reduction, c.Centre = r.ALM.Reduction, r.ALM.Centre
	c.Epochs, c.LearningRate, c.LocationsPerStep = r.ALM.Epochs, r.ALM.LearningRate, r.ALM.LocationsPerStep
	c.Seed = uint64(r.Seed)
	c.DGM.Enabled = r.DGM.Enabled
	c.DGM.Fraction = r.DGM.Fraction
	c.DGM.PoolSize, c.DGM.RefreshEpochs = r.DGM.PoolSize, r.DGM.RefreshEpochs
	c.DGM.Shapes, c.DGM.Modes = r.DGM.Shapes, r.DGM.Modes
	c.DGM.SoftEdges, c.DGM.SourceDir, c.DGM.Delta = r.DGM.SoftEdges, r.DGM.SourceDir, r.DGM.Delta
	return c
}

// memoryConfig maps the recipe onto the local-memory builder's settings.
func memoryConfig(r *Recipe) memory.Config {
	return memory.Config{Height: r.Input.Height, Width: r.Input.Width, Layers: r.Memory.Layers, Stride: r.Memory.Stride, D: r.Memory.D, Entries: r.Memory.Entries,
		Global: r.Memory.GlobalEntries, AverageEachLayer: r.Memory.Average == bundle.AverageEachLayer, GlobalInt8: r.Memory.GlobalPrecision == bundle.PrecisionInt8 && r.Memory.GlobalEntries > 0,
		Radius: r.Memory.Radius, BlurSigma: r.ALM.BlurSigma, Threads: r.Threads, Seed: uint64(r.Seed), Folds: r.Calibration.Folds}
}

// memoryEntries describes the memory's entries for the progress log.
func memoryEntries(r *Recipe) string {
	var parts []string
	if r.Memory.Entries > 0 {
		parts = append(parts, fmt.Sprintf("%d entries per cell from within %d cells", r.Memory.Entries, r.Memory.Radius))
	}
	if r.Memory.GlobalEntries > 0 {
		parts = append(parts, fmt.Sprintf("%d shared entries in %s", r.Memory.GlobalEntries, r.Memory.GlobalPrecision))
	}
	return strings.Join(parts, " and ")
}

// memoryWidth describes memory.d for the progress log.
func memoryWidth(d int) string {
	if d == 0 {
		return "every channel"
	}
	return fmt.Sprintf("%d PCA directions", d)
}

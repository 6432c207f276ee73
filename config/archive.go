package config

// Archive keeps inspected images (with heatmap overlays) under a disk budget.
type Archive struct {
	// Save selects which parts are archived: "ng", "all" or "none".
	Save string `toml:"save"`
	// Dir is the archive directory; empty means <state_dir>/archive.
	Dir string `toml:"dir"`
	// MaxSizeMB is the disk budget in MiB of disk space as du counts it
	// (allocated blocks, so a small file takes a whole block); the oldest
	// parts are deleted first.
	MaxSizeMB int `toml:"max_size_mb"`
	// HeatmapOverlay also writes the heatmap blended over the image.
	HeatmapOverlay bool `toml:"heatmap_overlay"`
	// JPEGQuality of archived images, 1 to 100.
	JPEGQuality int `toml:"jpeg_quality"`
}

func (a *Archive) defaults() {
	*a = Archive{Save: "ng", MaxSizeMB: 2048, HeatmapOverlay: true, JPEGQuality: 90}
}

func (a *Archive) resolvePaths(r pathResolver) { a.Dir = r.stateChild(a.Dir, "archive") }

func (a *Archive) validate(v *Checker) {
	v.OneOf("save", a.Save, "ng", "all", "none")
	v.IntRange("max_size_mb", a.MaxSizeMB, 1, 10_000_000, "MB")
	v.IntRange("jpeg_quality", a.JPEGQuality, 1, 100, "")
}

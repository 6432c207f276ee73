//go:build workstation

// Package train turns a folder of good images into a verified model bundle
// (`inspectd train`): it chooses the template, trains the image matching
// module (package imm) on augmented poses, aligns every image, trains the
// anomaly localisation module with synthetic defects (package alm),
// calibrates the thresholds on held-out good images, exports the ONNX
// graphs, and reloads the bundle through the daemon's engine to check that
// it scores the held-out images as training did. Settings come from a
// strict TOML recipe (recipe.example.toml).
package train

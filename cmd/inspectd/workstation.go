//go:build workstation

package main

// workstationCommands lists the training and evaluation commands.
func workstationCommands() []command {
	return []command{
		{"train", "train a model bundle from good images", trainCommand},
		{"eval", "evaluate a bundle on a dataset (metrics, latency, HTML report), or compare two (--compare)", evalCommand},
		{"dataset", "prepare datasets: rto (rotated/shifted copy), synth (synthetic parts), from-archive (reviewed parts)", datasetCommand},
		{"export-tflite", "copy a bundle adding TensorFlow Lite twins of its graphs", exportTFLiteCommand},
	}
}

package main

import (
	"flag"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/infer/tflite"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// tfliteBenchFlags declares bench's flags of the TFLite runtime.
func tfliteBenchFlags(fs *flag.FlagSet, f *benchFlags) {
	fs.StringVar(&f.runtime, "runtime", config.RuntimeONNX, "`runtime` of the align and localise stages: onnxruntime or tflite (the bundle's TFLite twins; the backbone stage stays on ONNX Runtime)")
	fs.StringVar(&f.tfliteLib, "tflite-library", "", "`path` of libtensorflowlite_c.so (--runtime tflite; default: $INSPECTD_TFLITE_LIB or the standard locations)")
	fs.StringVar(&f.tfliteDelegate, "tflite-delegate", config.DelegateXNNPack, "TFLite `delegate` (--runtime tflite): none, xnnpack or gpu")
}

// checkTFLiteBenchFlags refuses TFLite flags without --runtime tflite and
// ONNX Runtime's provider flags with it.
func checkTFLiteBenchFlags(fs *flag.FlagSet, f benchFlags) error {
	switch f.runtime {
	case config.RuntimeONNX:
		for _, name := range []string{"tflite-library", "tflite-delegate"} {
			if flagSet(fs, name) {
				return usageErr("bench: --%s applies to --runtime tflite", name)
			}
		}
		return nil
	case config.RuntimeTFLite:
	default:
		return usageErr("bench: --runtime %q, want onnxruntime or tflite", f.runtime)
	}
	for _, name := range []string{"provider", "tensorrt-fp16", "engine-cache-dir", "pipeline"} {
		if flagSet(fs, name) {
			return usageErr("bench: --%s applies to --runtime onnxruntime", name)
		}
	}
	switch f.tfliteDelegate {
	case config.DelegateNone, config.DelegateXNNPack, config.DelegateGPU:
		return nil
	}
	return usageErr("bench: --tflite-delegate %q, want none, xnnpack or gpu (an external delegate is configured in [model.tflite])", f.tfliteDelegate)
}

// benchEngineFactory returns bench.Options.NewEngine for --runtime (nil:
// ONNX Runtime's) and what closes it. The random bundle gets its TFLite
// twins in memory; a --bundle must carry them (`inspectd export-tflite`).
func benchEngineFactory(f benchFlags) (func(*bundle.Bundle) (*infer.Engine, error), func(), error) {
	if f.runtime != config.RuntimeTFLite {
		return nil, func() {}, nil
	}
	lib, err := tflite.Open(f.tfliteLib)
	if err != nil {
		return nil, nil, err
	}
	opts := tflite.Options{Threads: f.threads, Delegate: f.tfliteDelegate}
	newEngine := func(b *bundle.Bundle) (*infer.Engine, error) {
		if f.bundleDir == "" && b.LocalizeTFLite == nil {
			// The random bundle: its twins, written as export-tflite does.
			twins, err := netdef.TFLiteTwins(b)
			if err != nil {
				return nil, err
			}
			b.LocalizeTFLite, b.AlignTFLite = twins[bundle.LocalizeTFLiteName], twins[bundle.AlignTFLiteName]
		}
		return tflite.NewEngine(lib, b, opts)
	}
	return newEngine, func() { lib.Close() }, nil
}

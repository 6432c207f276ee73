package infer

import (
	"fmt"
	"os"
	"path/filepath"
)

// TensorRTCacheKey names the TensorRT engine-cache directory of a model:
// the first 16 characters of its bundle hash, the GPU ([GPUIdentity]), the
// ONNX Runtime version and the precision, e.g.
// "0123456789abcdef-nvidia-jetson-agx-orin-r36.4.0-ort1.30.0-fp16". A
// restart with the same four finds its engine; any change builds a new one
// beside the old.
func TensorRTCacheKey(modelHash, gpu, runtimeVersion string, fp16 bool) string {
	prec := "fp32"
	if fp16 {
		prec = "fp16"
	}
	return fmt.Sprintf("%s-%s-ort%s-%s", truncate(modelHash, 16), gpu, runtimeVersion, prec)
}

// TimingCacheKey names the TensorRT timing-cache directory, shared by every
// model and precision on one GPU and runtime.
func TimingCacheKey(gpu, runtimeVersion string) string {
	return fmt.Sprintf("timing-%s-ort%s", gpu, runtimeVersion)
}

// tensorRTCacheDirs creates (mode 0750) and returns the engine and timing
// cache directories under root for the model with hash modelHash on the
// GPU found under fsRoot (see GPUIdentity). Nothing is removed: engines of
// other models, GPUs or versions stay where they are.
func tensorRTCacheDirs(root, fsRoot, modelHash, runtimeVersion string, fp16 bool) (engines, timing string, err error) {
	gpu := GPUIdentity(fsRoot)
	engines = filepath.Join(root, TensorRTCacheKey(modelHash, gpu, runtimeVersion, fp16))
	timing = filepath.Join(root, TimingCacheKey(gpu, runtimeVersion))
	for _, d := range []string{engines, timing} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return "", "", fmt.Errorf("TensorRT cache: %w", err)
		}
	}
	return engines, timing, nil
}

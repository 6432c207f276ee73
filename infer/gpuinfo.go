package infer

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// GPUIdentity names the GPU a TensorRT engine is built for, without CUDA:
// engines and timing caches are only valid on the GPU (and TensorRT) they
// were built with, so the cache key carries it.
//
// root is the filesystem root to read from ("/" on a real machine; a
// fixture directory in tests). It looks, in order, at
//   - /proc/driver/nvidia/gpus/*/information (NVIDIA's desktop and
//     server driver): the first GPU by bus location, as "<model>-<uuid
//     prefix>", e.g. "nvidia-h100-80gb-hbm3-gpu-1a2b3c4d";
//   - /proc/device-tree/model and /etc/nv_tegra_release (Jetson): the board
//     and the L4T release, e.g. "nvidia-jetson-agx-orin-developer-kit-r36.4.0"
//     (the release fixes the TensorRT version);
//
// and returns "gpu0" when neither names a GPU. The result is a slug of
// [a-z0-9.-], at most 64 characters.
func GPUIdentity(root string) string {
	if id := desktopGPU(root); id != "" {
		return id
	}
	if id := tegraGPU(root); id != "" {
		return id
	}
	return "gpu0"
}

func desktopGPU(root string) string {
	infos, _ := filepath.Glob(filepath.Join(root, "proc/driver/nvidia/gpus/*/information"))
	sort.Strings(infos) // by PCI bus location
	for _, p := range infos {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var model, uuid string
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "Model":
				model = strings.TrimSpace(v)
			case "GPU UUID":
				uuid = strings.TrimSpace(v)
			}
		}
		if model == "" {
			continue
		}
		id := model
		if uuid != "" {
			// "GPU-1a2b3c4d-…": the prefix tells boards of one model apart
			// without making the name unreadable.
			id += " " + truncate(uuid, len("GPU-")+8)
		}
		return slug(id)
	}
	return ""
}

func tegraGPU(root string) string {
	data, err := os.ReadFile(filepath.Join(root, "proc/device-tree/model"))
	if err != nil {
		return ""
	}
	model := strings.TrimSpace(strings.TrimRight(string(data), "\x00"))
	if model == "" {
		return ""
	}
	if rel := tegraRelease(root); rel != "" {
		model += " " + rel
	}
	return slug(model)
}

// tegraReleaseLine reads "# R36 (release), REVISION: 4.0, GCID: …".
var tegraReleaseLine = regexp.MustCompile(`^#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)`)

// tegraRelease returns the L4T release of /etc/nv_tegra_release, e.g.
// "r36.4.0", or "".
func tegraRelease(root string) string {
	data, err := os.ReadFile(filepath.Join(root, "etc/nv_tegra_release"))
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(data), "\n")
	m := tegraReleaseLine.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return ""
	}
	return "r" + m[1] + "." + m[2]
}

// slug lower-cases s and keeps [a-z0-9.], turning every other run of
// characters into one "-"; at most 64 characters.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		dash = true
	}
	return strings.TrimRight(truncate(b.String(), 64), "-")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

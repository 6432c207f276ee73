//go:build workstation

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// providerConfig writes a run configuration for the e2e bundle on a
// software trigger over replayed images, with model.provider = provider
// and the given allow_fallback and HTTP port.
func providerConfig(t *testing.T, env e2e, provider string, fallback bool, httpPort int) string {
	t.Helper()
	dir, replay, goods := goodReplay(t, env, 1)
	writePNG(t, filepath.Join(replay, "00.png"), loadPNG(t, goods[0]))
	cfg := writeRunConfig(t, dir, env.bundle, fmt.Sprintf(`[camera]
source = "images"
path = %q
loop = true
[trigger]
mode = "software"
[http]
enabled = true
listen = "127.0.0.1:%d"
`, replay, httpPort))
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "[model]\n", fmt.Sprintf("[model]\nprovider = %q\nallow_fallback = %v\n", provider, fallback), 1)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRunProviderFallback runs the daemon with model.provider = "cuda" on
// this machine's CPU-only ONNX Runtime: with allow_fallback it starts,
// logs the fallback at WARN with the reason, and shows "cpu (fallback)" on
// the status page, in /api/status and in inspectd_model_info; without it,
// run exits 1 with one line naming the provider, the library, what it has
// and what to install.
func TestRunProviderFallback(t *testing.T) {
	env := setupE2E(t)

	port := freePort(t)
	p := startDaemon(t, env.bin, "-c", providerConfig(t, env, "cuda", true, port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var st inspection.Status
	waitFor(t, 30*time.Second, "the daemon to report its model", func() bool {
		return getJSON(base+"/api/status", &st) == nil && st.Model.BundleHash != ""
	})
	if st.Model.Provider != "cpu (fallback)" {
		t.Errorf("/api/status model.provider = %q, want %q", st.Model.Provider, "cpu (fallback)")
	}
	for path, want := range map[string]string{
		"/metrics": fmt.Sprintf(`inspectd_model_info{bundle_hash=%q,product="e2e-plate",provider="cpu (fallback)"} 1`, st.Model.BundleHash),
		"/":        `<td id="m-provider">cpu (fallback)</td>`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s lacks %s", path, want)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(20 * time.Second); err != nil {
		t.Errorf("run after SIGTERM: %v", err)
	}
	var warned bool
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(line, "WARN") && strings.Contains(line, "MODEL RUNS ON THE CPU") &&
			strings.Contains(line, `execution provider \"cuda\" is not available in the onnxruntime library`) {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no WARN line with the fallback's reason in the log:\n%s", p.stderr.String())
	}

	p = startDaemon(t, env.bin, "-c", providerConfig(t, env, "cuda", false, freePort(t)))
	if err := p.wait(30 * time.Second); err == nil {
		t.Fatal("run with an unavailable provider and no fallback succeeded")
	}
	var errLines []string
	for _, line := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
		if strings.Contains(line, `execution provider "cuda" is not available`) {
			errLines = append(errLines, line)
		}
	}
	if len(errLines) != 1 {
		t.Fatalf("want one error line naming the provider, got %d:\n%s", len(errLines), p.stderr.String())
	}
	for _, want := range []string{"model.provider: ", "libonnxruntime.so.1 (version ", "it lists ", "CPUExecutionProvider", "install an ONNX Runtime build with CUDA", "docs/jetson.md#gpu-onnx-runtime"} {
		if !strings.Contains(errLines[0], want) {
			t.Errorf("error line lacks %q:\n%s", want, errLines[0])
		}
	}
}

//go:build workstation

package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// TestRunProductChangeoverEndToEnd: `inspectd run` with two [[product]]s
// whose bundles are real random-weight bundles (different seeds) run by
// ONNX Runtime; the product is switched with POST /api/product between
// software triggers; every archived result names the product active at its
// trigger and that product's bundle hash, and /api/status counts per
// product.
func TestRunProductChangeoverEndToEnd(t *testing.T) {
	env := setupE2E(t)
	dir, replay, goods := goodReplay(t, env, 2)
	for i, g := range goods[:2] {
		writePNG(t, filepath.Join(replay, fmt.Sprintf("%02d.png", i)), loadPNG(t, g))
	}
	hashes := map[string]string{}
	for i, name := range []string{"gear", "shaft"} {
		if _, err := netdef.WriteRandomBundle(filepath.Join(dir, name), netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		b, err := bundle.Load(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		hashes[name] = b.Hash
	}
	if hashes["gear"] == hashes["shaft"] {
		t.Fatal("the two random bundles have the same hash")
	}
	httpPort := freePort(t)
	archive := filepath.Join(dir, "archive")
	cfg := writeRunConfig(t, dir, "", fmt.Sprintf(`[camera]
source = "images"
path = %q
loop = true
fps = 30
[trigger]
mode = "software"
timeout = "2s"
[http]
enabled = true
listen = "127.0.0.1:%d"
[archive]
save = "all"
dir = %q
[changeover]
source = "http"
[[product]]
name = "gear"
bundle = "gear"
[[product]]
name = "shaft"
bundle = "shaft"
`, replay, httpPort, archive))
	cfg = dropModelTable(t, cfg)
	p := startDaemon(t, env.bin, "-c", cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitFor(t, 30*time.Second, "the daemon to report a healthy camera", func() bool {
		var st inspection.Status
		return getJSON(base+"/api/status", &st) == nil && st.Camera.State == inspection.CameraOnline
	})
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s %s: %s", path, body, resp.Status)
		}
	}
	var want []string
	active := "gear"
	for i := range 12 {
		if i > 0 && i%3 == 0 {
			active = map[string]string{"gear": "shaft", "shaft": "gear"}[active]
			post("/api/product", fmt.Sprintf(`{"product":%q}`, active))
		}
		want = append(want, active)
		post("/api/trigger", fmt.Sprintf(`{"part_id":"c%02d"}`, i))
		time.Sleep(60 * time.Millisecond)
	}
	waitFor(t, 20*time.Second, "12 results", func() bool {
		var st inspection.Status
		return getJSON(base+"/api/status", &st) == nil && st.Counts.Total == 12
	})
	var st inspection.Status
	if err := getJSON(base+"/api/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Products.Active != active || len(st.Products.Products) != 2 || st.Products.Products[0].Counts.Total != 6 || st.Products.Products[1].Counts.Total != 6 {
		t.Errorf("status products: %+v", st.Products)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatalf("inspectd run: %v", err)
	}
	res := archivedResults(t, archive)
	if len(res) != 12 {
		t.Fatalf("%d archived results, want 12", len(res))
	}
	for i, r := range res {
		if r.PartID != fmt.Sprintf("c%02d", i) || r.Model.Product != want[i] || r.Model.BundleHash != hashes[want[i]] || r.Verdict == inspection.Error {
			t.Errorf("result %d: part %s product %s hash %.12s %s %s; want part c%02d of %s (%.12s), no ERROR",
				i, r.PartID, r.Model.Product, r.Model.BundleHash, r.Verdict, r.Detail, i, want[i], hashes[want[i]])
		}
	}
}

// dropModelTable removes writeRunConfig's [model] table (its bundle key):
// a station with [[product]]s names no model.bundle.
func dropModelTable(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "[model]\nbundle = \"\"\n", "", 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

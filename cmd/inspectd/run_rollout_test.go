package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/rollout"
)

// installBundle installs a fresh random-weight bundle into the rollout
// store of stateDir the way model_install does (a signed archive over
// HTTP), activates it, and returns its archive SHA-256 and bundle hash.
func installBundle(t *testing.T, stateDir string, priv ed25519.PrivateKey) (sha, bundleHash string) {
	t.Helper()
	archive, sha, sig := signedArchive(t, priv, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "b.tar.gz", time.Time{}, bytes.NewReader(archive))
	}))
	defer srv.Close()
	store, err := rollout.Open(rollout.Options{Dir: filepath.Join(stateDir, "models"), MaxBytes: 64 << 20, AllowHTTP: true,
		TrustedKeys: []string{rollout.FormatPublicKey(priv.Public().(ed25519.PublicKey))}})
	if err != nil {
		t.Fatal(err)
	}
	in, err := store.Install(context.Background(), inspection.ModelInstall{URL: srv.URL + "/b.tar.gz", SHA256: sha, Signature: sig},
		func(ctx context.Context, dir string) (string, string, error) {
			b, err := bundle.Load(dir)
			if err != nil {
				return "", "", err
			}
			return b.Manifest.Product, b.Hash, nil
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Activate(in.Product, sha); err != nil {
		t.Fatal(err)
	}
	return sha, in.BundleHash
}

// TestRunUsesInstalledBundle: with [rollout] enabled, a product whose
// store records a current installed bundle runs it instead of the bundle
// the configuration names, and says so; leftovers of an interrupted
// install are removed at start and reported.
func TestRunUsesInstalledBundle(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := rollout.FormatPublicKey(priv.Public().(ed25519.PublicKey))
	cfg := stationConfig(t, "127.0.0.1:0", fmt.Sprintf("[rollout]\nenabled = true\nallow_http = true\ntrusted_keys = [%q]\n", pub))
	dir := filepath.Dir(cfg)
	stateDir := filepath.Join(dir, "state")
	configHash := bundleHashOf(t, filepath.Join(dir, "bundle"))

	// Without an installed bundle: the configuration's.
	code, _, stderr := runCLI(t, "run", "-c", cfg, "--max-parts", "2")
	if code != 0 || strings.Contains(stderr, "running installed bundle") || !strings.Contains(stderr, "hash="+configHash[:12]) {
		t.Fatalf("no install: exit %d, want 0 and the configuration's bundle %s\n%s", code, configHash[:12], stderr)
	}

	sha, installed := installBundle(t, stateDir, priv)
	leftover := filepath.Join(stateDir, "models", ".staging-"+sha[:12]+"-interrupted")
	if err := os.MkdirAll(leftover, 0o750); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "run", "-c", cfg, "--max-parts", "2")
	want := fmt.Sprintf("product random-weights-benchmark: running installed bundle %s (from rollout), config names %s", sha, filepath.Join(dir, "bundle"))
	if code != 0 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr lacks %q:\n%s", code, want, stderr)
	}
	if !strings.Contains(stderr, "hash="+installed[:12]) || strings.Contains(stderr, "hash="+configHash[:12]) {
		t.Errorf("the model loaded is not the installed bundle %s (config's %s):\n%s", installed[:12], configHash[:12], stderr)
	}
	if !strings.Contains(stderr, "removed 1 leftovers of interrupted model installs") || !strings.Contains(stderr, leftover) {
		t.Errorf("the leftover %s was not reported:\n%s", leftover, stderr)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("the leftover is still there: %v", err)
	}

	// A reload (SIGHUP) re-reads the configuration with the installed
	// bundle in force, not the configuration's.
	store, err := rollout.Open(rollout.Options{Dir: filepath.Join(stateDir, "models"), MaxBytes: 64 << 20, TrustedKeys: []string{pub}})
	if err != nil {
		t.Fatal(err)
	}
	st := &station{path: cfg, store: store, log: logging.Discard()}
	reloaded, err := st.reloadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(stateDir, "models", sha); reloaded.Model.Bundle != want {
		t.Errorf("reload: model.bundle %s, want the installed %s", reloaded.Model.Bundle, want)
	}
	for dir, want := range map[string]bool{filepath.Join(stateDir, "models", sha): true, filepath.Join(stateDir, "models"): false,
		filepath.Join(stateDir, "models", sha, "x"): false, filepath.Join(dir, "bundle"): false} {
		if got := st.isInstalled(dir); got != want {
			t.Errorf("isInstalled(%s) = %v, want %v", dir, got, want)
		}
	}
}

func bundleHashOf(t *testing.T, dir string) string {
	t.Helper()
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b.Hash
}

// signedArchive packs a random-weight bundle (seed) into an archive and
// signs it; it returns the archive and its SHA-256 and signature.
func signedArchive(t *testing.T, priv ed25519.PrivateKey, seed uint64) (archive []byte, sha, sig string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(src, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	var b bytes.Buffer
	if err := rollout.WriteArchive(context.Background(), &b, src, names); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	sha = hex.EncodeToString(sum[:])
	return b.Bytes(), sha, rollout.Sign(priv, sha)
}

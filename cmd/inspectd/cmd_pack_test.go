package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/rollout"
)

// randomBundle writes a small random-weight bundle.
func randomBundle(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := netdef.WriteRandomBundle(dir, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func packBundle(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "gear.tar.gz")
	if code, stdout, stderr := runCLI(t, "pack", "--bundle", dir, "--out", out); code != 0 {
		t.Fatalf("pack: exit %d\n%s%s", code, stdout, stderr)
	}
	return out
}

// TestPackSignInstall: pack a bundle twice (the same bytes), sign it, and
// install it into a rollout store over HTTPS with bundle.Load as the
// verification, as a station does.
func TestPackSignInstall(t *testing.T) {
	dir := randomBundle(t)
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "gear.tar.gz")
	code, stdout, stderr := runCLI(t, "pack", "--bundle", dir, "--out", out)
	if code != 0 {
		t.Fatalf("pack: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "bundle hash "+b.Hash) || !strings.Contains(stdout, "wrote "+out+": ") {
		t.Errorf("pack output:\n%s", stdout)
	}
	again := packBundle(t, dir)
	one, _ := os.ReadFile(out)
	two, _ := os.ReadFile(again)
	if !bytes.Equal(one, two) {
		t.Error("the same bundle packed twice gives different archives")
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
		t.Errorf("archive mode %v", fi.Mode().Perm())
	}
	digests, err := rollout.ArchiveDigests(bytes.NewReader(one), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(digests) != len(b.Manifest.Files)+1 || digests[bundle.ManifestName] != b.Hash {
		t.Errorf("archive entries %v", digests)
	}

	prefix := generateKeys(t)
	code, stdout, stderr = runCLI(t, "sign", "--key", prefix+".key", out, "--url", "https://files.plant/gear.tar.gz")
	if code != 0 {
		t.Fatalf("sign: exit %d\n%s", code, stderr)
	}
	var sig struct {
		URL, SHA256, Signature string
		Size                   int64
	}
	if err := json.Unmarshal([]byte(stdout), &sig); err != nil {
		t.Fatalf("sign output %q: %v", stdout, err)
	}
	if file, _ := os.ReadFile(out + ".sig"); string(file) != stdout {
		t.Errorf(".sig %q differs from the output %q", file, stdout)
	}
	if sig.URL != "https://files.plant/gear.tar.gz" || sig.Size != int64(len(one)) || len(sig.SHA256) != 64 {
		t.Errorf("signature %+v", sig)
	}
	pubLine, _ := os.ReadFile(prefix + ".pub")
	pub, _ := rollout.ParsePublicKey(string(pubLine))
	raw, _ := base64.StdEncoding.DecodeString(sig.Signature)
	if !ed25519.Verify(pub, []byte("inspectd-bundle-v1\n"+sig.SHA256+"\n"), raw) {
		t.Fatal("the signature does not verify over the documented message")
	}

	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "gear.tar.gz", time.Time{}, bytes.NewReader(one))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	store, err := rollout.Open(rollout.Options{Dir: filepath.Join(t.TempDir(), "models"), TrustedKeys: []string{strings.TrimSpace(string(pubLine))},
		CAFile: ca, MaxBytes: 64 << 20, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	in, err := store.Install(context.Background(), inspection.ModelInstall{URL: srv.URL + "/gear.tar.gz", SHA256: sig.SHA256, Signature: sig.Signature, Size: sig.Size},
		func(_ context.Context, dir string) (string, string, error) {
			b, err := bundle.Load(dir)
			if err != nil {
				return "", "", err
			}
			return b.Manifest.Product, b.Hash, nil
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.BundleHash != b.Hash {
		t.Errorf("installed bundle hash %s, packed %s", in.BundleHash, b.Hash)
	}
}

// cancelAfter is a context whose Err reports cancellation after n calls:
// Ctrl-C in the middle of a command.
type cancelAfter struct {
	context.Context
	n atomic.Int32
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestPackRefuses(t *testing.T) {
	dir := randomBundle(t)
	outDir := t.TempDir()
	existing := filepath.Join(outDir, "existing.tar.gz")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	link := filepath.Join(outDir, "link.tar.gz")
	os.Symlink(filepath.Join(outDir, "nowhere"), link)
	fifo := filepath.Join(outDir, "fifo.tar.gz")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.CopyFS(broken, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(broken, bundle.TemplateName), []byte("not the template"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"existing output", []string{"pack", "--bundle", dir, "--out", existing}, 1,
			"inspectd: pack: --out: " + existing + " exists (a file); refusing to overwrite it, choose a new name\n"},
		{"symlinked output", []string{"pack", "--bundle", dir, "--out", link}, 1,
			"inspectd: pack: --out: " + link + " exists (a symbolic link); refusing to overwrite it, choose a new name\n"},
		{"named pipe output", []string{"pack", "--bundle", dir, "--out", fifo}, 1,
			"inspectd: pack: --out: " + fifo + " exists (a named pipe); refusing to overwrite it, choose a new name\n"},
		{"invalid bundle", []string{"pack", "--bundle", broken, "--out", filepath.Join(outDir, "b.tar.gz")}, 1,
			"inspectd: pack: model bundle: " + filepath.Join(broken, bundle.TemplateName) + ": SHA-256 is "},
		{"missing flags", []string{"pack", "--bundle", dir}, 2, "inspectd: pack: --bundle and --out are required\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.HasPrefix(errOut, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr starting:\n%s", code, errOut, tc.code, tc.want)
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep me" {
		t.Error("the existing output changed")
	}
	// Ctrl-C between two files of the archive.
	interrupted := filepath.Join(outDir, "interrupted.tar.gz")
	ctx := &cancelAfter{Context: context.Background()}
	ctx.n.Store(2)
	var out, errb bytes.Buffer
	err := run(ctx, []string{"pack", "--bundle", dir, "--out", interrupted}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("interrupted pack: %v", err)
	}
	entries, _ := os.ReadDir(outDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "existing.tar.gz fifo.tar.gz link.tar.gz" {
		t.Errorf("output directory after the failures: %v", names)
	}
}

func TestSignRefuses(t *testing.T) {
	dir := randomBundle(t)
	archive := packBundle(t, dir)
	prefix := generateKeys(t)
	key := prefix + ".key"
	if code, _, errOut := runCLI(t, "sign", "--key", key, archive); code != 0 {
		t.Fatalf("sign: %s", errOut)
	}
	first, _ := os.ReadFile(archive + ".sig")
	other := t.TempDir()
	fifo := filepath.Join(other, "fifo.tar.gz")
	syscall.Mkfifo(fifo, 0o644)
	notGzip := filepath.Join(other, "zip.tar.gz")
	os.WriteFile(notGzip, []byte("PK\x03\x04"), 0o644)
	linked := filepath.Join(other, "linked.tar.gz")
	data, _ := os.ReadFile(archive)
	os.WriteFile(linked, data, 0o644)
	victim := filepath.Join(other, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	os.Symlink(victim, linked+".sig")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"existing sig", []string{"sign", "--key", key, archive}, 1,
			"inspectd: sign: " + archive + ".sig exists (a file); refusing to overwrite it, choose a new name (use --force to replace a .sig)\n"},
		{"symlinked sig even with force", []string{"sign", "--key", key, "--force", linked}, 1,
			"inspectd: sign: " + linked + ".sig is a symbolic link; refusing to replace it\n"},
		{"named pipe archive", []string{"sign", "--key", key, fifo}, 1,
			"inspectd: sign: " + fifo + " is a named pipe, not a regular file\n"},
		{"not an archive", []string{"sign", "--key", key, notGzip}, 1,
			"inspectd: sign: " + notGzip + ": stations would refuse it: bad bundle archive: not a gzip stream: unexpected EOF\n"},
		{"public key as key", []string{"sign", "--key", prefix + ".pub", archive}, 1,
			"inspectd: sign: --key: " + prefix + ".pub: no PEM block found; expected a \"PRIVATE KEY\" block written by `inspectd keys generate`\n"},
		{"over the cap", []string{"sign", "--key", key, "--max-bundle-mb", "1", archive}, 1,
			"inspectd: sign: " + archive + " is larger than 1 MB; stations with rollout.max_bundle_mb = 1 would refuse it (raise --max-bundle-mb if theirs is larger)\n"},
		{"no key", []string{"sign", archive}, 2, "inspectd: sign: --key is required (PREFIX.key from inspectd keys generate)\n"},
		{"two archives", []string{"sign", "--key", key, archive, archive}, 2, "inspectd: sign: give exactly one archive (FILE.tar.gz), got 2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code || errOut != tc.want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr:\n%s", code, errOut, tc.code, tc.want)
			}
		})
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious" {
		t.Error("the symbolic link's target was written")
	}
	if got, _ := os.ReadFile(archive + ".sig"); !bytes.Equal(got, first) {
		t.Error("the existing .sig changed")
	}
	code, _, errOut := runCLI(t, "sign", "--force", "--key", key, archive, "--url", "https://x/y")
	if code != 0 {
		t.Fatalf("sign --force: %s", errOut)
	}
	if got, _ := os.ReadFile(archive + ".sig"); !strings.Contains(string(got), `"url":"https://x/y"`) {
		t.Errorf(".sig after --force: %s", got)
	}
}

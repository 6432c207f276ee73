package rollout

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
)

// TestInstallRealBundle packs a real (random-weight) bundle, installs it
// with bundle.Load as the verification, and loads the installed copy; a
// bundle with one file changed after packing fails bundle.Load in staging
// and is not installed.
func TestInstallRealBundle(t *testing.T) {
	p := newPublisher(t)
	src := filepath.Join(t.TempDir(), "bundle")
	m, err := netdef.WriteRandomBundle(src, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{bundle.ManifestName}
	for name := range m.Files {
		names = append(names, name)
	}
	var buf bytes.Buffer
	if err := WriteArchive(context.Background(), &buf, src, names); err != nil {
		t.Fatal(err)
	}
	good := newArchive(bytes.Clone(buf.Bytes()))
	// The same bundle with its template replaced: its checksum no longer
	// matches the manifest.
	if err := os.WriteFile(filepath.Join(src, m.Align.Template), []byte("not the template"), 0o644); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := WriteArchive(context.Background(), &buf, src, names); err != nil {
		t.Fatal(err)
	}
	tampered := newArchive(buf.Bytes())
	srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/good" {
			serveBytes(w, r, good.data)
			return
		}
		serveBytes(w, r, tampered.data)
	}))
	o := testOptions(t, ca, p)
	o.MaxBytes = 64 << 20 // the random backbone makes an 11 MB archive
	s := mustOpen(t, o)
	verify := func(_ context.Context, dir string) (string, string, error) {
		b, err := bundle.Load(dir)
		if err != nil {
			return "", "", err
		}
		return b.Manifest.Product, b.Hash, nil
	}
	in, err := s.Install(context.Background(), good.request(p, srv.URL+"/good"), verify, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(in.Dir)
	if err != nil {
		t.Fatalf("the installed bundle does not load: %v", err)
	}
	if in.Product != m.Product || in.BundleHash != b.Hash {
		t.Errorf("installed %+v; manifest product %q, hash %s", in, m.Product, b.Hash)
	}
	_, err = s.Install(context.Background(), tampered.request(p, srv.URL+"/tampered"), verify, nil)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("bundle verification failed")) {
		t.Fatalf("tampered bundle: %v", err)
	}
	if l := leftovers(t, s.Dir()); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

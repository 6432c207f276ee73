package rollout

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// publisher is a throwaway signing key.
type publisher struct {
	priv ed25519.PrivateKey
	pub  string // "ed25519:..."
	id   string
}

func newPublisher(t *testing.T) publisher {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return publisher{priv: priv, pub: FormatPublicKey(pub), id: KeyID(pub)}
}

// archive is a bundle archive with its request fields.
type archive struct {
	data []byte
	sha  string
}

func newArchive(data []byte) archive {
	sum := sha256.Sum256(data)
	return archive{data: data, sha: hex.EncodeToString(sum[:])}
}

func (a archive) request(p publisher, url string) inspection.ModelInstall {
	return inspection.ModelInstall{URL: url, SHA256: a.sha, Signature: Sign(p.priv, a.sha)}
}

// packFiles writes files into a directory and packs them with
// WriteArchive.
func packFiles(t *testing.T, files map[string]string) archive {
	t.Helper()
	dir := t.TempDir()
	var names []string
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	var buf bytes.Buffer
	if err := WriteArchive(context.Background(), &buf, dir, names); err != nil {
		t.Fatal(err)
	}
	return newArchive(buf.Bytes())
}

// rawEntry is one hand-made tar entry for hostile archives.
type rawEntry struct {
	name     string
	typ      byte
	body     string
	size     int64 // declared size when body is "" and size > 0 (filled with zeros)
	linkname string
}

func rawArchive(t *testing.T, entries []rawEntry, trailing []byte) archive {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.linkname, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		body := []byte(e.body)
		if typ == tar.TypeReg {
			if e.size > 0 {
				body = make([]byte, e.size)
			}
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	buf.Write(trailing)
	return newArchive(buf.Bytes())
}

// testCA is a throwaway certificate authority written to a PEM file.
type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	file string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "inspectd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: priv, file: p}
}

// leaf issues a server certificate for the IP address host.
func (ca testCA) leaf(t *testing.T, host string) tls.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(host)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// fakeVerify checks that the staged bundle has a manifest.toml and
// returns its first line as the product.
func fakeVerify(_ context.Context, dir string) (string, string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "manifest.toml"))
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(data)
	product, _, _ := strings.Cut(string(data), "\n")
	return product, hex.EncodeToString(sum[:8]), nil
}

// dirSnapshot is every file under a directory with its content, and the
// names of the store's own temporary files.
func dirSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			snap[rel+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		snap[rel] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// leftovers lists the store's temporary names in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, stagingPrefix) || strings.HasPrefix(n, downloadPrefix) || strings.HasPrefix(n, statePrefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func equalSnap(a, b map[string]string) (string, bool) {
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return k, false
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return k, false
		}
	}
	return "", true
}

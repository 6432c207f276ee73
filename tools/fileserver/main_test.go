package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// start runs the server on a free port with args and returns its address.
func start(t *testing.T, args ...string) (addr string, log *lockedWriter) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	log = &lockedWriter{b: &bytes.Buffer{}}
	go func() { done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), log, ready) }()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not start within 10s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return addr, log
}

// lockedWriter is the server's log: written by its goroutines, read by
// the test once the requests are done.
type lockedWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func get(t *testing.T, c *http.Client, url, ua, rng string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, body
}

func serveDir(t *testing.T) (dir string, payload []byte) {
	t.Helper()
	dir = t.TempDir()
	payload = make([]byte, 100_000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.tar.gz"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, payload
}

func TestServeRangeAndCorruptFor(t *testing.T) {
	dir, payload := serveDir(t)
	outside := filepath.Join(filepath.Dir(dir), "outside-"+filepath.Base(dir))
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(outside) })
	addr, log := start(t, "-dir", dir, "-corrupt-for", "st03, st07")
	base := "http://" + addr + "/"
	c := &http.Client{Timeout: 10 * time.Second}
	sum := sha256.Sum256(payload)

	code, body := get(t, c, base+"bundle.tar.gz", "inspectd/1.0 station/st01", "")
	if code != 200 || !bytes.Equal(body, payload) {
		t.Fatalf("st01: status %d, %d bytes, want 200 and the file", code, len(body))
	}
	code, body = get(t, c, base+"bundle.tar.gz", "inspectd/1.0 station/st01", "bytes=1000-")
	if code != http.StatusPartialContent || !bytes.Equal(body, payload[1000:]) {
		t.Fatalf("range: status %d, %d bytes, want 206 and the tail from 1000", code, len(body))
	}
	for _, ua := range []string{"inspectd/1.0 station/st03", "station/st07 other/1"} {
		code, body = get(t, c, base+"bundle.tar.gz", ua, "")
		if code != 200 || len(body) != len(payload) || sha256.Sum256(body) == sum {
			t.Fatalf("%q: status %d, %d bytes, hash equal %v; want 200, the same length, another hash",
				ua, code, len(body), sha256.Sum256(body) == sum)
		}
		// A resumed download of a corrupt station stays corrupt.
		code, tail := get(t, c, base+"bundle.tar.gz", ua, "bytes=100-")
		if code != http.StatusPartialContent || !bytes.Equal(tail, body[100:]) {
			t.Fatalf("%q range: status %d, want 206 and the corrupted copy's tail", ua, code)
		}
	}
	// Only the whole token names a station.
	for _, ua := range []string{"inspectd/1.0 station/st030", "inspectd/1.0 xstation/st03", ""} {
		if code, body = get(t, c, base+"bundle.tar.gz", ua, ""); code != 200 || !bytes.Equal(body, payload) {
			t.Fatalf("%q: status %d, got a corrupted or short copy", ua, code)
		}
	}
	for _, p := range []string{"missing.tar.gz", "sub", "../" + filepath.Base(outside), "%2e%2e/" + filepath.Base(outside)} {
		if code, body = get(t, c, base+p, "", ""); code != http.StatusNotFound {
			t.Fatalf("%s: status %d (%q), want 404", p, code, body)
		}
	}
	resp, err := c.Post(base+"bundle.tar.gz", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", resp.StatusCode)
	}
	w := log.String()
	for _, want := range []string{"component=fileserver", "station=st03", "corrupted=true", `range="bytes=1000-"`, "status=206"} {
		if !strings.Contains(w, want) {
			t.Errorf("request log lacks %q:\n%s", want, w)
		}
	}
}

func TestServeHTTPS(t *testing.T) {
	dir, payload := serveDir(t)
	certFile, keyFile, pool := selfSigned(t)
	addrFile := filepath.Join(t.TempDir(), "addr")
	addr, _ := start(t, "-dir", dir, "-cert", certFile, "-key", keyFile, "-addr-file", addrFile)
	if b, err := os.ReadFile(addrFile); err != nil || strings.TrimSpace(string(b)) != addr {
		t.Fatalf("-addr-file holds %q (%v), want %q", b, err, addr)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	code, body := get(t, c, "https://"+addr+"/bundle.tar.gz", "", "bytes=0-9")
	if code != http.StatusPartialContent || !bytes.Equal(body, payload[:10]) {
		t.Fatalf("https range: status %d, body %x; want 206 and the first 10 bytes", code, body)
	}
	// Plain HTTP to the TLS port does not get the file.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/bundle.tar.gz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP to the HTTPS port served the file")
		}
	}
}

func TestArgs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-dir is required"},
		{[]string{"-dir", filepath.Join(dir, "none")}, "-dir: stat"},
		{[]string{"-dir", file}, "is not a directory"},
		{[]string{"-dir", dir, "-cert", "c.pem"}, "-cert and -key go together"},
		{[]string{"-dir", dir, "-corrupt-for", "st01,st 2"}, `station id "st 2" contains a space or a slash`},
		{[]string{"-dir", dir, "extra"}, `unexpected argument "extra"`},
		{[]string{"-dir", dir, "-addr", "127.0.0.1:99999"}, "-addr:"},
	} {
		err := run(context.Background(), tc.args, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fileserver test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

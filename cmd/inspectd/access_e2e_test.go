//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/logging/logtest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn and
// its key to certFile and keyFile (each written, then renamed).
func writeCert(t *testing.T, certFile, keyFile, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestRunWithLoginAndTLS runs the daemon with TLS and users: the status
// API needs a login made with a line `inspectd passwd` printed, /healthz
// stays open, and SIGHUP swaps in a new certificate — and keeps it when
// the next one is broken.
func TestRunWithLoginAndTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "station.crt"), filepath.Join(dir, "station.key")
	pool := x509.NewCertPool()
	pool.AddCert(writeCert(t, certFile, keyFile, "station-a"))
	var line string
	withStdin(t, "plant-floor-pw\n", func() {
		var code int
		var stderr string
		code, line, stderr = runCLI(t, "passwd", "--user", "otto", "--role", "operator")
		if code != 0 {
			t.Fatalf("passwd: %d %s", code, stderr)
		}
	})
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(line), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := stationConfig(t, "127.0.0.1:0", fmt.Sprintf("tls_cert = %q\ntls_key = %q\nusers_file = %q\n", certFile, keyFile, users))
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), "[mqtt]\nenabled = true", "[mqtt]\nenabled = false", 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var out bytes.Buffer
	errb := &logtest.Buffer{}
	go func() { done <- run(ctx, []string{"run", "-c", cfg}, &out, errb) }()
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(errb.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, errb.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog("inspection started")
	m := regexp.MustCompile(`url=(https://127\.0\.0\.1:\d+/)`).FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("no https status page URL in the log:\n%s", errb.String())
	}
	base := m[1]
	client := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 5 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	}
	peer := func() string {
		t.Helper()
		resp, err := client().Get(base + "healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			t.Fatal("/healthz (in open_paths by default) asked for a login")
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if cn := peer(); cn != "station-a" {
		t.Fatalf("certificate %q", cn)
	}
	c := client()
	if resp, err := c.Get(base + "api/status"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("status without login: %v %v", resp, err)
	}
	resp, err := c.Post(base+"login", "application/json", strings.NewReader(`{"username":"otto","password":"plant-floor-pw"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := c.Get(base + "api/status"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status after login: %v %v", resp, err)
	}

	// SIGHUP with a new certificate: new connections get it.
	pool.AddCert(writeCert(t, certFile, keyFile, "station-b"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("TLS certificate reloaded")
	if cn := peer(); cn != "station-b" {
		t.Fatalf("after SIGHUP: certificate %q", cn)
	}
	// A broken key: the running certificate stays, the log says why.
	if err := os.WriteFile(keyFile, []byte("broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("TLS certificate not reloaded; keeping the running one")
	if cn := peer(); cn != "station-b" {
		t.Fatalf("after a broken SIGHUP: certificate %q", cn)
	}
	// The session survived both reloads.
	if resp, err := c.Get(base + "api/status"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status after the reloads: %v %v", resp, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("daemon: %v\n%s", err, errb.String())
	}
}

// TestRunWarnsWhenInsecureRemoteAllowed: a non-loopback address without
// TLS and users is refused by run too, and with allow_insecure_remote it
// runs with a warning.
func TestRunWarnsWhenInsecureRemoteAllowed(t *testing.T) {
	cfg := stationConfig(t, "0.0.0.0:0", "")
	code, _, stderr := runCLI(t, "run", "-c", cfg, "--max-parts", "1")
	if code != 1 || !strings.Contains(stderr, `http.listen: "0.0.0.0:0" is reachable from other machines but has no TLS`) {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	cfg = stationConfig(t, "0.0.0.0:0", "allow_insecure_remote = true\n")
	code, _, stderr = runCLI(t, "run", "-c", cfg, "--max-parts", "1")
	if code != 0 || !strings.Contains(stderr, "http.listen is reachable from other machines without TLS or without users") {
		t.Fatalf("run with allow_insecure_remote: exit %d\n%s", code, stderr)
	}
}

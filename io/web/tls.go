package web

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// certStore serves the certificate of http.tls_cert/tls_key and swaps in
// a new one at Reload; a pair that does not load keeps the old one.
type certStore struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
	log               *slog.Logger
}

// loadPair reads and checks the certificate and key.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("http.tls_cert %s / http.tls_key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("http.tls_cert %s: %w", certFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("http.tls_cert %s: the certificate expired on %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.Leaf = leaf
	return &c, nil
}

func newCertStore(certFile, keyFile string, log *slog.Logger) (*certStore, error) {
	c, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cs := &certStore{certFile: certFile, keyFile: keyFile, log: log}
	cs.cur.Store(c)
	return cs, nil
}

// reload loads the files again; on error the running certificate stays.
func (cs *certStore) reload() error {
	c, err := loadPair(cs.certFile, cs.keyFile)
	if err != nil {
		return err
	}
	cs.cur.Store(c)
	cs.log.Info("TLS certificate reloaded", "subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter.UTC())
	return nil
}

// config returns the server's TLS configuration.
func (cs *certStore) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := cs.cur.Load()
			if c == nil {
				return nil, errors.New("no certificate")
			}
			return c, nil
		},
	}
}

// CheckTLSFiles loads the certificate and key as the server would
// (check-config): an error names the files and what is wrong.
func CheckTLSFiles(certFile, keyFile string) error {
	_, err := loadPair(certFile, keyFile)
	return err
}

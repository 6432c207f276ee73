package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// HTTP configures the status server: the status page, the JSON API
// (with the software trigger and the clear-fault command), /healthz and
// Prometheus /metrics (io/web), and who may use it (docs/security.md).
type HTTP struct {
	// Enabled turns the server on.
	Enabled bool `toml:"enabled"`
	// Listen is the host:port to listen on.
	Listen string `toml:"listen"`
	// History is the number of recent results kept (without their images)
	// for the status page and /api/results, 1 to 10000.
	History int `toml:"history"`
	// TLSCert and TLSKey are PEM files (certificate chain, private key);
	// both set serves HTTPS. They are re-read on SIGHUP; a pair that does
	// not load keeps the running one.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// UsersFile lists the users, one "name:role:bcrypt-hash" a line
	// (roles viewer, operator, admin; `inspectd passwd` prints a line).
	// Empty: no login, everybody who reaches the port is the user "local".
	// The daemon never writes it.
	UsersFile string `toml:"users_file"`
	// SessionTTL is how long a login lasts, 1 minute to 30 days.
	SessionTTL Duration `toml:"session_ttl"`
	// OpenPaths are served without login when UsersFile is set: any of
	// "/healthz" and "/metrics".
	OpenPaths []string `toml:"open_paths"`
	// AllowInsecureRemote lets a non-loopback Listen go without TLS and
	// users (a warning at every start); otherwise such a configuration is
	// refused.
	AllowInsecureRemote bool `toml:"allow_insecure_remote"`
}

// OpenablePaths are the paths http.open_paths may name.
var OpenablePaths = []string{"/healthz", "/metrics"}

func (h *HTTP) defaults() {
	*h = HTTP{Enabled: true, Listen: "127.0.0.1:9120", History: 100,
		SessionTTL: Dur(12 * time.Hour), OpenPaths: []string{"/healthz"}}
}

func (h *HTTP) resolvePaths(r pathResolver) {
	h.TLSCert = r.path(h.TLSCert)
	h.TLSKey = r.path(h.TLSKey)
	h.UsersFile = r.path(h.UsersFile)
}

func (h *HTTP) validate(v *Checker) {
	if h.Enabled {
		v.HostPort("listen", h.Listen)
	}
	v.IntRange("history", h.History, 1, 10_000, "results")
	v.Duration("session_ttl", h.SessionTTL, time.Minute, 30*24*time.Hour)
	switch {
	case h.TLSCert != "" && h.TLSKey == "":
		v.Errorf("tls_cert", "is set but tls_key is not; set tls_key to the PEM file of the certificate's private key (or neither, for plain HTTP)")
	case h.TLSCert == "" && h.TLSKey != "":
		v.Errorf("tls_key", "is set but tls_cert is not; set tls_cert to the PEM file of the certificate (chain) (or neither, for plain HTTP)")
	}
	for _, p := range h.OpenPaths {
		ok := false
		for _, a := range OpenablePaths {
			ok = ok || p == a
		}
		if !ok {
			v.Errorf("open_paths", "%q cannot be opened; allowed %s (everything else needs a login when users_file is set)", p, quoted(OpenablePaths))
		}
	}
}

// TLS reports whether the server serves HTTPS.
func (h *HTTP) TLS() bool { return h.TLSCert != "" && h.TLSKey != "" }

// InsecureRemote reports whether the server listens beyond loopback
// without TLS or without users (allowed only by allow_insecure_remote).
func (h *HTTP) InsecureRemote() bool {
	return h.Enabled && !IsLoopbackListen(h.Listen) && (!h.TLS() || h.UsersFile == "")
}

// CheckRemote returns why the server must not listen where it is
// configured to (beyond loopback without TLS or without users, and
// allow_insecure_remote not set), or nil. check-config and run refuse
// such a configuration.
func (h *HTTP) CheckRemote() error {
	if !h.InsecureRemote() || h.AllowInsecureRemote {
		return nil
	}
	var missing []string
	if !h.TLS() {
		missing = append(missing, "TLS (tls_cert, tls_key)")
	}
	if h.UsersFile == "" {
		missing = append(missing, "users (users_file)")
	}
	return fmt.Errorf("%q is reachable from other machines but has no %s: anyone on the network could trigger parts and change the station; set them (docs/security.md), listen on 127.0.0.1, or set http.allow_insecure_remote = true on a network you trust", h.Listen, strings.Join(missing, " and no "))
}

// IsLoopbackListen reports whether the listen address host:port binds
// only loopback: "localhost", 127.0.0.0/8 or ::1. An empty host (":9120")
// binds every interface.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func quoted(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = `"` + s + `"`
	}
	return strings.Join(q, ", ")
}

package config

import (
	"strings"
	"testing"
)

// httpBase is a valid configuration; each case appends an [http] table.
const httpBase = `config_version = 1

[station]
id = "line1-cam1"

[model]
bundle = "bundle"

[http]
`

// TestHTTPAccessKeys checks the access-control keys of [http]: what is
// accepted, and the text naming file, line, key and the remedy of what is
// refused.
func TestHTTPAccessKeys(t *testing.T) {
	cases := []struct {
		name string
		http string
		want string // "" valid; else a substring of the error
	}{
		{"default loopback", ``, ""},
		{"localhost", `listen = "localhost:9120"`, ""},
		{"ipv6 loopback", `listen = "[::1]:9120"`, ""},
		{"remote with tls and users", "listen = \"0.0.0.0:9120\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nusers_file = \"users\"", ""},
		{"remote insecure allowed", "listen = \"0.0.0.0:9120\"\nallow_insecure_remote = true", ""},
		{"metrics open", `open_paths = ["/healthz", "/metrics"]`, ""},
		{"nothing open", `open_paths = []`, ""},
		{"cert without key", `tls_cert = "c.pem"`, `testdata/t.toml:10: http.tls_cert: is set but tls_key is not; set tls_key to the PEM file`},
		{"key without cert", `tls_key = "k.pem"`, `testdata/t.toml:10: http.tls_key: is set but tls_cert is not; set tls_cert`},
		{"open admin path", `open_paths = ["/api/trigger"]`,
			`testdata/t.toml:10: http.open_paths: "/api/trigger" cannot be opened; allowed "/healthz", "/metrics"`},
		{"short ttl", `session_ttl = "10s"`, `testdata/t.toml:10: http.session_ttl: 10s is out of range; allowed 1m0s to 720h0m0s`},
		{"bad ttl", `session_ttl = "forever"`, `http.session_ttl: "forever" is not a duration`},
		{"unknown key", `insecure_i_know = true`, `insecure_i_know`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("testdata/t.toml", []byte(httpBase+c.http+"\n"))
			if c.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded (%+v); want an error containing %q", cfg.HTTP, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n%v\nwant it to contain\n%s", err, c.want)
			}
		})
	}
}

// TestHTTPDefaultsAndPaths checks the defaults and that the files are
// resolved against the configuration's directory.
func TestHTTPDefaultsAndPaths(t *testing.T) {
	cfg, err := Parse("testdata/inspectd.toml", []byte(httpBase+"tls_cert = \"tls/c.pem\"\ntls_key = \"/k.pem\"\nusers_file = \"users\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.HTTP
	if h.TLSCert != "testdata/tls/c.pem" || h.TLSKey != "/k.pem" || h.UsersFile != "testdata/users" {
		t.Errorf("paths not resolved: %q %q %q", h.TLSCert, h.TLSKey, h.UsersFile)
	}
	d := Default().HTTP
	if d.SessionTTL.D.String() != "12h0m0s" || len(d.OpenPaths) != 1 || d.OpenPaths[0] != "/healthz" || d.AllowInsecureRemote || d.UsersFile != "" {
		t.Errorf("defaults: %+v", d)
	}
	if !h.TLS() || h.InsecureRemote() {
		t.Errorf("TLS() %v InsecureRemote() %v", h.TLS(), h.InsecureRemote())
	}
}

// TestHTTPCheckRemote checks which listen addresses need TLS and users.
func TestHTTPCheckRemote(t *testing.T) {
	tls := func(h *HTTP) { h.TLSCert, h.TLSKey = "c", "k" }
	users := func(h *HTTP) { h.UsersFile = "u" }
	allow := func(h *HTTP) { h.AllowInsecureRemote = true }
	cases := []struct {
		listen string
		edit   []func(*HTTP)
		want   string // "" allowed
	}{
		{"127.0.0.1:9120", nil, ""},
		{"127.1.2.3:9120", nil, ""},
		{"localhost:9120", nil, ""},
		{"[::1]:9120", nil, ""},
		{"0.0.0.0:9120", []func(*HTTP){tls, users}, ""},
		{"0.0.0.0:9120", []func(*HTTP){allow}, ""},
		{"0.0.0.0:9120", nil, `"0.0.0.0:9120" is reachable from other machines but has no TLS (tls_cert, tls_key) and no users (users_file): anyone on the network could trigger parts and change the station; set them (docs/security.md), listen on 127.0.0.1, or set http.allow_insecure_remote = true on a network you trust`},
		{":9120", []func(*HTTP){tls}, `":9120" is reachable from other machines but has no users (users_file):`},
		{"[::]:9120", []func(*HTTP){users}, `"[::]:9120" is reachable from other machines but has no TLS (tls_cert, tls_key):`},
		{"192.168.1.5:9120", []func(*HTTP){users}, `has no TLS`},
		{"station.plant.example:9120", []func(*HTTP){tls}, `has no users`},
	}
	for _, c := range cases {
		h := Default().HTTP
		h.Listen = c.listen
		for _, e := range c.edit {
			e(&h)
		}
		err := h.CheckRemote()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.listen, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v; want %q", c.listen, err, c.want)
		}
	}
	h := Default().HTTP
	h.Listen, h.Enabled = "0.0.0.0:9120", false
	if err := h.CheckRemote(); err != nil {
		t.Errorf("disabled server: %v", err)
	}
}

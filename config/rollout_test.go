package config

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rolloutConfig(t *testing.T, rollout string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bundle"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := "config_version = 1\nstate_dir = \"state\"\n\n[station]\nid = \"s1\"\n\n[model]\nbundle = \"bundle\"\n\n[rollout]\n" + rollout
	return filepath.Join(dir, "inspectd.toml"), []byte(text)
}

// TestRolloutConfig: the [rollout] rules, with the complete text of each
// problem.
func TestRolloutConfig(t *testing.T) {
	pub := ed25519.PublicKey(make([]byte, 32))
	key := "ed25519:" + base64.StdEncoding.EncodeToString(pub)
	sum := sha256.Sum256(pub)
	id := hex.EncodeToString(sum[:8])
	caDir := t.TempDir()
	notPEM := filepath.Join(caDir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o644)
	badCert := filepath.Join(caDir, "bad.pem")
	os.WriteFile(badCert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	for _, tc := range []struct {
		name, rollout string
		want          []string // "" = valid
	}{
		{"defaults", "", nil},
		{"enabled with a key", "enabled = true\ntrusted_keys = [\"" + key + "\"]\n", nil},
		{"enabled without a key", "enabled = true\n", []string{
			`rollout.trusted_keys: must name at least one publisher key when rollout.enabled = true; add the line printed by ` + "`inspectd keys generate`" + `, e.g. trusted_keys = ["ed25519:..."]`}},
		{"bad keys name their index", "trusted_keys = [\"" + key + "\", \"ssh-ed25519 AAAA\", \"ed25519:AAAA\", \"ed25519:!!\"]\n", []string{
			`rollout.trusted_keys: entry 1 (counting from 0): does not start with "ed25519:"; expected ed25519:<base64 of 32 bytes> as printed by ` + "`inspectd keys generate`",
			`rollout.trusted_keys: entry 2 (counting from 0): the key is 3 bytes; an ed25519 public key is 32`,
			`rollout.trusted_keys: entry 3 (counting from 0): the key after "ed25519:" is not standard base64`}},
		{"bad revoked id", "revoked_keys = [\"" + id + "\", \"ABC\"]\n", []string{
			`rollout.revoked_keys: entry 1 (counting from 0): "ABC" is not a key id; expected 16 lower-case hex characters as printed by ` + "`inspectd keys show`"}},
		{"every key revoked", "enabled = true\ntrusted_keys = [\"" + key + "\"]\nrevoked_keys = [\"" + id + "\"]\n", []string{
			`rollout.revoked_keys: revokes every trusted key; no bundle could be installed (add the new publisher key to rollout.trusted_keys)`}},
		{"missing ca file", "ca_file = \"/nonexistent/ca.pem\"\n", []string{
			`rollout.ca_file: "/nonexistent/ca.pem": no such file; expected a file of PEM CA certificates`}},
		{"ca file without a certificate", "ca_file = \"" + notPEM + "\"\n", []string{
			`rollout.ca_file: "` + notPEM + `" holds no PEM certificate ("-----BEGIN CERTIFICATE-----"); give the CA that signed the file server's certificate`}},
		{"ca file with a broken certificate", "ca_file = \"" + badCert + "\"\n", []string{
			`rollout.ca_file: "` + badCert + `": certificate 1 does not parse: `}},
		{"ca file is a directory", "ca_file = \"" + caDir + "\"\n", []string{
			`rollout.ca_file: "` + caDir + `" is not a regular file; expected a file of PEM CA certificates`}},
		{"durations and ranges", "max_bundle_mb = 0\ndownload_timeout = \"0s\"\nstall_timeout = \"-1s\"\nretries = 0\n", []string{
			`rollout.download_timeout: 0s is out of range; allowed 1s to 24h0m0s`,
			`rollout.max_bundle_mb: 0 is out of range; allowed 1 to 16384 MB`,
			`rollout.retries: 0 is out of range; allowed 1 to 100 attempts`,
			`rollout.stall_timeout: -1s is out of range; allowed 100ms to 1h0m0s`}},
		{"stall longer than download", "download_timeout = \"1m\"\nstall_timeout = \"2m\"\n", []string{
			`rollout.stall_timeout: 2m0s is longer than rollout.download_timeout (1m0s)`}},
		{"dir on /proc", "dir = \"/proc/models\"\n", []string{
			`rollout.dir: "/proc/models" is on /proc, a kernel filesystem that cannot hold data`}},
		{"unknown key", "trusted_key = []\n", []string{`rollout.trusted_key`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, text := rolloutConfig(t, tc.rollout)
			cfg, err := Parse(name, text)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if want := filepath.Join(filepath.Dir(name), "state", "models"); cfg.Rollout.Dir != want {
					t.Errorf("rollout.dir = %q, want %q", cfg.Rollout.Dir, want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error:\n%s\nwant it to contain:\n%s", msg, w)
				}
			}
			if n := strings.Count(msg, "rollout."); tc.name != "unknown key" && n != strings.Count(strings.Join(tc.want, ""), "rollout.") {
				t.Errorf("%d rollout problems in:\n%s", n, msg)
			}
		})
	}
}

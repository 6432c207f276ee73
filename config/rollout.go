package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"
)

// Rollout configures the installation of signed model bundles pushed by
// the plant (cmd/model_install): where archives may be downloaded from,
// which publisher keys are trusted, and the download limits.
type Rollout struct {
	// Enabled accepts model install, activate and rollback commands.
	Enabled bool `toml:"enabled"`
	// TrustedKeys are the publisher public keys, each
	// "ed25519:<base64 of 32 bytes>" as printed by `inspectd keys generate`.
	TrustedKeys []string `toml:"trusted_keys"`
	// RevokedKeys are key ids (16 hex characters, `inspectd keys show`)
	// refused even when listed in TrustedKeys.
	RevokedKeys []string `toml:"revoked_keys"`
	// CAFile holds PEM CA certificates for HTTPS downloads; "" = the
	// system roots.
	CAFile string `toml:"ca_file"`
	// AllowHTTP permits plain http:// download URLs.
	AllowHTTP bool `toml:"allow_http"`
	// MaxBundleMB caps the archive download; the unpacked files may take
	// twice as much.
	MaxBundleMB int `toml:"max_bundle_mb"`
	// DownloadTimeout bounds a whole download.
	DownloadTimeout Duration `toml:"download_timeout"`
	// StallTimeout fails a download attempt that receives no byte for
	// this long.
	StallTimeout Duration `toml:"stall_timeout"`
	// Retries is the number of download attempts, resuming with Range
	// where the server allows.
	Retries int `toml:"retries"`
	// Dir holds the installed bundles; "" = <state_dir>/models.
	Dir string `toml:"dir"`

	// dirDerived: Dir was empty and is <state_dir>/models (state_dir is
	// checked itself).
	dirDerived bool
}

func (r *Rollout) defaults() {
	*r = Rollout{
		TrustedKeys:     []string{},
		RevokedKeys:     []string{},
		MaxBundleMB:     512,
		DownloadTimeout: Dur(10 * time.Minute),
		StallTimeout:    Dur(30 * time.Second),
		Retries:         3,
	}
}

func (r *Rollout) resolvePaths(p pathResolver) {
	r.CAFile = p.path(r.CAFile)
	r.dirDerived = r.Dir == ""
	r.Dir = p.stateChild(r.Dir, "models")
}

// MaxBytes is the archive size cap in bytes.
func (r Rollout) MaxBytes() int64 { return int64(r.MaxBundleMB) << 20 }

func (r *Rollout) validate(v *Checker) {
	for i, k := range r.TrustedKeys {
		if msg := publicKeyProblem(k); msg != "" {
			v.Errorf("trusted_keys", "entry %d (counting from 0): %s", i, msg)
		}
	}
	trusted := map[string]bool{}
	for _, k := range r.TrustedKeys {
		if id := keyID(k); id != "" {
			trusted[id] = true
		}
	}
	for i, id := range r.RevokedKeys {
		if !isKeyID(id) {
			v.Errorf("revoked_keys", "entry %d (counting from 0): %q is not a key id; expected 16 lower-case hex characters as printed by `inspectd keys show`", i, id)
			continue
		}
		delete(trusted, id)
	}
	if r.Enabled && len(r.TrustedKeys) == 0 {
		v.Errorf("trusted_keys", "must name at least one publisher key when rollout.enabled = true; add the line printed by `inspectd keys generate`, e.g. trusted_keys = [\"ed25519:...\"]")
	} else if r.Enabled && len(trusted) == 0 && len(r.TrustedKeys) > 0 {
		v.Errorf("revoked_keys", "revokes every trusted key; no bundle could be installed (add the new publisher key to rollout.trusted_keys)")
	}
	if r.CAFile != "" {
		if msg := caFileProblem(r.CAFile); msg != "" {
			v.Errorf("ca_file", "%s", msg)
		}
	}
	v.IntRange("max_bundle_mb", r.MaxBundleMB, 1, 16384, "MB")
	v.Duration("download_timeout", r.DownloadTimeout, time.Second, 24*time.Hour)
	v.Duration("stall_timeout", r.StallTimeout, 100*time.Millisecond, time.Hour)
	if r.DownloadTimeout.Valid() && r.StallTimeout.Valid() && r.StallTimeout.D > r.DownloadTimeout.D {
		v.Errorf("stall_timeout", "%s is longer than rollout.download_timeout (%s)", r.StallTimeout.D, r.DownloadTimeout.D)
	}
	v.IntRange("retries", r.Retries, 1, 100, "attempts")
	if r.Dir == "" {
		v.Errorf("dir", "must not be empty; the installed bundles are kept there")
	} else if !r.dirDerived {
		v.DataDir("dir", r.Dir)
	}
}

// publicKeyProblem says why s is not "ed25519:<base64 of 32 bytes>", or
// "". (models/rollout.ParsePublicKey reads the same form; a test keeps
// them in step.)
func publicKeyProblem(s string) string {
	rest, ok := strings.CutPrefix(s, "ed25519:")
	if !ok {
		return "does not start with \"ed25519:\"; expected ed25519:<base64 of 32 bytes> as printed by `inspectd keys generate`"
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "the key after \"ed25519:\" is not standard base64"
	}
	if len(raw) != 32 {
		return fmt.Sprintf("the key is %d bytes; an ed25519 public key is 32", len(raw))
	}
	return ""
}

// keyID is the key id of a valid public key string, or "".
func keyID(s string) string {
	if publicKeyProblem(s) != "" {
		return ""
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "ed25519:"))
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

func isKeyID(s string) bool {
	if len(s) != 16 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// caFileProblem says why path is not a readable file of PEM
// certificates, or "".
func caFileProblem(path string) string {
	st, err := os.Stat(path)
	switch {
	case os.IsNotExist(err):
		return fmt.Sprintf("%q: no such file; expected a file of PEM CA certificates", path)
	case err != nil:
		return fmt.Sprintf("%q: %v; expected a file of PEM CA certificates", path, err)
	case !st.Mode().IsRegular():
		return fmt.Sprintf("%q is not a regular file; expected a file of PEM CA certificates", path)
	case st.Size() > 4<<20:
		return fmt.Sprintf("%q is larger than 4 MiB; expected a file of PEM CA certificates", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("%q: %v", path, err)
	}
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Sprintf("%q: certificate %d does not parse: %v", path, n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Sprintf("%q holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); give the CA that signed the file server's certificate", path)
	}
	return ""
}

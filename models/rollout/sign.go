package rollout

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// KeyPrefix starts every public key in the configuration and in .pub
// files: "ed25519:<standard base64 of the 32-byte key>".
const KeyPrefix = "ed25519:"

// signedPrefix is the domain separation string of a bundle signature: the
// signed bytes are signedPrefix + <hex sha256 of the archive> + "\n".
const signedPrefix = "inspectd-bundle-v1\n"

// SignedMessage returns the bytes an archive signature covers for the
// archive whose hex SHA-256 is sha256Hex.
func SignedMessage(sha256Hex string) []byte {
	return []byte(signedPrefix + sha256Hex + "\n")
}

// Sign signs the archive whose hex SHA-256 is sha256Hex and returns the
// signature as standard base64.
func Sign(key ed25519.PrivateKey, sha256Hex string) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, SignedMessage(sha256Hex)))
}

// KeyID returns the id of a public key: the hex of the first 8 bytes of
// the SHA-256 of the 32-byte key (16 characters).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// FormatPublicKey returns pub as written in trusted_keys and .pub files.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return KeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey parses "ed25519:<base64 of 32 bytes>".
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), KeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%q does not start with %q; expected %s<base64 of 32 bytes> as printed by `inspectd keys generate`", abbreviate(s), KeyPrefix, KeyPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%q: the key is not standard base64: %v", abbreviate(s), err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q: the key is %d bytes, expected %d", abbreviate(s), len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// ValidKeyID reports whether s has the form of a key id (16 lower-case
// hex characters).
func ValidKeyID(s string) bool {
	if len(s) != 16 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// MarshalPrivateKey encodes key as a PEM "PRIVATE KEY" block (PKCS#8).
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PEM "PRIVATE KEY" block (PKCS#8) holding an
// ed25519 key, as written by `inspectd keys generate`.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found; expected a \"PRIVATE KEY\" block written by `inspectd keys generate`")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q; expected \"PRIVATE KEY\" (PKCS#8)", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T; expected an ed25519 key", k)
	}
	return ek, nil
}

// keyring holds the trusted keys by id and the revoked ids.
type keyring struct {
	trusted []ed25519.PublicKey
	revoked map[string]bool
}

func newKeyring(trusted, revoked []string) (*keyring, error) {
	kr := &keyring{revoked: map[string]bool{}}
	for i, s := range trusted {
		pub, err := ParsePublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("trusted_keys[%d]: %w", i, err)
		}
		kr.trusted = append(kr.trusted, pub)
	}
	for i, id := range revoked {
		if !ValidKeyID(id) {
			return nil, fmt.Errorf("revoked_keys[%d]: %q is not a key id (16 lower-case hex characters, see `inspectd keys show`)", i, abbreviate(id))
		}
		kr.revoked[id] = true
	}
	if len(kr.trusted) == 0 {
		return nil, errors.New("no trusted_keys: a station without a publisher key cannot verify any bundle")
	}
	return kr, nil
}

// verify checks sigB64 over sha256Hex against every trusted key. A
// signature that verifies only with a revoked key is refused naming it.
func (kr *keyring) verify(sha256Hex, sigB64 string) (keyID string, err error) {
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sigB64))
	if err != nil {
		return "", fmt.Errorf("%w: the signature is not standard base64: %v", ErrSignature, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return "", fmt.Errorf("%w: the signature is %d bytes, expected %d (an ed25519 signature from `inspectd sign`)", ErrSignature, len(sig), ed25519.SignatureSize)
	}
	msg := SignedMessage(sha256Hex)
	revokedBy := ""
	var ids []string
	for _, pub := range kr.trusted {
		id := KeyID(pub)
		ids = append(ids, id)
		if !ed25519.Verify(pub, msg, sig) {
			continue
		}
		if kr.revoked[id] {
			revokedBy = id
			continue
		}
		return id, nil
	}
	if revokedBy != "" {
		return "", fmt.Errorf("%w: signed by key %s, which is revoked (rollout.revoked_keys)", ErrSignature, revokedBy)
	}
	return "", fmt.Errorf("%w: the signature of sha256 %s does not verify with any trusted key (%s); signed by an unknown key, or for another archive", ErrSignature, sha256Hex, strings.Join(ids, ", "))
}

func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/inspectd/inspectd/models/rollout"
)

// signature is the JSON `inspectd sign` prints and writes to FILE.sig:
// the fields of cmd/model_install that prove the archive.
type signature struct {
	URL       string `json:"url"`
	SHA256    string `json:"sha256"`
	Signature string `json:"signature"`
	Size      int64  `json:"size"`
}

// signCommand is `inspectd sign`.
func signCommand(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "sign", `sign --key PREFIX.key FILE.tar.gz [--url URL] [--force]

Signs a bundle archive (written by inspectd pack) with a publisher key:
prints {"url","sha256","signature","size"} as JSON, the fields of
cmd/model_install, and writes the same JSON to FILE.tar.gz.sig (an
existing .sig is replaced only with --force). The archive is checked the
way stations check it before it is signed.`)
	keyPath := fs.String("key", "", "private key `file` (PREFIX.key from inspectd keys generate)")
	url := fs.String("url", "", "download `URL` the stations will use (recorded in the JSON)")
	force := fs.Bool("force", false, "replace an existing FILE.tar.gz.sig")
	maxMB := fs.Int("max-bundle-mb", 512, "refuse an archive the stations' rollout.max_bundle_mb would refuse (`MB`)")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	// Flags may also follow the archive: sign --key K FILE --url U.
	var files []string
	for fs.NArg() > 0 {
		files = append(files, fs.Arg(0))
		if done, err := parseFlags(fs, s, fs.Args()[1:]); done {
			return err
		}
	}
	if len(files) != 1 {
		return usageErr("sign: give exactly one archive (FILE.tar.gz), got %d", len(files))
	}
	if *keyPath == "" {
		return usageErr("sign: --key is required (PREFIX.key from inspectd keys generate)")
	}
	if *maxMB < 1 {
		return usageErr("sign: --max-bundle-mb must be at least 1")
	}
	archivePath := files[0]
	key, err := readPrivateKey(s, *keyPath)
	if err != nil {
		return failure(fmt.Errorf("sign: --key: %w", err))
	}
	f, err := openRegular(archivePath)
	if err != nil {
		return failure(fmt.Errorf("sign: %w", err))
	}
	defer f.Close()
	maxBytes := int64(*maxMB) << 20
	h := sha256.New()
	size, err := io.Copy(h, io.LimitReader(f, maxBytes+1))
	if err != nil {
		return failure(fmt.Errorf("sign: %s: %w", archivePath, err))
	}
	if size > maxBytes {
		return failure(fmt.Errorf("sign: %s is larger than %d MB; stations with rollout.max_bundle_mb = %d would refuse it (raise --max-bundle-mb if theirs is larger)", archivePath, *maxMB, *maxMB))
	}
	if _, err := rollout.ScanArchive(io.NewSectionReader(f, 0, size), maxBytes); err != nil {
		return failure(fmt.Errorf("sign: %s: stations would refuse it: %w", archivePath, err))
	}
	sum := hex.EncodeToString(h.Sum(nil))
	sig := signature{URL: *url, SHA256: sum, Signature: rollout.Sign(key, sum), Size: size}
	data, err := json.Marshal(sig)
	if err != nil {
		return failure(err)
	}
	data = append(data, '\n')
	sigPath := archivePath + ".sig"
	if !*force {
		if err := checkNewOutput(sigPath); err != nil {
			return failure(fmt.Errorf("sign: %w (use --force to replace a .sig)", err))
		}
	}
	if err := writeNewFile(ctx, sigPath, 0o644, *force, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return failure(fmt.Errorf("sign: %w", err))
	}
	if _, err := s.stdout.Write(data); err != nil {
		return err
	}
	fmt.Fprintf(s.stderr, "inspectd: signed %s with key %s; wrote %s\n", archivePath, rollout.KeyID(key.Public().(ed25519.PublicKey)), sigPath)
	return nil
}

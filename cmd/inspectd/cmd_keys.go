package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/inspectd/inspectd/models/rollout"
	"github.com/inspectd/inspectd/models/staging"
)

const keysSynopsis = `keys generate --out PREFIX | keys show FILE

Manages the publisher keys that sign model bundle archives for the fleet
rollout (docs/operations.md).

  keys generate --out PREFIX
      writes a new ed25519 key pair: PREFIX.key (the private key, PEM
      PKCS#8, mode 0600; keep it on the publishing workstation) and
      PREFIX.pub (one line "ed25519:<base64>"), and prints the key id and
      the trusted_keys line for the stations' [rollout] section. Existing
      files are never overwritten.
  keys show FILE
      prints the key id, the public key and the trusted_keys line of a
      .pub or .key file (to revoke a key, put its id in revoked_keys).`

// keysCommand is `inspectd keys`.
func keysCommand(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(s.stderr, "Usage: inspectd %s\n", keysSynopsis)
		return &exitError{code: exitUsage}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(s.stdout, "Usage: inspectd %s\n", keysSynopsis)
		return nil
	case "generate":
		return keysGenerate(ctx, s, args[1:])
	case "show":
		return keysShow(s, args[1:])
	}
	return usageErr("keys: unknown subcommand %q; use \"generate\" or \"show\" (see inspectd keys --help)", args[0])
}

func keysGenerate(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "keys generate", "keys generate --out PREFIX\n\nWrites PREFIX.key (private, 0600) and PREFIX.pub; never overwrites.")
	out := fs.String("out", "", "`prefix` of the key files to write (PREFIX.key, PREFIX.pub)")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *out == "" {
		return usageErr("keys generate: --out is required, e.g. --out /secure/plant-publisher")
	}
	keyPath, pubPath := *out+".key", *out+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if err := checkNewOutput(p); err != nil {
			return failure(fmt.Errorf("keys generate: %w", err))
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return failure(fmt.Errorf("keys generate: %w", err))
	}
	pemKey, err := rollout.MarshalPrivateKey(priv)
	if err != nil {
		return failure(fmt.Errorf("keys generate: %w", err))
	}
	if err := writeNewFile(ctx, keyPath, 0o600, false, func(w io.Writer) error { _, err := w.Write(pemKey); return err }); err != nil {
		return failure(fmt.Errorf("keys generate: %w", err))
	}
	line := rollout.FormatPublicKey(pub)
	if err := writeNewFile(ctx, pubPath, 0o644, false, func(w io.Writer) error { _, err := io.WriteString(w, line+"\n"); return err }); err != nil {
		os.Remove(keyPath) // ours, written a moment ago: no half pair
		return failure(fmt.Errorf("keys generate: %w (%s was not kept)", err, keyPath))
	}
	fmt.Fprintf(s.stdout, "wrote %s (private key, mode 0600: keep it on the publishing workstation, never on a station)\n", keyPath)
	fmt.Fprintf(s.stdout, "wrote %s\n", pubPath)
	printKey(s.stdout, pub)
	return nil
}

func printKey(w io.Writer, pub ed25519.PublicKey) {
	fmt.Fprintf(w, "key id: %s\n", rollout.KeyID(pub))
	fmt.Fprintf(w, "public key: %s\n", rollout.FormatPublicKey(pub))
	fmt.Fprintf(w, "for the stations' [rollout] section:\ntrusted_keys = [%q]\n", rollout.FormatPublicKey(pub))
}

// maxKeyFileBytes bounds what keys show and sign read as a key file.
const maxKeyFileBytes = 64 << 10

func keysShow(s streams, args []string) error {
	fs := newFlagSet(s, "keys show", "keys show FILE\n\nPrints the key id and trusted_keys line of FILE (.pub or .key).")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("keys show: give one key file (PREFIX.pub or PREFIX.key)")
	}
	data, err := readSmallFile(fs.Arg(0), maxKeyFileBytes)
	if err != nil {
		return failure(fmt.Errorf("keys show: %w", err))
	}
	text := strings.TrimSpace(string(data))
	if strings.HasPrefix(text, rollout.KeyPrefix) {
		pub, err := rollout.ParsePublicKey(text)
		if err != nil {
			return failure(fmt.Errorf("keys show: %s: %w", fs.Arg(0), err))
		}
		printKey(s.stdout, pub)
		return nil
	}
	priv, err := rollout.ParsePrivateKey(data)
	if err != nil {
		return failure(fmt.Errorf("keys show: %s is neither a public key line (%s<base64>) nor a private key: %w", fs.Arg(0), rollout.KeyPrefix, err))
	}
	warnKeyMode(s, fs.Arg(0))
	printKey(s.stdout, priv.Public().(ed25519.PublicKey))
	return nil
}

// readPrivateKey reads a PEM private key file written by keys generate.
func readPrivateKey(s streams, path string) (ed25519.PrivateKey, error) {
	data, err := readSmallFile(path, maxKeyFileBytes)
	if err != nil {
		return nil, err
	}
	k, err := rollout.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	warnKeyMode(s, path)
	return k, nil
}

func warnKeyMode(s streams, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(s.stderr, "inspectd: warning: %s is readable by others (mode %04o); chmod 600 it\n", path, fi.Mode().Perm())
	}
}

// readSmallFile reads a regular file of at most limit bytes; a named
// pipe, device or directory is refused without blocking on it.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes; not a key file", path, limit)
	}
	return data, nil
}

// openRegular opens path for reading if it is a regular file (following
// symbolic links), without blocking on a named pipe.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is %s, not a regular file", path, staging.FileKind(fi.Mode()))
	}
	return f, nil
}

// checkNewOutput refuses an output path that exists in any form (a
// file, a symbolic link, even a dangling one, a named pipe…) or whose
// directory does not exist.
func checkNewOutput(path string) error {
	if fi, err := os.Lstat(path); err == nil {
		kind := staging.FileKind(fi.Mode())
		if fi.Mode()&os.ModeSymlink != 0 {
			kind = "a symbolic link"
		} else if fi.IsDir() {
			kind = "a directory"
		}
		return fmt.Errorf("%s exists (%s); refusing to overwrite it, choose a new name", path, kind)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("directory %s of %s does not exist", dir, path)
	}
	return nil
}

// writeNewFile writes path through a hidden temporary file beside it,
// fsynced, then linked into place, so that path appears complete or not at
// all. Without replace an existing path is never overwritten (the link
// fails); with replace an existing regular file is replaced by rename,
// anything else (a symbolic link, a named pipe) is refused. ctx is checked
// before the file appears.
func writeNewFile(ctx context.Context, path string, mode os.FileMode, replace bool, write func(w io.Writer) error) (err error) {
	if replace {
		if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
			kind := staging.FileKind(fi.Mode())
			if fi.Mode()&os.ModeSymlink != 0 {
				kind = "a symbolic link"
			}
			return fmt.Errorf("%s is %s; refusing to replace it", path, kind)
		}
	} else if err := checkNewOutput(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		os.Remove(name)
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		tmp = nil
		return err
	}
	tmp = nil
	if err := ctx.Err(); err != nil {
		return err
	}
	if replace {
		if err := os.Rename(name, path); err != nil {
			return err
		}
	} else if err := os.Link(name, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s appeared while it was written; refusing to overwrite it", path)
		}
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

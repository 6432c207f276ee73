// Package rollout installs signed model bundle archives on a station: it
// downloads an archive over HTTPS (size cap, resume, stall and whole-
// download timeouts), checks its SHA-256 and an ed25519 signature by a
// trusted publisher key, unpacks it into a staging directory under strict
// rules, lets the caller verify the bundle (bundle.Load, engine build,
// warm-up), and only then renames it into place. A state file records,
// per product, the current and the previous bundle.
//
// Nothing half-installs: every step writes into names the store owns
// (".download-*", ".staging-*", ".state-*") that the next Open removes, and
// the state file is replaced atomically, so a failure, kill -9 or power
// loss at any step leaves either the old state or the new one.
package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/staging"
)

// Reasons an install, activation or rollback fails; the returned errors
// wrap one of them and say more.
var (
	// ErrRequest: the request itself is malformed (sha256, url).
	ErrRequest = errors.New("invalid model install request")
	// ErrDownload: the archive could not be downloaded (HTTP error,
	// connection cut, stall, timeout, redirect refused).
	ErrDownload = errors.New("download failed")
	// ErrTooLarge: the archive, one of its files or their total passes
	// the size cap (rollout.max_bundle_mb).
	ErrTooLarge = errors.New("too large")
	// ErrHash: the downloaded archive's SHA-256 is not the one requested.
	ErrHash = errors.New("archive hash mismatch")
	// ErrSignature: the signature does not verify with a trusted key, or
	// only with a revoked one.
	ErrSignature = errors.New("signature refused")
	// ErrArchive: the archive is corrupt or breaks the archive rules
	// (paths, entry types, duplicates, entry count).
	ErrArchive = errors.New("bad bundle archive")
	// ErrNoSpace: not enough free disk space for the download or the
	// unpacked bundle, or a write failed because the disk is full.
	ErrNoSpace = errors.New("not enough disk space")
	// ErrVerify: the caller's verification of the unpacked bundle failed.
	ErrVerify = errors.New("bundle verification failed")
	// ErrNotInstalled: no installed archive has that SHA-256.
	ErrNotInstalled = errors.New("not installed")
	// ErrNoPrevious: the product has no previous bundle to roll back to.
	ErrNoPrevious = errors.New("no previous bundle")
)

// StateFile is the name of the state file in the store's directory.
const StateFile = "state.json"

// MinFreeBytes is the free space left on the disk after a download or
// unpack: a rollout must not fill the disk the outbox and archive use.
const MinFreeBytes = 16 << 20

// KeepAvailable is how many installed bundles that are neither current
// nor previous of any product are kept (the newest); older ones are
// removed.
const KeepAvailable = 3

// Names the store creates in its directory; Open removes leftovers.
const (
	stagingPrefix  = ".staging-"
	downloadPrefix = ".download-"
	statePrefix    = ".state-"
)

// Options configure a Store (the [rollout] section).
type Options struct {
	// Dir holds the installed bundles (Dir/<sha256>) and the state file.
	Dir string
	// TrustedKeys are publisher keys "ed25519:<base64>"; RevokedKeys are
	// key ids refused even when trusted.
	TrustedKeys, RevokedKeys []string
	// CAFile holds the PEM CA certificates for HTTPS ("" = system roots).
	CAFile string
	// AllowHTTP permits plain http:// URLs.
	AllowHTTP bool
	// MaxBytes caps the archive; the unpacked files may total 2×MaxBytes.
	MaxBytes int64
	// DownloadTimeout bounds a whole download, StallTimeout a wait for
	// the next byte.
	DownloadTimeout, StallTimeout time.Duration
	// Retries is the number of download attempts (at least 1).
	Retries int
	// UserAgent is sent with every request, e.g. "inspectd/1.2 station/st01".
	UserAgent string
	// Logger receives the store's messages (nil: slog.Default()).
	Logger *slog.Logger
	// FreeSpace returns the bytes available in dir (nil: statfs).
	FreeSpace func(dir string) (uint64, error)
}

// Installed is one installed bundle.
type Installed struct {
	// SHA256 is the hex SHA-256 of the archive it came from.
	SHA256 string `json:"sha256"`
	// Dir is the bundle directory (Options.Dir/<sha256>).
	Dir string `json:"-"`
	// Product is the product it was installed for.
	Product string `json:"product"`
	// BundleHash is the bundle's hash as the caller's verify reported it.
	BundleHash string `json:"bundle_hash"`
	// Bytes is the archive's size.
	Bytes int64 `json:"bytes"`
	// InstalledAt is when it became available.
	InstalledAt time.Time `json:"installed_at"`
}

// state is the content of the state file.
type state struct {
	Version   int                      `json:"version"`
	Installed map[string]Installed     `json:"installed"`
	Products  map[string]*productState `json:"products"`
	// Pending is the archive whose staging directory is being renamed to
	// its final name: recorded before the rename, cleared with the
	// install's record, so that Open removes a directory left by a crash
	// between the two only when this store was making it.
	Pending string `json:"pending,omitempty"`
	// Pruned are the bundles prune dropped from the state and is removing:
	// Open finishes their removal after a crash.
	Pruned []string `json:"pruned,omitempty"`
}

type productState struct {
	Current  string `json:"current,omitempty"`
	Previous string `json:"previous,omitempty"`
}

// Store installs and keeps bundles in one directory. Its methods are safe
// for concurrent use; installs run one at a time.
type Store struct {
	o       Options
	log     *slog.Logger
	keys    *keyring
	client  *http.Client
	cleaned []string

	installMu sync.Mutex // one install at a time
	mu        sync.Mutex // st and the state file
	st        state
}

// Open opens the store in o.Dir: it creates the directory (0750), removes
// what interrupted installs left (only names the store creates:
// ".staging-*", ".download-*", ".state-*", and the bundle directory the
// state file marks as pending: renamed into place but not yet recorded)
// and loads the state file. A state file
// that cannot be read is an error naming it; it is never reset.
func Open(o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("rollout: no directory (rollout.dir)")
	}
	if o.MaxBytes <= 0 {
		return nil, errors.New("rollout: no size cap (rollout.max_bundle_mb)")
	}
	if o.DownloadTimeout <= 0 {
		o.DownloadTimeout = 10 * time.Minute
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 30 * time.Second
	}
	o.Retries = max(o.Retries, 1)
	if o.FreeSpace == nil {
		o.FreeSpace = statfsFree
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "rollout")
	keys, err := newKeyring(o.TrustedKeys, o.RevokedKeys)
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	client, err := NewHTTPClient(o.CAFile, o.AllowHTTP, o.StallTimeout)
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	s := &Store{o: o, log: log, keys: keys, client: client}
	if err := s.load(); err != nil {
		return nil, err
	}
	if err := s.clean(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) statePath() string { return filepath.Join(s.o.Dir, StateFile) }

func (s *Store) load() error {
	s.st = state{Version: 1, Installed: map[string]Installed{}, Products: map[string]*productState{}}
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rollout: read state: %w", err)
	}
	var st state
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("rollout: state file %s is corrupt (%v); it is left as it is: move it away to start with no installed bundles", s.statePath(), err)
	}
	if st.Version != 1 {
		return fmt.Errorf("rollout: state file %s has version %d; this inspectd reads version 1", s.statePath(), st.Version)
	}
	if st.Installed == nil {
		st.Installed = map[string]Installed{}
	}
	if st.Products == nil {
		st.Products = map[string]*productState{}
	}
	for sha, in := range st.Installed {
		if !validSHA(sha) || in.SHA256 != sha {
			return fmt.Errorf("rollout: state file %s is corrupt: installed entry %q is not a sha256 or does not match its record; it is left as it is", s.statePath(), abbreviate(sha))
		}
		in.Dir = filepath.Join(s.o.Dir, sha)
		st.Installed[sha] = in
	}
	for p, ps := range st.Products {
		for _, sha := range []string{ps.Current, ps.Previous} {
			if _, ok := st.Installed[sha]; sha != "" && !ok {
				return fmt.Errorf("rollout: state file %s is corrupt: product %q names %s, which is not installed; it is left as it is", s.statePath(), p, sha)
			}
		}
	}
	s.st = st
	for sha, in := range st.Installed {
		if fi, err := os.Stat(in.Dir); err != nil || !fi.IsDir() {
			s.log.Warn("an installed bundle's directory is missing", "sha256", sha, "dir", in.Dir)
		}
	}
	return nil
}

// clean removes what interrupted installs left behind.
func (s *Store) clean() error {
	entries, err := os.ReadDir(s.o.Dir)
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		ours := strings.HasPrefix(name, stagingPrefix) || strings.HasPrefix(name, downloadPrefix) || strings.HasPrefix(name, statePrefix)
		if !ours && e.IsDir() && validSHA(name) && (name == s.st.Pending || slices.Contains(s.st.Pruned, name)) {
			_, listed := s.st.Installed[name]
			// Renamed into place but not recorded: the install was
			// interrupted between the rename and the state file. A
			// directory this store was not renaming is left alone.
			ours = !listed
		}
		if !ours {
			continue
		}
		p := filepath.Join(s.o.Dir, name)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("rollout: remove leftover of an interrupted install %s: %w", p, err)
		}
		s.cleaned = append(s.cleaned, p)
		s.log.Warn("removed the leftover of an interrupted install", "path", p)
	}
	if len(s.cleaned) > 0 {
		if err := staging.SyncDir(s.o.Dir); err != nil {
			return fmt.Errorf("rollout: %w", err)
		}
	}
	if s.st.Pending != "" || len(s.st.Pruned) > 0 {
		if err := s.update(func(st *state) { st.Pending, st.Pruned = "", nil }); err != nil {
			return fmt.Errorf("rollout: %w", err)
		}
	}
	return nil
}

// Cleaned returns the paths Open removed (leftovers of interrupted
// installs), for a start-up warning.
func (s *Store) Cleaned() []string { return append([]string(nil), s.cleaned...) }

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.o.Dir }

func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Install downloads, checks, unpacks and verifies the archive req names
// and makes it available (not active). The signature is checked before
// anything is downloaded; an archive already installed is returned as it
// is (after the signature check). verify runs on the unpacked staging
// directory and returns the bundle's product and hash. progress (may be
// nil) is called at each stage: download (repeatedly), verify, unpack,
// load, available. On any failure nothing is left behind and the error
// wraps one of the Err* reasons.
func (s *Store) Install(ctx context.Context, req inspection.ModelInstall,
	verify func(ctx context.Context, bundleDir string) (product, bundleHash string, err error),
	progress func(inspection.ModelProgress)) (Installed, error) {
	if progress == nil {
		progress = func(inspection.ModelProgress) {}
	}
	sha := strings.ToLower(strings.TrimSpace(req.SHA256))
	if !validSHA(sha) {
		return Installed{}, fmt.Errorf("%w: sha256 %q is not 64 hex characters", ErrRequest, abbreviate(req.SHA256))
	}
	if req.Size < 0 || req.Size > s.o.MaxBytes {
		if req.Size > s.o.MaxBytes {
			return Installed{}, fmt.Errorf("%w: the request says the archive is %d bytes, more than the cap of %d bytes (rollout.max_bundle_mb)", ErrTooLarge, req.Size, s.o.MaxBytes)
		}
		return Installed{}, fmt.Errorf("%w: size %d is negative", ErrRequest, req.Size)
	}
	keyID, err := s.keys.verify(sha, req.Signature)
	if err != nil {
		return Installed{}, err
	}
	u, err := checkURL(req.URL, s.o.AllowHTTP)
	if err != nil {
		return Installed{}, err
	}
	s.installMu.Lock()
	defer s.installMu.Unlock()
	if in, ok := s.Lookup(sha); ok {
		s.log.Info("archive already installed", "sha256", sha, "dir", in.Dir)
		progress(inspection.ModelProgress{Stage: "available", Bytes: in.Bytes, Detail: "already installed"})
		return in, nil
	}
	start := time.Now()
	log := s.log.With("sha256", sha, "url", redact(u), "key", keyID)
	log.Info("installing bundle archive")

	// Download.
	part := filepath.Join(s.o.Dir, downloadPrefix+sha)
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_TRUNC|noFollow, 0o640)
	if err != nil {
		return Installed{}, fmt.Errorf("rollout: %w", writeErr(err))
	}
	defer func() {
		f.Close()
		os.Remove(part)
	}()
	if req.Size > 0 {
		if err := s.space(req.Size, "the download"); err != nil {
			return Installed{}, err
		}
	}
	d := &downloader{
		client: s.client, userAgent: s.o.UserAgent, maxBytes: s.o.MaxBytes,
		stall: s.o.StallTimeout, timeout: s.o.DownloadTimeout, attempts: s.o.Retries,
		space:    func(need int64) error { return s.space(need, "the download") },
		progress: progress,
		logf:     func(msg string, args ...any) { log.Warn(msg, args...) },
	}
	size, err := d.fetch(ctx, u, f, req.Size)
	if err != nil {
		return Installed{}, err
	}

	// Hash.
	progress(inspection.ModelProgress{Stage: "verify", Bytes: size, Total: size, Detail: "sha256 and signature (key " + keyID + ")"})
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return Installed{}, fmt.Errorf("rollout: read the download: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return Installed{}, fmt.Errorf("%w: the downloaded %d bytes have sha256 %s, the request says %s", ErrHash, size, got, sha)
	}

	// Check the archive, then unpack it into staging.
	lim := limitsFor(s.o.MaxBytes)
	info, err := walkArchive(io.NewSectionReader(f, 0, size), lim, nil)
	if err != nil {
		return Installed{}, err
	}
	if err := s.space(info.Bytes, "the unpacked bundle"); err != nil {
		return Installed{}, err
	}
	stageDir, err := os.MkdirTemp(s.o.Dir, stagingPrefix+sha[:12]+"-")
	if err != nil {
		return Installed{}, fmt.Errorf("rollout: %w", writeErr(err))
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(stageDir)
		}
	}()
	if err := os.Chmod(stageDir, 0o750); err != nil {
		return Installed{}, fmt.Errorf("rollout: %w", err)
	}
	progress(inspection.ModelProgress{Stage: "unpack", Total: info.Bytes, Detail: fmt.Sprintf("%d entries", info.Entries)})
	err = unpack(ctx, part, stageDir, lim, func(done, total int64, name string) {
		progress(inspection.ModelProgress{Stage: "unpack", Bytes: done, Total: total, Detail: name})
	}, info.Bytes)
	if err != nil {
		return Installed{}, err
	}

	// The caller's verification.
	progress(inspection.ModelProgress{Stage: "load", Detail: "bundle.Load and warm-up"})
	product, bundleHash, err := verify(ctx, stageDir)
	if err != nil {
		return Installed{}, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if err := ctx.Err(); err != nil {
		return Installed{}, context.Cause(ctx)
	}
	if req.Product != "" {
		product = req.Product
	}

	// Rename into place, then record it; Pending marks the directory as
	// this store's until it is recorded.
	final := filepath.Join(s.o.Dir, sha)
	if err := s.update(func(st *state) { st.Pending = sha }); err != nil {
		return Installed{}, fmt.Errorf("rollout: record the install: %w", writeErr(err))
	}
	if err := os.Rename(stageDir, final); err != nil {
		return Installed{}, fmt.Errorf("rollout: %w", err)
	}
	committed = true
	in := Installed{SHA256: sha, Dir: final, Product: product, BundleHash: bundleHash, Bytes: size, InstalledAt: time.Now().UTC()}
	err = staging.SyncDir(s.o.Dir)
	if err == nil {
		err = s.update(func(st *state) { st.Installed[sha] = in; st.Pending = "" })
	}
	if err != nil {
		os.RemoveAll(final)
		return Installed{}, fmt.Errorf("rollout: record the install: %w", writeErr(err))
	}
	log.Info("bundle available", "product", product, "bundle_hash", bundleHash, "bytes", size, "duration", time.Since(start).Round(time.Millisecond))
	progress(inspection.ModelProgress{Stage: "available", Bytes: size, Total: size, Detail: in.Dir})
	s.prune()
	return in, nil
}

// space checks that need bytes (plus MinFreeBytes) fit in the store's
// directory.
func (s *Store) space(need int64, what string) error {
	free, err := s.o.FreeSpace(s.o.Dir)
	if err != nil {
		return fmt.Errorf("rollout: free space of %s: %w", s.o.Dir, err)
	}
	if uint64(need)+MinFreeBytes > free {
		return fmt.Errorf("%w: %s needs %d bytes and %d must stay free, %s has %d bytes free", ErrNoSpace, what, need, MinFreeBytes, s.o.Dir, free)
	}
	return nil
}

// Activate makes the installed archive sha256 the current bundle of
// product; the current one becomes the previous. It returns the bundle
// that was current (zero if none). Activating the current bundle again
// changes nothing.
func (s *Store) Activate(product, sha256 string) (prev Installed, err error) {
	if product == "" {
		return Installed{}, fmt.Errorf("%w: no product", ErrRequest)
	}
	sha := strings.ToLower(sha256)
	s.mu.Lock()
	_, ok := s.st.Installed[sha]
	var cur string
	if ps := s.st.Products[product]; ps != nil {
		cur = ps.Current
	}
	prev = s.st.Installed[cur]
	s.mu.Unlock()
	if !ok {
		return Installed{}, fmt.Errorf("%w: archive %s (install it first)", ErrNotInstalled, abbreviate(sha256))
	}
	if cur == sha {
		return prev, nil
	}
	if err := s.update(func(st *state) {
		ps := st.Products[product]
		if ps == nil {
			ps = &productState{}
			st.Products[product] = ps
		}
		ps.Previous, ps.Current = ps.Current, sha
	}); err != nil {
		return Installed{}, fmt.Errorf("rollout: record the activation: %w", writeErr(err))
	}
	s.log.Info("bundle activated", "product", product, "sha256", sha, "previous", cur)
	s.prune()
	return prev, nil
}

// Rollback makes product's previous bundle current again (the current one
// becomes the previous, so a second Rollback undoes the first) and
// returns it.
func (s *Store) Rollback(product string) (Installed, error) {
	s.mu.Lock()
	ps := s.st.Products[product]
	var prev, cur string
	if ps != nil {
		prev, cur = ps.Previous, ps.Current
	}
	s.mu.Unlock()
	if prev == "" {
		return Installed{}, fmt.Errorf("%w for product %q", ErrNoPrevious, product)
	}
	if err := s.update(func(st *state) {
		p := st.Products[product]
		p.Current, p.Previous = prev, cur
	}); err != nil {
		return Installed{}, fmt.Errorf("rollout: record the rollback: %w", writeErr(err))
	}
	s.log.Info("bundle rolled back", "product", product, "sha256", prev, "was", cur)
	in, _ := s.Lookup(prev)
	return in, nil
}

// Current returns product's current bundle.
func (s *Store) Current(product string) (Installed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.st.Products[product]
	if ps == nil || ps.Current == "" {
		return Installed{}, false
	}
	in, ok := s.st.Installed[ps.Current]
	return in, ok
}

// Previous returns product's previous bundle (what Rollback activates).
func (s *Store) Previous(product string) (Installed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.st.Products[product]
	if ps == nil || ps.Previous == "" {
		return Installed{}, false
	}
	in, ok := s.st.Installed[ps.Previous]
	return in, ok
}

// Lookup returns the installed bundle of archive sha256.
func (s *Store) Lookup(sha256 string) (Installed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.st.Installed[strings.ToLower(sha256)]
	return in, ok
}

// List returns every installed bundle, newest first.
func (s *Store) List() []Installed {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Installed, 0, len(s.st.Installed))
	for _, in := range s.st.Installed {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InstalledAt.After(out[j].InstalledAt) })
	return out
}

// update applies fn to a copy of the state, writes it and only then
// makes it the store's state.
func (s *Store) update(fn func(st *state)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := cloneState(s.st)
	fn(&next)
	if err := s.writeState(next); err != nil {
		return err
	}
	s.st = next
	return nil
}

func cloneState(st state) state {
	c := state{Version: 1, Installed: make(map[string]Installed, len(st.Installed)), Products: make(map[string]*productState, len(st.Products)), Pending: st.Pending,
		Pruned: slices.Clone(st.Pruned)}
	for k, v := range st.Installed {
		c.Installed[k] = v
	}
	for k, v := range st.Products {
		p := *v
		c.Products[k] = &p
	}
	return c
}

// writeState replaces the state file: temp file, fsync, rename, fsync of
// the directory.
func (s *Store) writeState(st state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(s.o.Dir, statePrefix+"*.tmp")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o640)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, s.statePath())
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	return staging.SyncDir(s.o.Dir)
}

// prune removes installed bundles that are neither current nor previous
// of a product, beyond the KeepAvailable newest. The state is written
// first (with the dropped ones marked as pruned), then the directories
// go: a crash between leaves directories that the next Open removes.
func (s *Store) prune() {
	s.mu.Lock()
	keep := map[string]bool{}
	for _, ps := range s.st.Products {
		keep[ps.Current], keep[ps.Previous] = true, true
	}
	var others []Installed
	for sha, in := range s.st.Installed {
		if !keep[sha] {
			others = append(others, in)
		}
	}
	s.mu.Unlock()
	if len(others) <= KeepAvailable {
		return
	}
	sort.Slice(others, func(i, j int) bool { return others[i].InstalledAt.After(others[j].InstalledAt) })
	drop := others[KeepAvailable:]
	if err := s.update(func(st *state) {
		for _, in := range drop {
			delete(st.Installed, in.SHA256)
			st.Pruned = append(st.Pruned, in.SHA256)
		}
	}); err != nil {
		s.log.Warn("could not prune old bundles", "err", err)
		return
	}
	for _, in := range drop {
		if err := os.RemoveAll(in.Dir); err != nil {
			s.log.Warn("could not remove a pruned bundle", "dir", in.Dir, "err", err)
			continue
		}
		s.log.Info("pruned an old bundle", "sha256", in.SHA256, "product", in.Product)
	}
	if err := s.update(func(st *state) { st.Pruned = nil }); err != nil {
		s.log.Warn("could not record the pruning as done; the next start finishes it", "err", err)
	}
}

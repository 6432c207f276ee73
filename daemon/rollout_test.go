package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/rollout"
)

// fakeStore is a rollout store whose "downloads" are bundle directories
// the test prepared (dirs, by archive SHA-256); it calls verify like the
// real one, records activations and rollbacks, and fails on request.
type fakeStore struct {
	mu            sync.Mutex
	dirs          map[string]string
	installed     map[string]rollout.Installed
	cur, prev     map[string]string
	failActivate  error
	failRollback  error
	activateCalls int
}

func newFakeStore() *fakeStore {
	return &fakeStore{dirs: map[string]string{}, installed: map[string]rollout.Installed{}, cur: map[string]string{}, prev: map[string]string{}}
}

func (s *fakeStore) Install(ctx context.Context, req inspection.ModelInstall,
	verify func(ctx context.Context, bundleDir string) (string, string, error),
	progress func(inspection.ModelProgress)) (rollout.Installed, error) {
	s.mu.Lock()
	dir, ok := s.dirs[req.SHA256]
	in, done := s.installed[req.SHA256]
	s.mu.Unlock()
	if done {
		return in, nil
	}
	if !ok {
		return rollout.Installed{}, fmt.Errorf("%w: the downloaded bytes have another sha256", rollout.ErrHash)
	}
	progress(inspection.ModelProgress{Stage: "download", Bytes: 10, Total: 10})
	product, hash, err := verify(ctx, dir)
	if err != nil {
		return rollout.Installed{}, fmt.Errorf("%w: %w", rollout.ErrVerify, err)
	}
	if req.Product != "" {
		product = req.Product
	}
	in = rollout.Installed{SHA256: req.SHA256, Dir: dir, Product: product, BundleHash: hash, Bytes: 10, InstalledAt: time.Now()}
	s.mu.Lock()
	s.installed[req.SHA256] = in
	s.mu.Unlock()
	progress(inspection.ModelProgress{Stage: "available"})
	return in, nil
}

func (s *fakeStore) Activate(product, sha string) (rollout.Installed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.activateCalls++
	if s.failActivate != nil {
		return rollout.Installed{}, s.failActivate
	}
	prev := s.installed[s.cur[product]]
	if s.cur[product] != sha {
		s.prev[product], s.cur[product] = s.cur[product], sha
	}
	return prev, nil
}

func (s *fakeStore) Rollback(product string) (rollout.Installed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failRollback != nil {
		return rollout.Installed{}, s.failRollback
	}
	if s.prev[product] == "" {
		return rollout.Installed{}, rollout.ErrNoPrevious
	}
	s.cur[product], s.prev[product] = s.prev[product], s.cur[product]
	return s.installed[s.cur[product]], nil
}

func (s *fakeStore) get(m map[string]string, product string) (rollout.Installed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.installed[m[product]]
	return in, ok
}

func (s *fakeStore) Current(product string) (rollout.Installed, bool)  { return s.get(s.cur, product) }
func (s *fakeStore) Previous(product string) (rollout.Installed, bool) { return s.get(s.prev, product) }
func (s *fakeStore) Lookup(sha string) (rollout.Installed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.installed[sha]
	return in, ok
}

// rolloutHarness is a running daemon with a fake store and two bundles
// to install besides the configuration's.
type rolloutHarness struct {
	*harness
	store      *fakeStore
	product    string // the station's only product (the manifest's)
	configHash string
	b, c       string // archive SHA-256s of the two installable bundles
	bHash      string
	cHash      string
}

func startRollout(t *testing.T) *rolloutHarness {
	t.Helper()
	store := newFakeStore()
	h := startHarness(t, config.TriggerSoftware, func(d *Deps) { d.Rollout = store })
	r := &rolloutHarness{harness: h, store: store, b: strings.Repeat("b", 64), c: strings.Repeat("c", 64)}
	names := h.d.ProductNames()
	if len(names) != 1 {
		t.Fatalf("products %v, want one", names)
	}
	r.product = names[0]
	_, r.configHash, _ = h.d.ProductBundle(r.product)
	bdir, cdir := writeBundle(t, filepath.Join(t.TempDir(), "b"), 2), writeBundle(t, filepath.Join(t.TempDir(), "c"), 3)
	store.dirs[r.b], store.dirs[r.c] = bdir, cdir
	r.bHash, r.cHash = bundleHash(t, bdir), bundleHash(t, cdir)
	if r.bHash == r.cHash || r.bHash == r.configHash {
		t.Fatal("the test bundles have equal hashes")
	}
	return r
}

func bundleHash(t *testing.T, dir string) string {
	t.Helper()
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b.Hash
}

// inspectedWith triggers n parts and checks that every one was inspected
// with the bundle hash want.
func (r *rolloutHarness) inspectedWith(want, what string, n int) {
	r.t.Helper()
	before := len(r.sink.snapshot())
	for i := range n {
		r.trigger(fmt.Sprintf("%s-%d", what, i))
	}
	res := r.sink.waitResults(r.t, before+n, 5*time.Second)
	for _, x := range res[before:] {
		if x.Model.BundleHash != want || x.Verdict == inspection.Error {
			r.t.Fatalf("%s: part %s inspected with bundle %s (verdict %s %s), want %s", what, x.PartID, x.Model.BundleHash, x.Verdict, x.Detail, want)
		}
	}
}

func (r *rolloutHarness) events(kind string) []inspection.Event {
	r.sink.mu.Lock()
	defer r.sink.mu.Unlock()
	var out []inspection.Event
	for _, e := range r.sink.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r *rolloutHarness) install(sha string, activate bool) (inspection.ModelOutcome, error) {
	var stages []string
	out, err := r.d.InstallModel(context.Background(), inspection.ModelInstall{URL: "https://files/x.tar.gz", SHA256: sha,
		Signature: "sig", Activate: activate}, func(p inspection.ModelProgress) { stages = append(stages, p.Stage) })
	if err == nil && !strings.Contains(strings.Join(stages, ","), "download") {
		r.t.Errorf("progress stages %v: the store's progress did not reach the caller", stages)
	}
	return out, err
}

// TestRolloutInstallActivateRollback: an install with activate switches
// the running model between two parts; a second install is only
// available until activated; a rollback returns to the previous bundle;
// each step is an event and the store records what the daemon runs.
func TestRolloutInstallActivateRollback(t *testing.T) {
	r := startRollout(t)
	r.inspectedWith(r.configHash, "config", 3)

	out, err := r.install(r.b, true)
	if err != nil {
		t.Fatalf("install b: %v", err)
	}
	if out.State != ModelActive || out.Product != r.product || out.BundleHash != r.bHash || out.ArchiveSHA256 != r.b || out.DurationMs <= 0 {
		t.Fatalf("install b: outcome %+v, want active, product %s, bundle %s", out, r.product, r.bHash)
	}
	r.inspectedWith(r.bHash, "b", 3)
	if cur, _ := r.store.Current(r.product); cur.SHA256 != r.b {
		t.Fatalf("store current %q, want b", cur.SHA256)
	}

	out, err = r.install(r.c, false)
	if err != nil || out.State != ModelAvailable || out.BundleHash != r.cHash {
		t.Fatalf("install c: %+v, %v; want available with bundle %s", out, err, r.cHash)
	}
	r.inspectedWith(r.bHash, "c-available", 3)

	out, err = r.d.ActivateModel(context.Background(), "", r.c)
	if err != nil || out.State != ModelActive || out.Previous != r.b || out.BundleHash != r.cHash {
		t.Fatalf("activate c: %+v, %v; want active, previous b", out, err)
	}
	r.inspectedWith(r.cHash, "c", 3)
	// Activating the running archive again changes nothing.
	calls := r.store.activateCalls
	if out, err = r.d.ActivateModel(context.Background(), r.product, r.c); err != nil || out.State != ModelActive || r.store.activateCalls != calls {
		t.Fatalf("activate c again: %+v, %v, store called %d times more", out, err, r.store.activateCalls-calls)
	}

	out, err = r.d.RollbackModel(context.Background(), "")
	if err != nil || out.State != ModelRolledBack || out.ArchiveSHA256 != r.b || out.Previous != r.c || out.BundleHash != r.bHash {
		t.Fatalf("rollback: %+v, %v; want rolled_back to b from c", out, err)
	}
	r.inspectedWith(r.bHash, "rolled-back", 3)
	if cur, _ := r.store.Current(r.product); cur.SHA256 != r.b {
		t.Fatalf("store current %q after the rollback, want b", cur.SHA256)
	}

	for kind, want := range map[string][]string{
		inspection.EventModelInstall:   {"installed for product " + r.product, "; active", "; available"},
		inspection.EventModelActivated: {"now runs archive bbbbbbbbbbbb", "now runs archive cccccccccccc"},
		inspection.EventModelRollback:  {"rolled back to archive bbbbbbbbbbbb"},
	} {
		var msgs []string
		for _, e := range r.events(kind) {
			msgs = append(msgs, e.Message)
		}
		all := strings.Join(msgs, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("%s events lack %q:\n%s", kind, w, all)
			}
		}
	}
	if ev := r.events(inspection.EventModelActivated); len(ev) > 0 && ev[0].Fields["sha256"] != r.b {
		t.Errorf("model_activated fields %v, want sha256 b", ev[0].Fields)
	}
}

// TestRolloutFailuresKeepTheRunningModel: every failure leaves the daemon
// on the bundle it ran and the store's record matching it, with an error
// that says why.
func TestRolloutFailuresKeepTheRunningModel(t *testing.T) {
	r := startRollout(t)
	ctx := context.Background()

	// A bundle that fails verification (a tampered graph): not installed.
	bad := strings.Repeat("d", 64)
	badDir := writeBundle(t, filepath.Join(t.TempDir(), "bad"), 4)
	if err := os.WriteFile(filepath.Join(badDir, "localize.onnx"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.store.dirs[bad] = badDir
	_, err := r.install(bad, true)
	if !errors.Is(err, rollout.ErrVerify) || !strings.Contains(err.Error(), "localize.onnx") {
		t.Fatalf("install of a tampered bundle: %v; want a verification error naming localize.onnx", err)
	}
	if ev := r.events(inspection.EventModelInstall); len(ev) == 0 || ev[len(ev)-1].Severity != inspection.Warning ||
		!strings.Contains(ev[len(ev)-1].Message, "failed; the running models are untouched") {
		t.Fatalf("model_install events %v: want a warning saying the install failed", ev)
	}
	r.inspectedWith(r.configHash, "after-bad", 3)

	// A download whose hash does not match.
	if _, err := r.install(strings.Repeat("e", 64), true); !errors.Is(err, rollout.ErrHash) {
		t.Fatalf("install of an unknown archive: %v, want the store's hash error", err)
	}

	// Unknown product: refused before anything is downloaded.
	_, err = r.d.InstallModel(ctx, inspection.ModelInstall{SHA256: r.b, Product: "nope"}, nil)
	if !errors.Is(err, inspection.ErrUnknownProduct) || !strings.Contains(err.Error(), `product "nope": unknown product; configured: `+r.product) {
		t.Fatalf("unknown product: %v", err)
	}
	if _, ok := r.store.Lookup(r.b); ok {
		t.Fatal("an install for an unknown product reached the store")
	}

	// The store cannot record the activation: the daemon goes back.
	if _, err := r.install(r.b, false); err != nil {
		t.Fatal(err)
	}
	r.store.failActivate = errors.New("disk full")
	_, err = r.d.ActivateModel(ctx, "", r.b)
	if err == nil || !strings.Contains(err.Error(), "record the activation of bbbbbbbbbbbb: disk full; product "+r.product+" is back on bundle "+r.configHash) {
		t.Fatalf("activation the store cannot record: %v", err)
	}
	r.inspectedWith(r.configHash, "record-failed", 3)
	if _, ok := r.store.Current(r.product); ok {
		t.Fatal("the store records an activation that failed")
	}
	r.store.failActivate = nil

	// Nothing to roll back to.
	if _, err := r.d.RollbackModel(ctx, ""); !errors.Is(err, rollout.ErrNoPrevious) || !strings.Contains(err.Error(), "runs the configuration's bundle") {
		t.Fatalf("rollback without an install: %v", err)
	}
	if _, err := r.d.ActivateModel(ctx, "", r.b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.RollbackModel(ctx, ""); !errors.Is(err, rollout.ErrNoPrevious) || !strings.Contains(err.Error(), "the first installed bundle replaced the configuration's") {
		t.Fatalf("rollback after the first install: %v", err)
	}

	// The store cannot record the rollback: the daemon goes back.
	if _, err := r.install(r.c, true); err != nil {
		t.Fatal(err)
	}
	r.inspectedWith(r.cHash, "c", 2)
	r.store.failRollback = errors.New("read-only file system")
	_, err = r.d.RollbackModel(ctx, r.product)
	if err == nil || !strings.Contains(err.Error(), "record the rollback to bbbbbbbbbbbb: read-only file system; product "+r.product+" is back on bundle "+r.cHash) {
		t.Fatalf("rollback the store cannot record: %v", err)
	}
	r.inspectedWith(r.cHash, "rollback-record-failed", 3)
	if cur, _ := r.store.Current(r.product); cur.SHA256 != r.c {
		t.Fatalf("store current %q, want c", cur.SHA256)
	}

	// An installed bundle that fails to load at activation (damaged on
	// disk since): the daemon keeps its model, the store is not touched.
	r.store.failRollback = nil
	if err := os.WriteFile(filepath.Join(r.store.dirs[r.b], "localize.onnx"), []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := r.store.activateCalls
	_, err = r.d.ActivateModel(ctx, "", r.b)
	if err == nil || !strings.Contains(err.Error(), "activate archive bbbbbbbbbbbb for product "+r.product) || !strings.Contains(err.Error(), "localize.onnx") {
		t.Fatalf("activation of a damaged bundle: %v", err)
	}
	if r.store.activateCalls != calls {
		t.Fatal("the store recorded an activation the daemon could not run")
	}
	if ev := r.events(inspection.EventProductFailed); len(ev) == 0 {
		t.Fatal("no product_failed event for the failed activation")
	}
	r.inspectedWith(r.cHash, "damaged", 3)

	// Not installed; unknown product for activate and rollback.
	if _, err := r.d.ActivateModel(ctx, "", strings.Repeat("f", 64)); !errors.Is(err, rollout.ErrNotInstalled) ||
		!strings.Contains(err.Error(), "archive ffffffffffff: not installed on this station (install it first: model_install)") {
		t.Fatalf("activate an archive never installed: %v", err)
	}
	if _, err := r.d.ActivateModel(ctx, "nope", r.c); !errors.Is(err, inspection.ErrUnknownProduct) {
		t.Fatalf("activate for an unknown product: %v", err)
	}
	if _, err := r.d.RollbackModel(ctx, "nope"); !errors.Is(err, inspection.ErrUnknownProduct) {
		t.Fatalf("rollback of an unknown product: %v", err)
	}
	for _, x := range r.sink.snapshot() {
		if x.Verdict == inspection.Error {
			t.Fatalf("part %s: ERROR %s %s", x.PartID, x.Reason, x.Detail)
		}
	}
}

// TestRolloutDisabled: without a store every model command says rollout
// is not enabled.
func TestRolloutDisabled(t *testing.T) {
	h := startHarness(t, config.TriggerSoftware, nil)
	ctx := context.Background()
	const want = "rollout is not enabled ([rollout] enabled = false)"
	_, err1 := h.d.InstallModel(ctx, inspection.ModelInstall{SHA256: strings.Repeat("a", 64)}, nil)
	_, err2 := h.d.ActivateModel(ctx, "", strings.Repeat("a", 64))
	_, err3 := h.d.RollbackModel(ctx, "")
	for i, err := range []error{err1, err2, err3} {
		if err == nil || err.Error() != want {
			t.Errorf("command %d: %v, want %q", i+1, err, want)
		}
	}
}

func TestInstallProduct(t *testing.T) {
	for _, tc := range []struct {
		requested, manifest string
		names               []string
		want, err           string
	}{
		{"gear", "other", []string{"gear", "nut"}, "gear", ""},
		{"", "nut", []string{"gear", "nut"}, "nut", ""},
		{"", "bolt", []string{"gear"}, "gear", ""},
		{"", "bolt", []string{"gear", "nut"}, "", `the bundle's manifest names product "bolt", which is not configured (configured: gear, nut): name the product in the request`},
	} {
		got, err := installProduct(tc.requested, tc.manifest, tc.names)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("installProduct(%q, %q, %v) = %q, %v; want %q, %q", tc.requested, tc.manifest, tc.names, got, err, tc.want, tc.err)
		}
	}
}

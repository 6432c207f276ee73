package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/models/rollout"
)

// RolloutStore is what the daemon needs of the rollout store
// (*rollout.Store): installing signed bundle archives and recording, per
// product, the current and the previous one.
type RolloutStore interface {
	// Install downloads, checks, unpacks and — through verify — loads and
	// warms up an archive, then makes it available.
	Install(ctx context.Context, req inspection.ModelInstall,
		verify func(ctx context.Context, bundleDir string) (product, bundleHash string, err error),
		progress func(inspection.ModelProgress)) (rollout.Installed, error)
	// Activate records sha256 as product's current bundle (the current one
	// becomes the previous) and returns the one that was current.
	Activate(product, sha256 string) (prev rollout.Installed, err error)
	// Rollback records product's previous bundle as current again.
	Rollback(product string) (rollout.Installed, error)
	// Current and Previous return product's current and previous bundles.
	Current(product string) (rollout.Installed, bool)
	Previous(product string) (rollout.Installed, bool)
	// Lookup returns the installed bundle of archive sha256.
	Lookup(sha256 string) (rollout.Installed, bool)
}

var _ RolloutStore = (*rollout.Store)(nil)

var _ inspection.ModelManager = (*Daemon)(nil)

// ErrRolloutDisabled is the error of every model command on a station
// without a rollout store.
var ErrRolloutDisabled = errors.New("rollout is not enabled ([rollout] enabled = false)")

// Outcome states of the model commands (inspection.ModelOutcome.State).
const (
	ModelAvailable  = "available"   // installed, not the running model
	ModelActive     = "active"      // the product's running model
	ModelRolledBack = "rolled_back" // the product went back to its previous bundle
)

// switchBackTimeout bounds putting a product's bundle back after the store
// failed to record a change.
const switchBackTimeout = 2 * time.Minute

// InstallModel downloads and installs a signed bundle archive
// (cmd/model_install): the store downloads, checks the hash and the
// signature and unpacks it into staging; the daemon verifies it in full
// (bundle.Load, engine build, warm-up: VerifyBundle); only then it becomes
// available, and — with req.Activate — the product's model between two
// parts. The product is req.Product, else the bundle manifest's product
// when it is configured, else the station's only product. On any failure
// the running models are untouched; the outcome (or the failure) is also
// reported as an event of kind model_install.
func (d *Daemon) InstallModel(ctx context.Context, req inspection.ModelInstall, progress func(inspection.ModelProgress)) (inspection.ModelOutcome, error) {
	start := time.Now()
	store := d.deps.Rollout
	if store == nil {
		return inspection.ModelOutcome{}, ErrRolloutDisabled
	}
	if progress == nil {
		progress = func(inspection.ModelProgress) {}
	}
	sha := strings.ToLower(req.SHA256)
	names := d.ProductNames()
	fail := func(err error) (inspection.ModelOutcome, error) {
		d.emitEvent(inspection.Warning, inspection.EventModelInstall,
			fmt.Sprintf("model install of archive %s failed; the running models are untouched: %v", short(sha), err),
			map[string]string{"stage": "failed", "sha256": sha, "product": req.Product, "error": err.Error()})
		return inspection.ModelOutcome{}, err
	}
	if req.Product != "" && !slices.Contains(names, req.Product) {
		return fail(fmt.Errorf("product %q: %w; configured: %s", req.Product, inspection.ErrUnknownProduct, strings.Join(names, ", ")))
	}
	verify := func(ctx context.Context, dir string) (string, string, error) {
		manifestProduct, hash, err := d.VerifyBundle(ctx, dir)
		if err != nil {
			return "", "", err
		}
		product, err := installProduct(req.Product, manifestProduct, names)
		if err != nil {
			return "", "", err
		}
		return product, hash, nil
	}
	in, err := store.Install(ctx, req, verify, progress)
	if err != nil {
		return fail(err)
	}
	product := in.Product
	if req.Product != "" {
		product = req.Product
	}
	out := inspection.ModelOutcome{Product: product, ArchiveSHA256: in.SHA256, BundleHash: in.BundleHash, State: ModelAvailable, Bytes: in.Bytes}
	if cur, ok := store.Current(product); ok && cur.SHA256 == in.SHA256 {
		out.State = ModelActive
	}
	if req.Activate && out.State != ModelActive {
		act, err := d.activate(ctx, product, in, start)
		if err != nil {
			err = fmt.Errorf("installed (available as %s) but not activated: %w", short(in.SHA256), err)
			d.emitEvent(inspection.Warning, inspection.EventModelInstall,
				fmt.Sprintf("bundle archive %s for product %s: %v", short(in.SHA256), product, err),
				map[string]string{"stage": "failed", "sha256": in.SHA256, "product": product, "bundle_hash": in.BundleHash, "error": err.Error()})
			return inspection.ModelOutcome{}, err
		}
		progress(inspection.ModelProgress{Stage: ModelActive, Detail: "product " + product})
		out = act
	}
	d.emitEvent(inspection.Info, inspection.EventModelInstall,
		fmt.Sprintf("bundle archive %s installed for product %s (bundle %s, %d bytes) in %s; %s",
			short(in.SHA256), product, out.BundleHash, in.Bytes, time.Since(start).Round(time.Millisecond), out.State),
		map[string]string{"stage": out.State, "sha256": in.SHA256, "product": product, "bundle_hash": out.BundleHash})
	out.Duration = time.Since(start)
	out.DurationMs = ms(out.Duration)
	return out, nil
}

// installProduct is the product an installed bundle is for: the request's,
// else the manifest's when it is configured, else the only product.
func installProduct(requested, manifest string, names []string) (string, error) {
	switch {
	case requested != "":
		return requested, nil
	case slices.Contains(names, manifest):
		return manifest, nil
	case len(names) == 1:
		return names[0], nil
	}
	return "", fmt.Errorf("the bundle's manifest names product %q, which is not configured (configured: %s): name the product in the request",
		manifest, strings.Join(names, ", "))
}

// ActivateModel makes the installed archive sha256 the model of product
// ("" = the product it was installed for) between two parts: the daemon
// loads, verifies and warms it and swaps it in first, then the store
// records it; if the record fails the daemon goes back to the bundle it
// ran, so the store and the running model never disagree.
func (d *Daemon) ActivateModel(ctx context.Context, product, sha256 string) (inspection.ModelOutcome, error) {
	start := time.Now()
	store := d.deps.Rollout
	if store == nil {
		return inspection.ModelOutcome{}, ErrRolloutDisabled
	}
	sha := strings.ToLower(sha256)
	in, ok := store.Lookup(sha)
	if !ok {
		return inspection.ModelOutcome{}, fmt.Errorf("archive %s: %w on this station (install it first: model_install)", short(sha), rollout.ErrNotInstalled)
	}
	if product == "" {
		product = in.Product
	}
	if names := d.ProductNames(); !slices.Contains(names, product) {
		return inspection.ModelOutcome{}, fmt.Errorf("product %q: %w; configured: %s", product, inspection.ErrUnknownProduct, strings.Join(names, ", "))
	}
	out, err := d.activate(ctx, product, in, start)
	if err != nil {
		return inspection.ModelOutcome{}, err
	}
	out.Duration = time.Since(start)
	out.DurationMs = ms(out.Duration)
	return out, nil
}

// activate swaps in's bundle in as product's model, then records it.
func (d *Daemon) activate(ctx context.Context, product string, in rollout.Installed, start time.Time) (inspection.ModelOutcome, error) {
	store := d.deps.Rollout
	mu := &d.modelOps
	mu.Lock()
	defer mu.Unlock()
	oldDir, oldHash, _ := d.ProductBundle(product)
	cur, hasCur := store.Current(product)
	out := inspection.ModelOutcome{Product: product, ArchiveSHA256: in.SHA256, BundleHash: in.BundleHash, State: ModelActive, Bytes: in.Bytes}
	if hasCur && cur.SHA256 == in.SHA256 && oldDir == in.Dir {
		// Already the running model: nothing to do.
		if prev, ok := store.Previous(product); ok {
			out.Previous = prev.SHA256
		}
		return out, nil
	}
	st, err := d.SetProductBundle(ctx, product, in.Dir)
	if err != nil {
		d.emitEvent(inspection.Warning, inspection.EventProductFailed,
			fmt.Sprintf("activating archive %s for product %s failed; it keeps bundle %s: %v", short(in.SHA256), product, oldHash, err),
			map[string]string{"product": product, "sha256": in.SHA256, "error": err.Error()})
		return out, fmt.Errorf("activate archive %s for product %s: %w", short(in.SHA256), product, err)
	}
	if _, err := store.Activate(product, in.SHA256); err != nil {
		return out, d.switchBack(product, oldDir, oldHash, fmt.Errorf("record the activation of %s: %w", short(in.SHA256), err))
	}
	if hasCur {
		out.Previous = cur.SHA256
	}
	if st.BundleHash != "" {
		out.BundleHash = st.BundleHash
	}
	d.emitEvent(inspection.Info, inspection.EventModelActivated,
		fmt.Sprintf("product %s now runs archive %s (bundle %s; was %s) after %s", product, short(in.SHA256), out.BundleHash,
			oldHash, time.Since(start).Round(time.Millisecond)),
		map[string]string{"product": product, "sha256": in.SHA256, "bundle_hash": out.BundleHash, "previous_sha256": out.Previous, "previous_bundle_hash": oldHash})
	return out, nil
}

// switchBack puts product's previous bundle (dir) back after the store
// failed to record a change, and returns the error to report.
func (d *Daemon) switchBack(product, dir, hash string, cause error) error {
	// Not the command's context: the bundle must go back even when the
	// command was cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), switchBackTimeout)
	defer cancel()
	if _, err := d.SetProductBundle(ctx, product, dir); err != nil {
		err = fmt.Errorf("%w; switching product %s back to bundle %s (%s) failed too: %v — the station runs a bundle the rollout store does not record; restart it",
			cause, product, hash, dir, err)
		d.emitEvent(inspection.Critical, inspection.EventProductFailed, err.Error(),
			map[string]string{"product": product, "error": err.Error()})
		return err
	}
	return fmt.Errorf("%w; product %s is back on bundle %s", cause, product, hash)
}

// RollbackModel makes product's previous installed bundle its model again
// ("" = the station's only product): swapped in first, then recorded; if
// the record fails the daemon goes back to the bundle it ran.
func (d *Daemon) RollbackModel(ctx context.Context, product string) (inspection.ModelOutcome, error) {
	start := time.Now()
	store := d.deps.Rollout
	if store == nil {
		return inspection.ModelOutcome{}, ErrRolloutDisabled
	}
	names := d.ProductNames()
	if product == "" {
		if len(names) != 1 {
			return inspection.ModelOutcome{}, fmt.Errorf("name the product to roll back (configured: %s)", strings.Join(names, ", "))
		}
		product = names[0]
	}
	if !slices.Contains(names, product) {
		return inspection.ModelOutcome{}, fmt.Errorf("product %q: %w; configured: %s", product, inspection.ErrUnknownProduct, strings.Join(names, ", "))
	}
	mu := &d.modelOps
	mu.Lock()
	defer mu.Unlock()
	oldDir, oldHash, _ := d.ProductBundle(product)
	prev, ok := store.Previous(product)
	if !ok {
		if _, installed := store.Current(product); installed {
			return inspection.ModelOutcome{}, fmt.Errorf("product %s: %w: the first installed bundle replaced the configuration's; to go back to that one, pack, sign and install it (inspectd pack, inspectd sign, model_install with activate)",
				product, rollout.ErrNoPrevious)
		}
		return inspection.ModelOutcome{}, fmt.Errorf("product %s: %w: it runs the configuration's bundle, nothing was installed for it", product, rollout.ErrNoPrevious)
	}
	cur, _ := store.Current(product)
	st, err := d.SetProductBundle(ctx, product, prev.Dir)
	if err != nil {
		d.emitEvent(inspection.Warning, inspection.EventProductFailed,
			fmt.Sprintf("rolling product %s back to archive %s failed; it keeps bundle %s: %v", product, short(prev.SHA256), oldHash, err),
			map[string]string{"product": product, "sha256": prev.SHA256, "error": err.Error()})
		return inspection.ModelOutcome{}, fmt.Errorf("roll product %s back to archive %s: %w", product, short(prev.SHA256), err)
	}
	if _, err := store.Rollback(product); err != nil {
		return inspection.ModelOutcome{}, d.switchBack(product, oldDir, oldHash, fmt.Errorf("record the rollback to %s: %w", short(prev.SHA256), err))
	}
	out := inspection.ModelOutcome{Product: product, ArchiveSHA256: prev.SHA256, BundleHash: prev.BundleHash, State: ModelRolledBack,
		Previous: cur.SHA256, Bytes: prev.Bytes}
	if st.BundleHash != "" {
		out.BundleHash = st.BundleHash
	}
	out.Duration = time.Since(start)
	out.DurationMs = ms(out.Duration)
	d.emitEvent(inspection.Info, inspection.EventModelRollback,
		fmt.Sprintf("product %s rolled back to archive %s (bundle %s; was %s) in %s", product, short(prev.SHA256), out.BundleHash,
			oldHash, out.Duration.Round(time.Millisecond)),
		map[string]string{"product": product, "sha256": prev.SHA256, "bundle_hash": out.BundleHash, "previous_sha256": cur.SHA256, "previous_bundle_hash": oldHash})
	return out, nil
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/buildinfo"
	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/daemon"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/logging"
	"github.com/inspectd/inspectd/models/rollout"
)

// openRollout opens the rollout store when [rollout] enabled (the state_dir
// lock is held: nobody else touches the store's directory), and makes every
// product whose store records a current installed bundle run that bundle
// instead of the one the configuration names.
func (st *station) openRollout() error {
	cfg := st.cfg
	if !cfg.Rollout.Enabled {
		return nil
	}
	store, err := rollout.Open(rollout.Options{
		Dir:             cfg.Rollout.Dir,
		TrustedKeys:     cfg.Rollout.TrustedKeys,
		RevokedKeys:     cfg.Rollout.RevokedKeys,
		CAFile:          cfg.Rollout.CAFile,
		AllowHTTP:       cfg.Rollout.AllowHTTP,
		MaxBytes:        cfg.Rollout.MaxBytes(),
		DownloadTimeout: cfg.Rollout.DownloadTimeout.D,
		StallTimeout:    cfg.Rollout.StallTimeout.D,
		Retries:         cfg.Rollout.Retries,
		UserAgent:       fmt.Sprintf("inspectd/%s station/%s", buildinfo.Version, cfg.Station.ID),
		Logger:          st.log,
	})
	if err != nil {
		return keyError(cfg, "rollout.dir", err)
	}
	st.store = store
	st.useInstalled(cfg, true)
	return nil
}

// useInstalled points each product that has a current installed bundle at
// it (at start-up and at every reload, so that SIGHUP does not go back to
// the configuration's bundle behind the store's back).
//
// At a reload (running), a product whose daemon runs an installed bundle
// keeps exactly that one: the daemon swaps a bundle in first and the
// store records it after (daemon/rollout.go), so between the two the
// daemon, not the store, says what runs — and Reload, which calls this
// under the daemon's reload lock, must not undo an activation in flight.
func (st *station) useInstalled(cfg *config.Config, startup bool) {
	if st.store == nil {
		return
	}
	pick := func(name, configured string) string {
		if !startup && st.d != nil {
			if dir, _, ok := st.d.ProductBundle(name); ok && st.isInstalled(dir) {
				return dir
			}
		}
		if in, ok := st.store.Current(name); ok && name != "" {
			st.logInstalled(name, in, configured, startup)
			return in.Dir
		}
		return configured
	}
	if len(cfg.Products) == 0 {
		cfg.Model.Bundle = pick(manifestProduct(cfg.Model.Bundle), cfg.Model.Bundle)
		return
	}
	for i := range cfg.Products {
		p := &cfg.Products[i]
		p.Bundle = pick(p.Name, p.Bundle)
	}
}

// isInstalled reports whether dir is a bundle of the rollout store.
func (st *station) isInstalled(dir string) bool {
	rel, err := filepath.Rel(st.store.Dir(), dir)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !strings.Contains(rel, string(filepath.Separator))
}

func (st *station) logInstalled(product string, in rollout.Installed, configured string, startup bool) {
	msg := fmt.Sprintf("product %s: running installed bundle %s (from rollout), config names %s", product, in.SHA256, configured)
	log := logging.Component(st.log, "rollout")
	if startup {
		log.Info(msg, "product", product, "sha256", in.SHA256, "bundle", in.Dir, "bundle_hash", in.BundleHash, "config_bundle", configured)
	} else {
		log.Debug(msg, "product", product, "sha256", in.SHA256, "bundle", in.Dir)
	}
}

// manifestProduct is the product a bundle's manifest names ("" when it
// cannot be read: the daemon's own verification reports why).
func manifestProduct(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "manifest.toml"))
	if err != nil {
		return ""
	}
	var m struct {
		Product string `toml:"product"`
	}
	if _, err := toml.Decode(string(data), &m); err != nil {
		return ""
	}
	return m.Product
}

// reloadConfig re-reads the configuration for a reload, with the installed
// bundles in force.
func (st *station) reloadConfig() (*config.Config, error) {
	cfg, err := config.Load(st.path)
	if err != nil {
		return nil, err
	}
	st.useInstalled(cfg, false)
	return cfg, nil
}

// reportRolloutCleaned reports what the store removed at start-up: the
// leftovers of installs interrupted by a crash or power loss.
func (st *station) reportRolloutCleaned() {
	if st.store == nil {
		return
	}
	cleaned := st.store.Cleaned()
	if len(cleaned) == 0 {
		return
	}
	msg := fmt.Sprintf("removed %d leftovers of interrupted model installs from %s: %s (the running models were not affected)",
		len(cleaned), st.cfg.Rollout.Dir, strings.Join(cleaned, ", "))
	logging.Component(st.log, "rollout").Warn(msg)
	st.d.ReportEvent(inspection.Event{Severity: inspection.Warning, Kind: inspection.EventModelInstall, Message: msg,
		Fields: map[string]string{"stage": "cleaned", "paths": strings.Join(cleaned, ",")}})
}

// rolloutStore is Deps.Rollout: the store, or a nil interface (not a nil
// *rollout.Store) when rollout is not enabled.
func (st *station) rolloutStore() daemon.RolloutStore {
	if st.store == nil {
		return nil
	}
	return st.store
}

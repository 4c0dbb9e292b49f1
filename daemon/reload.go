package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/logging"
	"github.com/segad-edge/segad-edge/model"
)

// Reload reads the config file again and applies what changed, by the
// reload class of each changed key (config.ClassOf: one table next to the
// schema): diff, build, swap.
//   - Live: thresholds, the warn band, publish_features, audit sampling and
//     the log level apply from the next frame on;
//   - Model: a new model stage is built and warmed up while the old one
//     keeps inspecting, then swapped in between two frames together with
//     the new thresholds;
//   - Capture: the new source is opened and, for live kinds, must deliver a
//     first frame (probeSource) before it is swapped in; the old one stops
//     being read and is closed once its frames in flight are finished;
//   - Restart keys keep their running values (logged as such); FitOnly keys
//     are for `segad fit` only.
//
// Nothing is swapped unless everything new could be built. An invalid file
// changes nothing: the error is logged, counted and shown in the health
// topic's last_config_error until a valid edit arrives. Every applied change
// is logged with its old and new value, for quality audits. Reloads are
// serialised (a SIGHUP and an editor's save may race).
func (d *Daemon) Reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.cfgMu.Lock()
	oldCfg := d.cfg
	d.cfgMu.Unlock()
	reject := func(what string, err error) error {
		msg := err.Error()
		if what != "" {
			msg = fmt.Sprintf("%s: %s: %v", oldCfg.Path, what, err)
		}
		d.configError.Store(&msg)
		d.metrics.Reloads.WithLabelValues("rejected").Inc()
		d.log.Error("config change rejected; the running configuration stays", "file", oldCfg.Path, "err", msg)
		return err
	}

	// Diff: what changed, by class; restart keys keep their running values.
	newCfg, err := config.Load(oldCfg.Path)
	if err != nil {
		return reject("", err)
	}
	changes := config.Diff(oldCfg, newCfg)
	applied := config.Applicable(oldCfg, newCfg)

	// Build everything new first; swap only when all of it works.
	var m *model.Model
	var settings model.Settings
	if config.Touches(liveModelChanges(changes), config.Model) {
		if m, settings, err = model.Build(applied, model.Options{Log: d.log}); err != nil {
			return reject("new models not loaded", err)
		}
	} else if settings, err = model.SettingsFor(applied); err != nil {
		return reject("", err)
	}
	var src capture.Source
	if config.Touches(changes, config.Capture) {
		geometry := m
		if geometry == nil {
			geometry = d.insp.Model()
		}
		if src, err = d.openSource(applied.Capture, geometry); err == nil {
			if err = probeSource(src, applied.Capture); err != nil {
				src.Close()
			}
		}
		if err != nil {
			if m != nil {
				m.Close()
			}
			return reject("new capture source not switched to; the running source stays", err)
		}
	}
	// The candidate last: it swaps itself in when built. A live model
	// rebuild re-verifies it too (it scores the live feature rows).
	if d.shadow != nil && (shadowChanged(changes) || m != nil) {
		if err := d.shadow.Apply(applied, d.log); err != nil {
			if m != nil {
				m.Close()
			}
			if src != nil {
				src.Close()
			}
			return reject("new shadow candidate not loaded", err)
		}
	}

	// Swap. Golden challenges go pending first: the new model judges no
	// part under the old model's passed challenge.
	challenge := d.goldenAfterReload(liveModelChanges(changes)) // a new shadow candidate judges nothing on the line
	for _, c := range changes {
		switch c.Class {
		case config.Restart:
			d.log.Warn("config changed; takes effect after a restart", "key", c.Key, "old", c.Old, "new", c.New)
		case config.FitOnly:
			d.log.Debug("config changed; used by segad fit only", "key", c.Key)
		default:
			d.log.Info("config changed", "key", c.Key, "old", c.Old, "new", c.New, "file", newCfg.Path)
		}
	}
	if m != nil {
		old := d.insp.Swap(m, settings)
		old.Close()
		d.metrics.setModel(m)
		d.log.Info("model stage restarted in place", "detectors", m.Names, "bundle", m.ForestHash)
	} else {
		d.insp.SetSettings(settings)
	}
	if src != nil {
		d.srcMu.Lock()
		old := d.src
		d.src = newSourceRef(src)
		d.srcMu.Unlock()
		old.retire()
		d.log.Info("capture source restarted in place", "source", src.Name())
	}
	if d.logLevel != nil {
		d.logLevel.Set(logging.ParseLevel(applied.Log.Level))
	}
	d.cfgMu.Lock()
	d.cfg = applied
	d.cfgMu.Unlock()
	d.configError.Store(nil)
	d.metrics.Reloads.WithLabelValues("applied").Inc()
	if d.onReload != nil {
		d.onReload(applied)
	}
	if challenge != nil {
		challenge()
	}
	return nil
}

// WatchConfig reloads when the config file changes on disk. It watches the
// file's folder, because editors and config-management tools replace the
// file (write a new one and rename it over) rather than write in place, and
// a watch on the old inode would go quiet. Bursts are coalesced.
func (d *Daemon) WatchConfig(ctx context.Context) error {
	d.cfgMu.Lock()
	path := d.cfg.Path
	d.cfgMu.Unlock()
	if path == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config %s: %w", path, err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		return fmt.Errorf("watch config folder %s: %w", filepath.Dir(abs), err)
	}
	// A symlinked config (config management often links it) is replaced
	// at its target (config.Edit, the console's Apply, renames there):
	// watch the target's folder too.
	target, _ := filepath.EvalSymlinks(abs)
	if target != "" && target != abs {
		if err := w.Add(filepath.Dir(target)); err != nil {
			w.Close()
			return fmt.Errorf("watch config target folder %s: %w", filepath.Dir(target), err)
		}
	}
	go func() {
		defer w.Close()
		var pending <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if name := filepath.Clean(ev.Name); (name != abs && (target == "" || name != target)) || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) == 0 {
					continue
				}
				pending = time.After(300 * time.Millisecond)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				d.floodLog.Warn("config watch", "err", err)
			case <-pending:
				pending = nil
				if _, err := os.Stat(abs); err != nil {
					continue // mid-replace; the Create event follows
				}
				d.Reload()
			}
		}
	}()
	return nil
}

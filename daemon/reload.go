package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/goccy/go-yaml"

	"github.com/segad-edge/segad-edge/config"
)

// Reload reads the config file again and applies what changed:
//   - thresholds, publish options, audit sampling and the log level apply
//     from the next frame on;
//   - detectors, mask or model: the model stage is rebuilt and swapped in
//     between two frames (the old one keeps inspecting until then);
//   - capture: the source is reopened in place;
//   - MQTT, HTTP and pipeline keys need a restart (logged as such).
//
// An invalid file changes nothing: the error is logged, counted and shown
// in the health topic's last_config_error until a valid edit arrives. Every
// applied change is logged with its old and new value, for quality audits.
func (d *Daemon) Reload() error {
	d.cfgMu.Lock()
	oldCfg := d.cfg
	d.cfgMu.Unlock()
	newCfg, err := config.Load(oldCfg.Path)
	if err == nil {
		err = ResolveThreshold(newCfg)
	}
	if err != nil {
		msg := err.Error()
		d.configError.Store(&msg)
		d.Metrics.Reloads.WithLabelValues("rejected").Inc()
		d.log.Error("config change rejected; the running configuration stays", "file", oldCfg.Path, "err", err)
		return err
	}
	changes := Diff(oldCfg, newCfg)
	if len(changes) == 0 {
		d.configError.Store(nil)
		return nil
	}
	section := func(prefixes ...string) bool {
		for _, c := range changes {
			for _, p := range prefixes {
				if c.Key == p || strings.HasPrefix(c.Key, p+".") || strings.HasPrefix(c.Key, p+"[") {
					return true
				}
			}
		}
		return false
	}
	if section("detectors", "classifier", "segad.mask", "segad.segments", "segad.model", "segad.bundle", "onnxruntime") {
		m, err := BuildModel(newCfg, d.log)
		if err != nil {
			msg := fmt.Sprintf("%s: new models not loaded: %v", newCfg.Path, err)
			d.configError.Store(&msg)
			d.Metrics.Reloads.WithLabelValues("rejected").Inc()
			d.log.Error("config change rejected; the running configuration stays", "file", newCfg.Path, "err", err)
			return err
		}
		old := d.line.SwapModel(m)
		old.Close()
		d.log.Info("model stage restarted in place", "detectors", m.Names, "bundle", m.Bundle)
	}
	if section("capture") {
		src, err := OpenSource(newCfg, d.line.Model(), d.log)
		if err != nil {
			msg := fmt.Sprintf("%s: new capture source not opened: %v", newCfg.Path, err)
			d.configError.Store(&msg)
			d.Metrics.Reloads.WithLabelValues("rejected").Inc()
			d.log.Error("capture change rejected; the running source stays", "err", err)
			return err
		}
		d.srcMu.Lock()
		old := d.src
		d.src = src
		d.srcMu.Unlock()
		old.Close()
		d.log.Info("capture source restarted in place", "source", src.Name())
	}
	for _, c := range changes {
		needsRestart := strings.HasPrefix(c.Key, "mqtt") || strings.HasPrefix(c.Key, "http") ||
			strings.HasPrefix(c.Key, "pipeline") || c.Key == "station" || strings.HasPrefix(c.Key, "log.format") ||
			strings.HasPrefix(c.Key, "audit.dir") || strings.HasPrefix(c.Key, "audit.max")
		if c.Key == "mqtt.publish_features" {
			needsRestart = false
		}
		if needsRestart {
			d.log.Warn("config changed; takes effect after a restart", "key", c.Key, "old", c.Old, "new", c.New)
			continue
		}
		d.log.Info("config changed", "key", c.Key, "old", c.Old, "new", c.New, "file", newCfg.Path)
	}
	d.line.SetSettings(settingsOf(newCfg))
	if LogLevel != nil {
		LogLevel.Set(ParseLevel(newCfg.Log.Level))
	}
	d.cfgMu.Lock()
	// Keys that need a restart keep their running values.
	applied := *newCfg
	applied.MQTT, applied.HTTP, applied.Pipeline = oldCfg.MQTT, oldCfg.HTTP, oldCfg.Pipeline
	d.cfg = &applied
	d.cfgMu.Unlock()
	d.configError.Store(nil)
	d.Metrics.Reloads.WithLabelValues("applied").Inc()
	return nil
}

// Change is one configuration key whose value changed.
type Change struct {
	Key      string
	Old, New string
}

// Diff lists the keys whose values differ between two configurations, as
// dotted YAML paths with their old and new values, sorted by key.
func Diff(a, b *config.Config) []Change {
	fa, fb := map[string]string{}, map[string]string{}
	flatten("", toYAMLTree(a), fa)
	flatten("", toYAMLTree(b), fb)
	var out []Change
	for k, v := range fa {
		if w, ok := fb[k]; !ok || w != v {
			out = append(out, Change{k, v, fb[k]})
		}
	}
	for k, w := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, Change{k, "", w})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func toYAMLTree(c *config.Config) any {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil
	}
	var t any
	if err := yaml.Unmarshal(b, &t); err != nil {
		return nil
	}
	return t
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, x, out)
		}
	case []any:
		for i, x := range t {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	default:
		if strings.Contains(strings.ToLower(prefix), "password") || strings.HasSuffix(prefix, "token") {
			out[prefix] = "(secret)"
			if v != nil && !reflect.ValueOf(v).IsZero() {
				out[prefix] = fmt.Sprintf("(secret %x)", hashShort(fmt.Sprint(v)))
			}
			return
		}
		out[prefix] = fmt.Sprint(v)
	}
}

func hashShort(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
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
				if filepath.Clean(ev.Name) != abs || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) == 0 {
					continue
				}
				pending = time.After(300 * time.Millisecond)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				d.log.Warn("config watch", "err", err)
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

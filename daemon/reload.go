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

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
)

// restartKeys need a restart to change: the connection, the server, the
// queues, the station (it names topics and results), the log format,
// ONNX Runtime (loaded once per process) and the audit folder and bounds.
var restartKeys = []string{"mqtt", "http", "pipeline", "station", "log.format", "onnxruntime", "audit.dir", "audit.max_bytes", "audit.max_age"}

// Reload reads the config file again and applies what changed:
//   - thresholds, the warn band, publish_features, audit sampling and the
//     log level apply from the next frame on;
//   - detectors, mask, model or bundle: a new model stage is built and
//     warmed up while the old one keeps inspecting, then swapped in between
//     two frames together with the new thresholds;
//   - capture: the new source is opened and, for live kinds, must deliver a
//     first frame (probeSource) before it is swapped in; the old one stops
//     being read and is closed once its frames in flight are finished;
//   - the keys in restartKeys need a restart (logged as such; they keep
//     their running values); fit.* is for `segad fit` only.
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
		d.Metrics.Reloads.WithLabelValues("rejected").Inc()
		d.log.Error("config change rejected; the running configuration stays", "file", oldCfg.Path, "err", msg)
		return err
	}
	newCfg, err := config.Load(oldCfg.Path)
	if err == nil {
		err = ResolveThreshold(newCfg)
	}
	if err != nil {
		return reject("", err)
	}
	// Keys that need a restart keep their running values, so that what is
	// applied below is exactly what runs.
	restartOnly := func(key string) bool {
		for _, p := range restartKeys {
			if key == p || strings.HasPrefix(key, p+".") || strings.HasPrefix(key, p+"[") {
				return key != "mqtt.publish_features"
			}
		}
		return false
	}
	changes := Diff(oldCfg, newCfg)
	applied := *newCfg
	applied.MQTT, applied.HTTP, applied.Pipeline = oldCfg.MQTT, oldCfg.HTTP, oldCfg.Pipeline
	applied.MQTT.PublishFeatures = newCfg.MQTT.PublishFeatures
	applied.Station, applied.ONNXRuntime = oldCfg.Station, oldCfg.ONNXRuntime
	applied.Log.Format = oldCfg.Log.Format
	applied.Audit.Dir, applied.Audit.MaxBytes, applied.Audit.MaxAge = oldCfg.Audit.Dir, oldCfg.Audit.MaxBytes, oldCfg.Audit.MaxAge
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

	// Build everything new first; swap only when all of it works.
	var model *Model
	if section("detectors", "classifier", "segad.mask", "segad.segments", "segad.model", "segad.bundle") {
		if model, err = BuildModel(&applied, d.log); err != nil {
			return reject("new models not loaded", err)
		}
	}
	var src FrameSource
	if section("capture") {
		m := model
		if m == nil {
			m = d.line.Model()
		}
		if src, err = OpenSource(&applied, m, d.floodLog); err == nil {
			if err = probeSource(src, applied.Capture); err != nil {
				src.Close()
			}
		}
		if err != nil {
			if model != nil {
				model.Close()
			}
			return reject("new capture source not switched to; the running source stays", err)
		}
	}

	for _, c := range changes {
		switch {
		case restartOnly(c.Key):
			d.log.Warn("config changed; takes effect after a restart", "key", c.Key, "old", c.Old, "new", c.New)
		case strings.HasPrefix(c.Key, "fit."):
			d.log.Debug("config changed; used by segad fit only", "key", c.Key)
		default:
			d.log.Info("config changed", "key", c.Key, "old", c.Old, "new", c.New, "file", newCfg.Path)
		}
	}
	settings := settingsOf(&applied)
	if model != nil {
		old := d.line.Swap(model, settings)
		old.Close()
		d.Metrics.ModelInfo.Reset()
		d.Metrics.ModelInfo.WithLabelValues(model.Bundle, strings.Join(model.Names, ","), fmt.Sprint(model.Extractor.NumFeatures())).Set(1)
		d.log.Info("model stage restarted in place", "detectors", model.Names, "bundle", model.Bundle)
	} else {
		d.line.SetSettings(settings)
	}
	if src != nil {
		d.srcMu.Lock()
		old := d.src
		d.src = newSourceRef(src)
		d.srcMu.Unlock()
		old.retire()
		d.log.Info("capture source restarted in place", "source", src.Name())
	}
	if LogLevel != nil {
		LogLevel.Set(ParseLevel(applied.Log.Level))
	}
	d.cfgMu.Lock()
	d.cfg = &applied
	d.cfgMu.Unlock()
	d.configError.Store(nil)
	d.Metrics.Reloads.WithLabelValues("applied").Inc()
	return nil
}

// Probe bounds for a new live source on reload: it must deliver a first
// frame within its open_timeout plus watchdog, clamped to this range, or the
// running source stays.
const (
	minProbe = time.Second
	maxProbe = 60 * time.Second
)

// probeSource checks that a source opened by a reload works before the
// running one is closed for it. Live kinds (device, stream, gstreamer) open
// in the background, so an Open without error proves nothing: wait until
// their reader has read a frame, and refuse on their first failure or when
// none comes in time (a pipeline with a missing element, one that ends at
// once, a camera that is off). The probe watches State and never calls
// Next, so no frame is taken from the source (nor lost) before the switch:
// the first frame inspected afterwards is a fresh one, as for any live
// source. File kinds (video, sequence, folder, watch) fail in Open when
// their path is unusable, and a file read to probe them would be a part
// taken out of order, so for them opening is the probe.
func probeSource(src FrameSource, cc capture.Config) error {
	switch cc.Kind {
	case capture.KindDevice, capture.KindStream, capture.KindGStreamer:
	default:
		return nil
	}
	open, wd := cc.OpenTimeout, cc.Watchdog
	if open <= 0 {
		open = 30 * time.Second
	}
	if wd <= 0 {
		wd = 5 * time.Second
	}
	limit := min(max(open+wd, minProbe), maxProbe)
	deadline := time.Now().Add(limit)
	for {
		st := src.State()
		switch {
		case st.LastFrameAge > 0:
			return nil
		case st.LastError != "":
			return fmt.Errorf("source %s failed before its first frame: %s", src.Name(), st.LastError)
		case time.Now().After(deadline):
			return fmt.Errorf("source %s delivered no frame within %s (capture.open_timeout + capture.watchdog)", src.Name(), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
)

// Class is what a changed key takes to apply on a hot reload.
type Class int

// Reload classes.
const (
	// Live keys apply from the next frame (thresholds, warn band,
	// publish_features, audit sampling, log level).
	Live Class = iota
	// Model keys rebuild the model stage in place (detectors, mask, forest).
	Model
	// Capture keys open a new source and switch to it.
	Capture
	// Restart keys keep their running values until a restart.
	Restart
	// FitOnly keys are read by `segad fit` only.
	FitOnly
)

func (c Class) String() string {
	return [...]string{"live", "model", "capture", "restart", "fit"}[c]
}

// reloadClasses is the one table of what each key takes to change: a key
// belongs to the longest prefix listed here (every key not listed, and
// every key below one listed as Live, is Live). The connection, the
// server, the queues, the station (it names topics and results), the log
// format, ONNX Runtime (loaded once per process) and the audit folder and
// bounds need a restart.
var reloadClasses = []struct {
	prefix string
	class  Class
}{
	{"station", Restart},
	{"log.format", Restart},
	{"onnxruntime", Restart},
	{"capture", Capture},
	{"capture.align", Capture}, // a new reference or motion rebuilds the source's preprocessor
	{"detectors", Model},
	{"classifier", Model},
	{"segad.mask", Model},
	{"segad.segments", Model},
	{"segad.model", Model},
	{"segad.bundle", Model},
	// The candidate is rebuilt on its own (the daemon's shadow hook); the
	// live model stays (daemon.liveModelChanges leaves these keys out).
	{"segad.shadow", Model},
	{"mqtt", Restart},
	{"mqtt.publish_features", Live},
	{"http", Restart},
	{"audit.dir", Restart},
	{"audit.max_bytes", Restart},
	{"audit.max_age", Restart},
	{"pipeline", Restart},
	{"fit", FitOnly},
	{"history", Restart},
	{"plc", Restart},
	// console users, session_ttl, live_rate and login_attempts are live
	// (auth.Manager.Update); serving the console at all takes a restart.
	{"console.enabled", Restart},
	{"assurance.golden", Restart},
	{"assurance.drift", Restart},
}

// ClassOf is the reload class of a dotted key ("segad.threshold",
// "detectors[0].model").
func ClassOf(key string) Class {
	class, best := Live, -1
	for _, e := range reloadClasses {
		if under(key, e.prefix) && len(e.prefix) > best {
			class, best = e.class, len(e.prefix)
		}
	}
	return class
}

// under reports whether key is prefix or a key inside it.
func under(key, prefix string) bool {
	return key == prefix || strings.HasPrefix(key, prefix+".") || strings.HasPrefix(key, prefix+"[")
}

// Change is one configuration key whose value changed.
type Change struct {
	Key      string
	Old, New string
	// Class is what the change takes to apply (ClassOf(Key)).
	Class Class
}

// Diff lists the keys whose values differ between two configurations, as
// dotted YAML paths with their old and new values (secrets as hashes) and
// reload classes, sorted by key.
func Diff(a, b *Config) []Change {
	fa, fb := map[string]string{}, map[string]string{}
	flatten("", toYAMLTree(a), fa)
	flatten("", toYAMLTree(b), fb)
	var out []Change
	for k, v := range fa {
		if w, ok := fb[k]; !ok || w != v {
			out = append(out, Change{k, v, fb[k], ClassOf(k)})
		}
	}
	for k, w := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, Change{k, "", w, ClassOf(k)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Touches reports whether any change is of class c.
func Touches(changes []Change, c Class) bool {
	for _, ch := range changes {
		if ch.Class == c {
			return true
		}
	}
	return false
}

// Applicable is next with every Restart key kept at its value in running:
// what a reload applies, so that what runs afterwards is exactly what the
// configuration in force says.
func Applicable(running, next *Config) *Config {
	out := *next
	keepRestart("", reflect.ValueOf(running).Elem(), reflect.ValueOf(&out).Elem())
	return &out
}

// keepRestart copies into dst every field of src whose key is Restart and
// has no key of another class below it, recursing into the others.
func keepRestart(prefix string, src, dst reflect.Value) {
	t := src.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name) // the YAML library's default key
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		switch {
		case ClassOf(key) == Restart && !mixedBelow(key):
			dst.Field(i).Set(src.Field(i))
		case f.Type.Kind() == reflect.Struct && mixedBelow(key):
			keepRestart(key, src.Field(i), dst.Field(i))
		}
	}
}

// mixedBelow reports whether a key listed in reloadClasses lies below key
// with a class other than key's own.
func mixedBelow(key string) bool {
	c := ClassOf(key)
	for _, e := range reloadClasses {
		if e.prefix != key && under(e.prefix, key) && e.class != c {
			return true
		}
	}
	return false
}

func toYAMLTree(c *Config) any {
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

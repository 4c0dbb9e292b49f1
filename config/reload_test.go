package config

import (
	"testing"
)

// TestReloadClasses: every key's class comes from the one table, the
// longest prefix winning (mqtt.publish_features is live inside the
// restart-only mqtt section).
func TestReloadClasses(t *testing.T) {
	for key, want := range map[string]Class{
		"segad.threshold":            Live,
		"segad.warn_threshold":       Live,
		"audit.sample_pass":          Live,
		"log.level":                  Live,
		"log.format":                 Restart,
		"mqtt.publish_features":      Live,
		"mqtt.broker":                Restart,
		"mqtt.outbox.path":           Restart,
		"detectors[0].model":         Model,
		"classifier.model":           Model,
		"segad.bundle":               Model,
		"capture.path":               Capture,
		"capture.preprocess.width":   Capture,
		"pipeline.queue":             Restart,
		"station":                    Restart,
		"audit.dir":                  Restart,
		"fit.trees":                  FitOnly,
		"http.listen":                Restart,
		"onnxruntime.library":        Restart,
		"segad.segments[1]":          Model,
		"mqtt.publish_features_typo": Restart,
	} {
		if got := ClassOf(key); got != want {
			t.Errorf("ClassOf(%q) = %s, want %s", key, got, want)
		}
	}
}

// TestApplicableKeepsRestartKeys: a reload applies live, model and capture
// keys and keeps every restart key at its running value.
func TestApplicableKeepsRestartKeys(t *testing.T) {
	old := &Config{Station: "a"}
	old.MQTT.Broker, old.MQTT.PublishFeatures = "tcp://a:1883", false
	old.Pipeline.Queue, old.Log.Format, old.Log.Level = 2, "text", "info"
	old.Audit.Dir, old.Audit.SamplePass = "/a", 0
	next := &Config{Station: "b"}
	next.MQTT.Broker, next.MQTT.PublishFeatures = "tcp://b:1883", true
	next.Pipeline.Queue, next.Log.Format, next.Log.Level = 9, "json", "debug"
	next.Audit.Dir, next.Audit.SamplePass = "/b", 0.5
	got := Applicable(old, next)
	if got.Station != "a" || got.MQTT.Broker != "tcp://a:1883" || got.Pipeline.Queue != 2 || got.Log.Format != "text" || got.Audit.Dir != "/a" {
		t.Errorf("a restart key changed: %+v", got)
	}
	if !got.MQTT.PublishFeatures || got.Log.Level != "debug" || got.Audit.SamplePass != 0.5 {
		t.Errorf("a live key did not change: %+v", got)
	}
	var keys []string
	for _, c := range Diff(old, next) {
		keys = append(keys, c.Key+"="+c.Class.String())
	}
	if !Touches(Diff(old, next), Restart) || Touches(Diff(old, next), Model) {
		t.Errorf("classes of %v", keys)
	}
}

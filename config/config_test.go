package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleParses(t *testing.T) {
	c, err := Parse(filepath.Join("/etc/segad", "segad.yaml"), Example)
	if err != nil {
		t.Fatalf("the shipped example does not parse: %v", err)
	}
	if c.Station != "line1-cam1" || len(c.Detectors) != 1 || c.Detectors[0].Name != "patchcore" {
		t.Fatalf("example decoded wrongly: station %q, detectors %+v", c.Station, c.Detectors)
	}
	if got, want := c.SegAD.Model, "/etc/segad/models/brf.json"; got != want {
		t.Errorf("relative model path resolved to %q, want %q", got, want)
	}
	if c.SegAD.Mask.File != "builtin:vad" {
		t.Errorf("builtin mask rewritten as a path: %q", c.SegAD.Mask.File)
	}
	if c.MQTT.Station != c.Station {
		t.Errorf("mqtt.station = %q, want the station %q", c.MQTT.Station, c.Station)
	}
}

// minimal is a valid config; cases edit one line of it.
const minimal = `station: s1
capture:
  kind: folder
  path: imgs
detectors:
  - name: d1
    model: d1.onnx
segad:
  mask: builtin:vad
  model: brf.json
  threshold: 0.5
`

func TestErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(string) string
		line     int
		contains []string
	}{
		{"unknown key", func(s string) string { return strings.Replace(s, "  threshold: 0.5", "  treshold: 0.5", 1) }, 11,
			[]string{"treshold", "unknown key"}},
		{"wrong type", func(s string) string { return strings.Replace(s, "threshold: 0.5", "threshold: [1]", 1) }, 11,
			[]string{"cannot unmarshal"}},
		{"warn above threshold", func(s string) string { return s + "  warn_threshold: 0.7\n" }, 12,
			[]string{"segad.warn_threshold", "below threshold"}},
		{"missing threshold", func(s string) string { return strings.Replace(s, "  threshold: 0.5\n", "", 1) }, 8,
			[]string{"threshold is required"}},
		{"duplicate detector", func(s string) string {
			return strings.Replace(s, "segad:", "  - name: d1\n    model: d2.onnx\nsegad:", 1)
		}, 8, []string{"detectors[1].name", "unique"}},
		{"bad log level", func(s string) string { return s + "log:\n  level: loud\n" }, 13,
			[]string{"log.level", "debug, info, warn or error"}},
		{"queue out of range", func(s string) string { return s + "pipeline:\n  queue: 5000\n" }, 13,
			[]string{"pipeline.queue", "5000 out of range [1, 1024]"}},
		{"http off loopback needs token", func(s string) string { return s + "http:\n  listen: 0.0.0.0:8080\n" }, 12,
			[]string{"http.token", "required"}},
		{"fit out of range", func(s string) string { return s + "fit:\n  eta: 2\n" }, 13,
			[]string{"fit.eta", "2 out of range (0, 1]"}},
		{"no detectors", func(s string) string {
			return strings.Replace(s, "detectors:\n  - name: d1\n    model: d1.onnx\n", "", 1)
		}, 0, []string{"at least one detector"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("cfg.yaml", []byte(tc.edit(minimal)))
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			for _, want := range tc.contains {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if !strings.HasPrefix(msg, "cfg.yaml") {
				t.Errorf("error %q does not name the file", msg)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *config.Error", err)
			}
			if tc.line > 0 && ce.Line != tc.line {
				t.Errorf("line = %d, want %d (%s)", ce.Line, tc.line, msg)
			}
		})
	}
}

func TestMinimalDefaults(t *testing.T) {
	c, err := Parse("/x/cfg.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Pipeline.Queue != 2 || c.Pipeline.Overflow != "drop_oldest" || c.HTTP.Listen != "127.0.0.1:8080" {
		t.Errorf("defaults not applied: %+v %+v", c.Pipeline, c.HTTP)
	}
	if c.Capture.Path != "/x/imgs" || c.Detectors[0].Model != "/x/d1.onnx" {
		t.Errorf("paths not resolved against the config folder: %q %q", c.Capture.Path, c.Detectors[0].Model)
	}
	if c.MQTT.Prefix != "segad" {
		t.Errorf("mqtt defaults lost: prefix %q", c.MQTT.Prefix)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want a not-exist error naming the file, got %v", err)
	}
}

func TestHTTPListenAddresses(t *testing.T) {
	for listen, ok := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true,
		"0.0.0.0:8080": false, "[::]:8080": false, "8080": false,
	} {
		_, err := Parse("cfg.yaml", []byte(minimal+"http:\n  listen: \""+listen+"\"\n"))
		if (err == nil) != ok {
			t.Errorf("listen %s without token: err %v, want ok=%v", listen, err, ok)
		}
	}
}

func TestStationOnce(t *testing.T) {
	_, err := Parse("cfg.yaml", []byte(minimal+"mqtt:\n  station: other\n"))
	if err == nil || !strings.Contains(err.Error(), "mqtt.station") {
		t.Fatalf("differing mqtt.station: %v", err)
	}
	c, err := Parse("cfg.yaml", []byte(minimal+"mqtt:\n  station: s1\n"))
	if err != nil || c.MQTT.Station != "s1" {
		t.Fatalf("same station twice: %v", err)
	}
}

// TestHTTPOnLoopback: which http.listen addresses serve loopback clients
// only (the token rule and the console's clear-text warning use it).
func TestHTTPOnLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true, "127.0.0.2:80": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "192.168.1.5:8080": false, "plc-host:8080": false, "off": false,
	} {
		if got := (HTTPConfig{Listen: listen}).OnLoopback(); got != want {
			t.Errorf("OnLoopback(%q) = %v, want %v", listen, got, want)
		}
	}
}

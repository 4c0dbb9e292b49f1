package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestShadowSection: segad.shadow's defaults, paths, ranges and errors,
// the configuration the candidate is built from, and its reload class.
func TestShadowSection(t *testing.T) {
	const path = "/etc/segad/segad.yaml"
	tests := []struct {
		name     string
		shadow   string
		contains []string // errors; nil: valid
		check    func(t *testing.T, c *Config)
	}{
		{"defaults and paths", "  shadow: {bundle: cand}\n", nil, func(t *testing.T, c *Config) {
			s := c.SegAD.Shadow
			if s.Share != DefaultShadowShare || s.Bundle != filepath.Join("/etc/segad", "cand") || s.OwnDetectors() {
				t.Errorf("shadow %+v", s)
			}
			m := c.ShadowModelConfig()
			if m.SegAD.Bundle != s.Bundle || m.SegAD.Model != "" || m.SegAD.Threshold != nil || m.SegAD.Shadow != nil ||
				len(m.Detectors) != 1 || m.Detectors[0].Name != "d1" || c.SegAD.Model == "" || *c.SegAD.Threshold != 0.5 {
				t.Errorf("candidate config: bundle %q model %q threshold %v detectors %v; live kept: %q %v",
					m.SegAD.Bundle, m.SegAD.Model, m.SegAD.Threshold, m.Detectors, c.SegAD.Model, *c.SegAD.Threshold)
			}
		}},
		{"own detectors", "  shadow:\n    bundle: cand\n    share: 0.25\n    detectors:\n      - name: d9\n        model: d9.onnx\n", nil, func(t *testing.T, c *Config) {
			m := c.ShadowModelConfig()
			if !c.SegAD.Shadow.OwnDetectors() || len(m.Detectors) != 1 || m.Detectors[0].Name != "d9" ||
				m.Detectors[0].Model != filepath.Join("/etc/segad", "d9.onnx") || len(m.Detectors[0].Providers) == 0 || c.Detectors[0].Name != "d1" {
				t.Errorf("candidate detectors %+v (defaults filled, path resolved), live %v", m.Detectors, c.Detectors[0].Name)
			}
		}},
		{"no bundle", "  shadow: {share: 0.5}\n", []string{"segad.shadow.bundle", "missing"}, nil},
		{"share zero is the default", "  shadow: {bundle: cand, share: 0}\n", nil, func(t *testing.T, c *Config) {
			if c.SegAD.Shadow.Share != 1 {
				t.Errorf("share %v", c.SegAD.Shadow.Share)
			}
		}},
		{"share above 1", "  shadow: {bundle: cand, share: 1.5}\n", []string{"segad.shadow.share", "1.5 out of range"}, nil},
		{"share negative", "  shadow: {bundle: cand, share: -0.1}\n", []string{"segad.shadow.share"}, nil},
		{"bad detector", "  shadow:\n    bundle: cand\n    detectors:\n      - name: d9\n", []string{"segad.shadow.detectors[0]"}, nil},
		{"duplicate detector", "  shadow:\n    bundle: cand\n    detectors:\n      - {name: d9, model: a.onnx}\n      - {name: d9, model: b.onnx}\n",
			[]string{"segad.shadow.detectors[1].name", "unique"}, nil},
		{"unknown key", "  shadow: {bundle: cand, shares: 1}\n", []string{"shares", "unknown key"}, nil},
		{"no history", "  shadow: {bundle: cand}\nhistory: {enabled: false}\n", []string{"segad.shadow", "history.enabled is false"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(path, []byte(minimal+tc.shadow))
			if tc.contains == nil {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.contains {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
	// The candidate cannot be the live bundle.
	live := strings.Replace(minimal, "  model: brf.json\n  threshold: 0.5\n", "  bundle: b1\n", 1)
	if _, err := Parse(path, []byte(live+"  shadow: {bundle: b1}\n")); err == nil || !strings.Contains(err.Error(), "is the live bundle") {
		t.Errorf("candidate = live bundle: %v", err)
	}
	if c, _ := Parse(path, []byte(minimal)); c.ShadowModelConfig() != nil {
		t.Error("a config without segad.shadow has a candidate config")
	}
	for key, want := range map[string]Class{"segad.shadow": Model, "segad.shadow.share": Model, "segad.shadow.detectors[0].model": Model} {
		if got := ClassOf(key); got != want {
			t.Errorf("ClassOf(%s) = %v, want %v", key, got, want)
		}
	}
}

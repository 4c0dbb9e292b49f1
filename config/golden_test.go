package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGoldenKeys: defaults (on_start true, action fail_closed, no
// schedule), a relative dir resolved against the config file, and the
// refusals with the key named.
func TestGoldenKeys(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       string // "" : valid
		check      func(t *testing.T, g GoldenConfig)
	}{
		{"off by default", "", "", func(t *testing.T, g GoldenConfig) {
			if g.On() || g.StartChallenge() || g.Action != GoldenFailClosed || g.Every != 0 {
				t.Errorf("defaults: %+v", g)
			}
		}},
		{"dir relative, defaults", "assurance:\n  golden: {dir: golden}\n", "", func(t *testing.T, g GoldenConfig) {
			if g.Dir != filepath.Join("/etc/segad", "golden") || !g.StartChallenge() || g.Action != GoldenFailClosed {
				t.Errorf("got %+v", g)
			}
		}},
		{"flag, schedule, no start", "assurance:\n  golden: {dir: /g, on_start: false, every: 8h, action: flag}\n", "", func(t *testing.T, g GoldenConfig) {
			if g.StartChallenge() || g.Every != 8*time.Hour || g.Action != GoldenFlag {
				t.Errorf("got %+v", g)
			}
		}},
		{"unknown action", "assurance:\n  golden: {dir: /g, action: stop}\n", "assurance.golden.action", nil},
		{"schedule too often", "assurance:\n  golden: {dir: /g, every: 10s}\n", "assurance.golden.every: 10s out of range", nil},
		{"schedule without dir", "assurance:\n  golden: {every: 1h}\n", "without assurance.golden.dir", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("/etc/segad/segad.yaml", []byte(minimal+c.yaml))
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err %v, want one saying %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg.Assurance.Golden)
		})
	}
	if ClassOf("assurance.golden.dir") != Restart {
		t.Errorf("assurance.golden.dir reload class %v, want restart", ClassOf("assurance.golden.dir"))
	}
}

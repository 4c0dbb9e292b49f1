package config

import (
	"errors"
	"time"
)

// GoldenConfig is assurance.golden: golden-sample challenges, known good
// and known bad parts run through the line's own model on purpose
// (docs/assurance.md).
type GoldenConfig struct {
	// Dir is the golden set: good/ and bad/<type>/ image folders, or a
	// manifest golden.yaml listing each image with its expected verdict.
	// Empty: no challenges.
	Dir string `yaml:"dir"`
	// OnStart runs a challenge after the model is built and before the
	// daemon reports ready; the daemon is not ready until it passes.
	// Default true (it matters only when Dir is set).
	OnStart *bool `yaml:"on_start"`
	// Every runs a challenge on this period while the line runs (0: off).
	Every time.Duration `yaml:"every"`
	// Action is what a failed challenge does to production parts until a
	// challenge passes: fail_closed (every part gets an error verdict with
	// reason code golden_failed; the default, because a station that has
	// just misjudged known parts must not pass unknown ones on its word) or
	// flag (verdicts stand; every result is marked warn with a reason note).
	Action string `yaml:"action"`
}

// Golden actions (GoldenConfig.Action).
const (
	GoldenFailClosed = "fail_closed"
	GoldenFlag       = "flag"
)

// goldenEveryRange bounds assurance.golden.every when set: more often than
// a minute would keep a CPU line's detectors busy with the same images; a
// month is the longest a plant would leave a station unchallenged.
var goldenEveryRange = [2]time.Duration{time.Minute, 31 * 24 * time.Hour}

// On reports whether golden-sample challenges are configured.
func (g GoldenConfig) On() bool { return g.Dir != "" }

// StartChallenge reports whether a challenge runs at start (and gates
// readiness until it passes).
func (g GoldenConfig) StartChallenge() bool {
	return g.On() && (g.OnStart == nil || *g.OnStart)
}

func (c *Config) goldenDefaults() {
	g := &c.Assurance.Golden
	if g.OnStart == nil {
		on := true
		g.OnStart = &on
	}
	if g.Action == "" {
		g.Action = GoldenFailClosed
	}
}

func (c *Config) validateGolden() error {
	g := c.Assurance.Golden
	var errs []error
	switch g.Action {
	case GoldenFailClosed, GoldenFlag:
	default:
		errs = append(errs, c.errorAt("assurance.golden.action", "%q is not an action: want fail_closed (every part fails closed with golden_failed until a challenge passes) or flag (verdicts stand, results are marked)", g.Action))
	}
	if g.Every != 0 {
		errs = append(errs, c.durationRange("assurance.golden.every", g.Every, goldenEveryRange,
			"how often a golden-sample challenge runs while the line runs (0 turns the schedule off)"))
	}
	if !g.On() && g.Every != 0 {
		errs = append(errs, c.errorAt("assurance.golden.every", "set without assurance.golden.dir: give the folder of golden images (good/, bad/<type>/ or golden.yaml)"))
	}
	return errors.Join(errs...)
}

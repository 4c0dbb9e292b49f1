package config

import (
	"errors"
	"slices"
)

// DriftConfig is assurance.drift: drift alarms on passed parts' features
// against the bundle's training distribution of good parts, and on the
// reject rate against the bundle's calibrated false-reject rate
// (docs/assurance.md).
type DriftConfig struct {
	// Enabled turns the monitor on (default true); it needs a bundle
	// written by a `segad fit` that wrote drift.json, and is off with a
	// log line otherwise.
	Enabled *bool `yaml:"enabled"`
	// Window is the number of recent passed parts the feature
	// distributions are taken over (and of recent judged parts for the
	// reject rate).
	Window int `yaml:"window"`
	// MinParts is how many parts the window must hold before anything is
	// judged: fewer give PSI too much sampling noise.
	MinParts int `yaml:"min_parts"`
	// PSIAlarm is the population stability index at or above which a
	// watched feature raises the alarm (0.25: the usual "significant
	// shift").
	PSIAlarm float64 `yaml:"psi_alarm"`
	// PSIClear is the hysteresis: a raised alarm clears only once every
	// watched feature's PSI is below it, so it does not flap.
	PSIClear float64 `yaml:"psi_clear"`
	// Stats are the per-segment statistics watched for every segment and
	// detector (q995, skew, kurtosis, mean), plus "max" for each
	// detector's whole-map maximum.
	Stats []string `yaml:"stats"`
	// RejectRate turns the reject-rate alarm on (default true).
	RejectRate *bool `yaml:"reject_rate"`
	// RejectAlpha is the significance at which the window's reject count
	// is judged too high for the expected rate (one-sided binomial test).
	RejectAlpha float64 `yaml:"reject_alpha"`
	// ExpectedRejectRate overrides the rate the rejects are tested
	// against; 0 takes the bundle's calibrated false-reject rate (its
	// upper confidence bound). A line with a known share of real defects
	// sets it to that share plus the false-reject rate.
	ExpectedRejectRate float64 `yaml:"expected_reject_rate"`
}

// DriftStats are the statistics assurance.drift.stats accepts.
var DriftStats = []string{"q995", "skew", "kurtosis", "mean", "max"}

// DefaultDriftConfig is assurance.drift's defaults (docs/assurance.md says
// how the window and thresholds were chosen).
func DefaultDriftConfig() DriftConfig {
	on, rej := true, true
	return DriftConfig{Enabled: &on, RejectRate: &rej, Window: 500, MinParts: 250, PSIAlarm: 0.25, PSIClear: 0.1,
		Stats: []string{"mean", "q995"}, RejectAlpha: 0.001}
}

// On reports whether the drift monitor is enabled.
func (d DriftConfig) On() bool { return d.Enabled == nil || *d.Enabled }

// RejectOn reports whether the reject-rate alarm is enabled.
func (d DriftConfig) RejectOn() bool { return d.RejectRate == nil || *d.RejectRate }

// driftDefaults fills assurance.drift's unset keys.
func (c *Config) driftDefaults() {
	fillZero(&c.Assurance.Drift, DefaultDriftConfig())
}

// validateDrift range-checks assurance.drift.
func (c *Config) validateDrift() error {
	d := c.Assurance.Drift
	if !d.On() {
		return nil
	}
	errs := []error{
		c.intRange("assurance.drift.window", int64(d.Window), 50, 100_000,
			"recent parts the distributions are compared over; fewer than 50 make PSI noise, more than 100000 react too late"),
		c.intRange("assurance.drift.min_parts", int64(d.MinParts), 20, int64(max(d.Window, 20)),
			"parts in the window before anything is judged; at most the window"),
		c.floatRange("assurance.drift.psi_alarm", d.PSIAlarm, 0.01, 10,
			"the PSI that raises the alarm (0.1 moderate, 0.25 significant shift)"),
		c.floatRange("assurance.drift.psi_clear", d.PSIClear, 0, d.PSIAlarm,
			"the PSI every feature must fall below to clear the alarm; at most psi_alarm"),
		c.floatRange("assurance.drift.reject_alpha", d.RejectAlpha, 1e-12, 0.05,
			"significance of the reject-rate test (reject_rate: false turns the test off)"),
		c.floatRange("assurance.drift.expected_reject_rate", d.ExpectedRejectRate, 0, 0.99,
			"the reject rate to test against; 0 takes the bundle's calibrated false-reject rate"),
	}
	if len(d.Stats) == 0 {
		errs = append(errs, c.errorAt("assurance.drift.stats", "empty: name at least one of %v", DriftStats))
	}
	for _, s := range d.Stats {
		if !slices.Contains(DriftStats, s) {
			errs = append(errs, c.errorAt("assurance.drift.stats", "%q is not a statistic: want some of %v", s, DriftStats))
		}
	}
	return errors.Join(errs...)
}

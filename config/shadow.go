package config

import (
	"errors"
	"fmt"

	"github.com/segad-edge/segad-edge/infer"
)

// ShadowConfig is segad.shadow: a candidate bundle that scores a share of
// the line's frames beside the live model and decides nothing; its
// verdicts go to the history only (docs/assurance.md).
type ShadowConfig struct {
	// Bundle is the candidate's bundle folder from `segad fit` (required).
	Bundle string `yaml:"bundle"`
	// Detectors are the candidate's own detectors, when it was trained on
	// other ones than the live model. Unset: the candidate must have been
	// trained for the live detectors and mask, and scores the live
	// result's feature row with its forest alone (no second inference).
	Detectors []infer.DetectorConfig `yaml:"detectors"`
	// Share is the share of frames the candidate scores (0 < share <= 1,
	// default 1). Frames are chosen by their sequence number, so the same
	// line gives the same sample and a report is reproducible.
	Share float64 `yaml:"share"`
}

// DefaultShadowShare is segad.shadow.share's default: every frame.
const DefaultShadowShare = 1.0

// OwnDetectors reports whether the candidate runs detectors of its own.
func (s *ShadowConfig) OwnDetectors() bool { return s != nil && len(s.Detectors) > 0 }

// ShadowModelConfig is the configuration the candidate is built from
// through model.Build: the live configuration with the candidate's bundle
// (and detectors, when it has its own) in place of the live ones, and the
// threshold the bundle suggests (the live segad.threshold belongs to the
// live forest; a candidate's margin has its own scale). Nil when
// segad.shadow is not set.
func (c *Config) ShadowModelConfig() *Config {
	s := c.SegAD.Shadow
	if s == nil {
		return nil
	}
	out := *c
	out.SegAD.Shadow = nil
	out.SegAD.Model = ""
	out.SegAD.Bundle = s.Bundle
	out.SegAD.Threshold, out.SegAD.WarnThreshold = nil, nil
	if s.OwnDetectors() {
		out.Detectors = s.Detectors
	}
	return &out
}

func (c *Config) shadowDefaults() {
	s := c.SegAD.Shadow
	if s == nil {
		return
	}
	if s.Share == 0 {
		s.Share = DefaultShadowShare
	}
	for i := range s.Detectors {
		s.Detectors[i].Defaults()
	}
}

func (c *Config) shadowPaths(dir string) {
	s := c.SegAD.Shadow
	if s == nil {
		return
	}
	s.Bundle = resolvePath(dir, s.Bundle)
	for i := range s.Detectors {
		s.Detectors[i].Model = resolvePath(dir, s.Detectors[i].Model)
	}
}

func (c *Config) validateShadow() error {
	s := c.SegAD.Shadow
	if s == nil {
		return nil
	}
	var errs []error
	if s.Bundle == "" {
		errs = append(errs, c.errorAt("segad.shadow.bundle", "missing: the candidate's bundle folder (from segad fit); remove segad.shadow to run without a candidate"))
	} else if s.Bundle == c.SegAD.Bundle {
		errs = append(errs, c.errorAt("segad.shadow.bundle", "%s is the live bundle: a candidate compared with itself agrees by construction (name another bundle, or remove segad.shadow)", s.Bundle))
	}
	if !c.History.On() {
		errs = append(errs, c.errorAt("segad.shadow", "history.enabled is false: the candidate's verdicts are recorded only in the history (turn it on, or remove segad.shadow)"))
	}
	errs = append(errs, c.floatRange("segad.shadow.share", s.Share, 1e-6, 1,
		"the share of frames the candidate scores (0.25: every fourth frame on average); lower it when the candidate has its own detectors and the line cannot afford them on every frame"))
	if len(s.Detectors) > MaxDetectors {
		errs = append(errs, c.errorAt("segad.shadow.detectors", "%d detectors: at most %d", len(s.Detectors), MaxDetectors))
	}
	seen := map[string]int{}
	for i := range s.Detectors {
		d := &s.Detectors[i]
		key := fmt.Sprintf("segad.shadow.detectors[%d]", i)
		if err := d.Validate(); err != nil {
			errs = append(errs, c.sectionError(key, err))
		}
		if j, dup := seen[d.Name]; dup {
			errs = append(errs, c.errorAt(key+".name", "name %q is also used by segad.shadow.detectors[%d]: names must be unique (they name features)", d.Name, j))
		}
		seen[d.Name] = i
	}
	return errors.Join(errs...)
}

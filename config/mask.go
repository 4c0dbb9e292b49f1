package config

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/segad"
)

// MaskConfig is segad.mask: either a static label file (the scalar form,
// `mask: parts.png` or `mask: builtin:vad`, File set) or a segmentation
// model run on every frame (the mapping form, `mask: {model: seg.onnx,
// labels: [...]}`, Model set). The scalar form is what every configuration
// before per-frame masks wrote, and it keeps meaning exactly that.
type MaskConfig struct {
	// File is the static mask: a label PNG/.npy or builtin:vad (scalar form).
	File string `yaml:"-"`
	// Model is the ONNX segmentation model (mapping form). Its output is
	// class scores [1,L,H,W] (argmax per pixel) or a label map [1,1,H,W]
	// (int64, int32, uint8 or float32 holding integers).
	Model string `yaml:"model"`
	// Input tensor name; empty: the model's only input.
	Input string `yaml:"input"`
	// Output is the scores or labels output (name or index); default 0.
	Output infer.OutputRef `yaml:"output"`
	// PreprocessConfig is the model's input, described as a detector's
	// (input_size, color_order, scale, mean, std; inlined).
	infer.PreprocessConfig `yaml:",inline"`
	// Labels names the segments in label order: label j is Labels[j]. They
	// are the feature names' segments (segad.segments must agree).
	Labels []string `yaml:"labels"`
	// Required segments must have at least one pixel in every frame.
	Required []string `yaml:"required"`
	// Area bounds a segment's share of the map per frame: [min, max], both
	// in 0..1.
	Area map[string][]float64 `yaml:"area"`
	// Providers as for detectors; empty: cpu.
	Providers []infer.ProviderConfig `yaml:"providers"`
}

// maskMapping is MaskConfig without its methods, for decoding and
// encoding the mapping form without recursing into UnmarshalYAML.
type maskMapping MaskConfig

// UnmarshalYAML accepts the scalar form (a file, or builtin:vad) and the
// mapping form (a segmentation model). Unknown keys in the mapping are
// refused like everywhere else in the file (the decoder is strict).
func (m *MaskConfig) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
		*m = MaskConfig{}
		return nil
	case string:
		*m = MaskConfig{File: x}
		return nil
	case map[string]any:
		var mm maskMapping
		if err := unmarshal(&mm); err != nil {
			return err
		}
		*m = MaskConfig(mm)
		m.File = ""
		return nil
	default:
		return fmt.Errorf("segad.mask is a %T: want a mask file (PNG or .npy), builtin:vad, or a mapping {model: seg.onnx, labels: [...]} for a per-frame segmentation model", v)
	}
}

// MarshalYAML writes the form UnmarshalYAML reads: the file as a scalar,
// the model as a mapping.
func (m MaskConfig) MarshalYAML() (any, error) {
	if m.Model == "" {
		return m.File, nil
	}
	return maskMapping(m), nil
}

// PerFrame reports whether the mask comes from a segmentation model run on
// every frame (the mapping form).
func (m MaskConfig) PerFrame() bool { return m.Model != "" }

// Source names the mask in messages and manifests: the file, or
// "model:" and the segmentation model's path.
func (m MaskConfig) Source() string {
	if m.PerFrame() {
		return "model:" + m.Model
	}
	return m.File
}

// String is Source, so that the mask prints as it did when it was a path.
func (m MaskConfig) String() string { return m.Source() }

// Defaults fills the model form's preprocessing defaults (those of a
// detector input); the scalar form has none.
func (m *MaskConfig) Defaults() {
	if m.PerFrame() {
		m.PreprocessConfig.Defaults()
	}
}

// SegmenterConfig is the infer configuration of the mapping form.
func (m MaskConfig) SegmenterConfig() infer.SegmenterConfig {
	return infer.SegmenterConfig{Model: m.Model, Input: m.Input, Output: m.Output,
		PreprocessConfig: m.PreprocessConfig, Providers: m.Providers, Classes: len(m.Labels)}
}

// Bounds are the plausibility bounds per label, in label order.
func (m MaskConfig) Bounds() []segad.SegmentBounds {
	b := make([]segad.SegmentBounds, len(m.Labels))
	for j, n := range m.Labels {
		b[j] = segad.SegmentBounds{MinArea: 0, MaxArea: 1, Required: slices.Contains(m.Required, n)}
		if a, ok := m.Area[n]; ok && len(a) == 2 {
			b[j].MinArea, b[j].MaxArea = a[0], a[1]
		}
	}
	return b
}

// validateMask checks segad.mask in either form and that segad.segments
// agrees with a model's labels.
func (c *Config) validateMask() []error {
	s := c.SegAD
	m := s.Mask
	var errs []error
	if !m.PerFrame() {
		if m.File == "" {
			errs = append(errs, c.errorAt("segad.mask", "missing: a mask file (PNG or .npy), builtin:vad, or {model: seg.onnx, labels: [...]}"))
		} else if strings.HasPrefix(m.File, "builtin:") && m.File != "builtin:vad" {
			errs = append(errs, c.errorAt("segad.mask", "unknown built-in mask %q: the built-in one is builtin:vad", m.File))
		}
		return errs
	}
	sc := m.SegmenterConfig()
	sc.Defaults()
	if err := sc.ValidateOptions(); err != nil {
		errs = append(errs, c.errorAt("segad.mask", "%v", err))
	}
	switch n := len(m.Labels); {
	case n == 0:
		errs = append(errs, c.errorAt("segad.mask.labels", "missing: name every label of the segmentation model in label order (label 0 first), e.g. [background, rubber, wires]"))
	case n > segad.MaxSegments:
		errs = append(errs, c.errorAt("segad.mask.labels", "%d names: at most %d segments (labels 0..254; 255 = ignore)", n, segad.MaxSegments))
	}
	seen := map[string]int{}
	for i, n := range m.Labels {
		key := fmt.Sprintf("segad.mask.labels[%d]", i)
		if err := segad.CheckName(n); err != nil {
			errs = append(errs, c.errorAt(key, "%v", err))
		} else if j, dup := seen[n]; dup {
			errs = append(errs, c.errorAt(key, "%q is also label %d: segment names must be unique (they name features)", n, j))
		}
		seen[n] = i
	}
	for i, n := range m.Required {
		if _, ok := seen[n]; !ok {
			errs = append(errs, c.errorAt(fmt.Sprintf("segad.mask.required[%d]", i), "%q is not one of segad.mask.labels %v", n, m.Labels))
		}
	}
	names := make([]string, 0, len(m.Area))
	for n := range m.Area {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := m.Area[n]
		key := "segad.mask.area." + n
		if _, ok := seen[n]; !ok {
			errs = append(errs, c.errorAt(key, "%q is not one of segad.mask.labels %v", n, m.Labels))
			continue
		}
		if len(a) != 2 || !(a[0] >= 0 && a[0] <= a[1] && a[1] <= 1) || math.IsNaN(a[0]+a[1]) {
			errs = append(errs, c.errorAt(key, "%v: want [min, max], the segment's share of the map per frame, with 0 <= min <= max <= 1", a))
		}
	}
	if len(s.Segments) > 0 && !slices.Equal(s.Segments, m.Labels) {
		errs = append(errs, c.errorAt("segad.segments", "%v differ from segad.mask.labels %v: with a segmentation model the labels name the segments (drop segad.segments or make them equal)", s.Segments, m.Labels))
	}
	return errs
}

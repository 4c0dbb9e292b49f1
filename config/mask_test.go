package config

import (
	"strings"
	"testing"
)

// modelMask replaces minimal's scalar mask with a segmentation model.
func modelMask(body string) func(string) string {
	return func(s string) string {
		return strings.Replace(s, "  mask: builtin:vad\n", "  mask:\n"+body, 1)
	}
}

const segBody = `    model: seg.onnx
    labels: [background, rubber, wires]
    required: [rubber]
    area: {rubber: [0.05, 0.9]}
`

// TestMaskScalarOrMapping: segad.mask keeps its scalar form (a file or
// builtin:vad, paths relative to the config) and takes a mapping for a
// per-frame segmentation model, with the detectors' input defaults.
func TestMaskScalarOrMapping(t *testing.T) {
	c, err := Parse("/etc/segad/segad.yaml", []byte(strings.Replace(minimal, "builtin:vad", "masks/part.png", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.SegAD.Mask.File != "/etc/segad/masks/part.png" || c.SegAD.Mask.PerFrame() || c.SegAD.Mask.Source() != c.SegAD.Mask.File {
		t.Fatalf("scalar mask: %+v", c.SegAD.Mask)
	}
	c, err = Parse("/etc/segad/segad.yaml", []byte(modelMask(segBody)(minimal)))
	if err != nil {
		t.Fatal(err)
	}
	m := c.SegAD.Mask
	if !m.PerFrame() || m.File != "" || m.Model != "/etc/segad/seg.onnx" || len(m.Labels) != 3 || m.InputSize.Width != 256 || m.ColorOrder != "rgb" {
		t.Fatalf("model mask: %+v", m)
	}
	b := m.Bounds()
	if !b[1].Required || b[1].MinArea != 0.05 || b[1].MaxArea != 0.9 || b[0].Required || b[0].MinArea != 0 || b[0].MaxArea != 1 {
		t.Fatalf("bounds: %+v", b)
	}
	if sc := m.SegmenterConfig(); sc.Classes != 3 || sc.Model != m.Model {
		t.Fatalf("segmenter config: %+v", sc)
	}
}

// TestMaskModelErrors: every mistake in the mapping form is refused with
// its key and line, and what to do.
func TestMaskModelErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		edit func(string) string
		want []string
	}{
		{"unknown key", "    mdoel: seg.onnx\n    labels: [a]\n", nil, []string{"mdoel", "unknown"}},
		{"no labels", "    model: seg.onnx\n", nil, []string{"segad.mask.labels", "missing"}},
		{"bad label name", "    model: seg.onnx\n    labels: [a, b.c]\n", nil, []string{"segad.mask.labels[1]"}},
		{"duplicate label", "    model: seg.onnx\n    labels: [a, a]\n", nil, []string{"segad.mask.labels[1]", "also label 0"}},
		{"required unknown", "    model: seg.onnx\n    labels: [a, b]\n    required: [c]\n", nil, []string{"segad.mask.required[0]", `"c"`}},
		{"area unknown", "    model: seg.onnx\n    labels: [a, b]\n    area: {c: [0, 1]}\n", nil, []string{"segad.mask.area.c"}},
		{"area reversed", "    model: seg.onnx\n    labels: [a, b]\n    area: {a: [0.5, 0.1]}\n", nil, []string{"segad.mask.area.a", "min <= max"}},
		{"area above 1", "    model: seg.onnx\n    labels: [a, b]\n    area: {a: [0.1, 1.5]}\n", nil, []string{"segad.mask.area.a"}},
		{"area one value", "    model: seg.onnx\n    labels: [a, b]\n    area: {a: [0.1]}\n", nil, []string{"segad.mask.area.a"}},
		{"bad colour order", "    model: seg.onnx\n    labels: [a]\n    color_order: xyz\n", nil, []string{"segad.mask", "color_order"}},
		{"segments disagree", segBody, func(s string) string { return s + "  segments: [a, b, c]\n" }, []string{"segad.segments", "differ from segad.mask.labels"}},
		{"wrong kind", "    - a\n", nil, []string{"segad.mask"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := modelMask(tc.body)(minimal)
			if tc.edit != nil {
				text = tc.edit(text)
			}
			_, err := Parse("/etc/segad/segad.yaml", []byte(text))
			if err == nil {
				t.Fatalf("accepted:\n%s", text)
			}
			for _, w := range append(tc.want, "segad.yaml:") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
	// Segments equal to the labels are fine.
	if _, err := Parse("/etc/segad/segad.yaml", []byte(modelMask(segBody)(minimal)+"  segments: [background, rubber, wires]\n")); err != nil {
		t.Fatalf("segments equal to the labels refused: %v", err)
	}
}

// TestMaskReloadClass: every change to segad.mask, in either form,
// rebuilds the model stage; the scalar form still diffs as one key.
func TestMaskReloadClass(t *testing.T) {
	parse := func(text string) *Config {
		c, err := Parse("/etc/segad/segad.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	scalar := parse(minimal)
	file := parse(strings.Replace(minimal, "builtin:vad", "part.png", 1))
	seg := parse(modelMask(segBody)(minimal))
	seg2 := parse(modelMask(strings.Replace(segBody, "0.9", "0.8", 1))(minimal))
	for _, tc := range []struct {
		name string
		a, b *Config
		key  string
	}{
		{"file", scalar, file, "segad.mask"},
		{"to a model", scalar, seg, "segad.mask.model"},
		{"area", seg, seg2, "segad.mask.area.rubber[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := Diff(tc.a, tc.b)
			found := false
			for _, c := range ch {
				if c.Class != Model {
					t.Errorf("%s is %s, want model", c.Key, c.Class)
				}
				found = found || c.Key == tc.key
			}
			if !found {
				t.Errorf("no change of %s in %+v", tc.key, ch)
			}
		})
	}
}

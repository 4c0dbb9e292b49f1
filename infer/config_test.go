package infer

import (
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

func TestDetectorConfigYAML(t *testing.T) {
	src := `
name: patchcore
model: models/patchcore.onnx
map_output: anomaly_map
score_output: 0
color_order: bgr
input_size: {width: 224, height: 224}
mean: [0.485, 0.456, 0.406]
std: [0.229, 0.224, 0.225]
post:
  blur_sigma: 4
  normalize: {kind: quantile, q_a: 0.1, q_b: 0.5}
providers:
  - {name: tensorrt, fp16: true, engine_cache: /var/cache/segad/trt, workspace: 1073741824}
  - {name: cuda, device_id: 1}
  - {name: cpu}
`
	var c DetectorConfig
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"map_output", c.MapOutput, OutputRef{Name: "anomaly_map"}},
		{"score_output", *c.ScoreOutput, OutputRef{Index: 0}},
		{"color_order", c.ColorOrder, "bgr"},
		{"input_size", c.InputSize, Size{224, 224}},
		{"std[2]", c.Std[2], 0.225},
		{"scale default", c.Scale, 1.0 / 255},
		{"map_size default", c.Post.MapSize, Size{256, 256}},
		{"blur", c.Post.BlurSigma, 4.0},
		{"q_b", c.Post.Normalize.QB, 0.5},
		{"trt fp16", c.Providers[0].FP16, true},
		{"trt workspace", c.Providers[0].Workspace, int64(1 << 30)},
		{"cuda device", c.Providers[1].DeviceID, 1},
		{"cpu threads default", c.Providers[2].IntraOpThreads, 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Round trip keeps the output references' kind (name vs index).
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back DetectorConfig
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("re-read %s: %v", out, err)
	}
	if back.MapOutput != c.MapOutput || *back.ScoreOutput != *c.ScoreOutput {
		t.Fatalf("round trip: %v %v from\n%s", back.MapOutput, back.ScoreOutput, out)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() DetectorConfig { return DetectorConfig{Name: "d", Model: "m.onnx"} }
	tests := []struct {
		name   string
		mutate func(*DetectorConfig)
		want   string
	}{
		{"ok", func(*DetectorConfig) {}, ""},
		{"no name", func(c *DetectorConfig) { c.Name = "" }, "name is empty"},
		{"no model", func(c *DetectorConfig) { c.Model = "" }, "model: path is empty"},
		{"color", func(c *DetectorConfig) { c.ColorOrder = "yuv" }, "color_order"},
		{"mean len", func(c *DetectorConfig) { c.Mean = []float64{1, 2} }, "mean has 2 values"},
		{"std zero", func(c *DetectorConfig) { c.Std = []float64{1, 0, 1} }, "std[1]"},
		{"sigma", func(c *DetectorConfig) { c.Post.BlurSigma = -1 }, "blur_sigma"},
		{"quantile equal", func(c *DetectorConfig) { c.Post.Normalize = NormalizeConfig{Kind: "quantile", QA: 1, QB: 1} }, "q_a"},
		{"affine zero", func(c *DetectorConfig) { c.Post.Normalize = NormalizeConfig{Kind: "affine"} }, "affine scale"},
		{"norm kind", func(c *DetectorConfig) { c.Post.Normalize.Kind = "minmax" }, "normalize.kind"},
		{"provider", func(c *DetectorConfig) { c.Providers = []ProviderConfig{{Name: "openvino"}} }, `providers[0]: provider "openvino"`},
		{"device", func(c *DetectorConfig) { c.Providers = []ProviderConfig{{Name: "cuda", DeviceID: -1}} }, "device_id -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			c.Defaults()
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	cc := ClassifierConfig{Model: "c.onnx", Kind: "softmax"}
	cc.Defaults()
	if err := cc.Validate(); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Fatalf("classifier kind: %v", err)
	}
}

func TestNormalizeCoefficients(t *testing.T) {
	// EfficientAD: 0.1*(m - qa)/(qb - qa) must equal a*m + b.
	n := NormalizeConfig{Kind: "quantile", QA: 0.3, QB: 1.7}
	a, b, ok := n.coefficients()
	for _, m := range []float32{-1, 0, 0.3, 1.7, 5} {
		want := 0.1 * (float64(m) - 0.3) / 1.4
		if got := float64(a*m + b); !ok || absf(float32(got-want)) > 1e-6 {
			t.Errorf("m=%v: %v, want %v", m, got, want)
		}
	}
}

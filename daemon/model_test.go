package daemon

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/segad"
)

// writeNaNClassifier writes a classifier ONNX model whose score is NaN on
// every image: sqrt(mean of the pixels - 10), the mean being in [0, 1]
// (shape [1, 1], like the infer fixture classifier.onnx).
// Built with the ONNX protobuf types, as detector/onnxgraph.go builds its
// graphs.
func writeNaNClassifier(tb testing.TB, path string) {
	tb.Helper()
	vi := func(name string, dims ...int64) *onnx.ValueInfoProto {
		shape := &onnx.TensorShapeProto{}
		for _, d := range dims {
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_FLOAT), Shape: shape}}}}
	}
	node := func(op string, in []string, out string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
		return &onnx.NodeProto{OpType: op, Input: in, Output: []string{out}, Name: out, Attribute: attrs}
	}
	ints := func(name string, v ...int64) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INTS, Ints: v}
	}
	ints1 := func(name string, v int64) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: v}
	}
	ten := []byte{0, 0, 0x20, 0x41} // float32 10, little-endian
	m := &onnx.ModelProto{
		IrVersion:   7,
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: "", Version: 12}},
		Graph: &onnx.GraphProto{
			Name: "nan_classifier",
			Node: []*onnx.NodeProto{
				node("ReduceMean", []string{"input"}, "chan", ints("axes", 2, 3), ints1("keepdims", 0)),
				node("ReduceMean", []string{"chan"}, "mean", ints("axes", 1), ints1("keepdims", 1)),
				node("Sub", []string{"mean", "ten"}, "neg"),
				node("Sqrt", []string{"neg"}, "logit"),
			},
			Initializer: []*onnx.TensorProto{{Name: "ten", DataType: int32(onnx.TensorProto_FLOAT), RawData: ten}},
			Input:       []*onnx.ValueInfoProto{vi("input", 1, 3, 256, 256)},
			Output:      []*onnx.ValueInfoProto{vi("logit", 1, 1)},
		},
	}
	data, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// writeInfForest rewrites a trained XGBoost JSON forest so that every leaf
// is 3e38 (a finite float32): brf loads it, and the sum of two leaves
// overflows float32 to +Inf, so every score is +Inf.
func writeInfForest(tb testing.TB, from, to string) {
	tb.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	trees := m["learner"].(map[string]any)["gradient_booster"].(map[string]any)["model"].(map[string]any)["trees"].([]any)
	for _, tr := range trees {
		t := tr.(map[string]any)
		left, cond := t["left_children"].([]any), t["split_conditions"].([]any)
		for i := range left {
			if left[i].(json.Number).String() == "-1" {
				cond[i] = json.Number("3e38")
			}
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, out, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// writeBundle writes a bundle for the test config's line (detector ms =
// meanstd_blur.onnx, builtin:vad at 256x256) from the trained forest, with
// edit applied to its manifest, then optionally rewrites manifest.json as
// generic JSON (to remove keys).
func writeBundle(tb testing.TB, dir, forest string, edit func(*bundle.Manifest), raw func(map[string]any)) string {
	tb.Helper()
	model, err := os.ReadFile(forest)
	if err != nil {
		tb.Fatal(err)
	}
	det := fixtureDetector(tb, "meanstd_blur.onnx")
	sum, err := bundle.FileSHA256(det)
	if err != nil {
		tb.Fatal(err)
	}
	mask := segad.VADTemplate(256, 256, segad.DefaultVADGeometry())
	m := &bundle.Manifest{
		Tool: "test", Features: segad.FeatureNames(mask.Names, []string{"ms"}, ""),
		Detectors: []bundle.Detector{{Name: "ms", Model: filepath.Base(det), SHA256: sum}},
		Mask:      bundle.Mask{Source: "builtin:vad", Hash: mask.Hash(), Width: 256, Height: 256, Segments: mask.Names},
		Threshold: bundle.Threshold{Suggested: 0.25, Recall: 0.95, Calibration: "training"},
	}
	if edit != nil {
		edit(m)
	}
	out := filepath.Join(dir, "bundle")
	if err := bundle.Write(out, model, m); err != nil {
		tb.Fatal(err)
	}
	if raw != nil {
		mp := filepath.Join(out, bundle.ManifestFile)
		data, _ := os.ReadFile(mp)
		var g map[string]any
		if err := json.Unmarshal(data, &g); err != nil {
			tb.Fatal(err)
		}
		raw(g)
		data, _ = json.Marshal(g)
		if err := os.WriteFile(mp, data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// hostileModel is a configuration that model.Build must refuse (or, with
// ok, accept): edit rewrites the test config's text; setup writes the
// files it needs into the config's folder.
type hostileModel struct {
	name  string
	setup func(tb testing.TB, dir string)
	edit  func(text string) string
	want  []string // substrings of the error
}

var useBundle = func(text string) string {
	return strings.Replace(text, "  model: brf.json\n  threshold: 1000\n", "  bundle: bundle\n", 1)
}

// hostileModels are the findings of issue #12 about models, masks and
// bundles: each must be refused at `segad config check`, at start and at
// reload (cmd/segad's hostile config tests run the first two on the
// binary).
var hostileModels = []hostileModel{
	{"NaN map", nil,
		func(s string) string { return strings.Replace(s, "meanstd_blur.onnx", "nan_map.onnx", 1) },
		[]string{"detector ms (model ", "nan_map.onnx, map_output #0) gives NaN at map pixel (0, 0) on a colour-gradient test frame"}},
	{"NaN classifier score", func(tb testing.TB, dir string) {
		writeNaNClassifier(tb, filepath.Join(dir, "nan_cls.onnx"))
		testenv.TrainForest(tb, filepath.Join(dir, "brf30.json"), 7*4+1+1)
	}, func(s string) string {
		return strings.Replace(s, "segad:\n  mask: builtin:vad\n  model: brf.json", "classifier:\n  model: nan_cls.onnx\nsegad:\n  mask: builtin:vad\n  model: brf30.json", 1)
	}, []string{"classifier (model ", "nan_cls.onnx, output #0) gives score NaN on a mid-gray test frame"}},
	{"Inf forest score", func(tb testing.TB, dir string) {
		writeInfForest(tb, filepath.Join(dir, "brf.json"), filepath.Join(dir, "inf.json"))
	}, func(s string) string { return strings.Replace(s, "model: brf.json", "model: inf.json", 1) },
		[]string{"forest ", "inf.json gives score +Inf on a mid-gray test frame (its features are finite)"}},
	{"all-ignored mask", func(tb testing.TB, dir string) {
		img := image.NewGray(image.Rect(0, 0, 256, 256))
		for i := range img.Pix {
			img.Pix[i] = segad.Ignore
		}
		var b bytes.Buffer
		png.Encode(&b, img)
		os.WriteFile(filepath.Join(dir, "ignored.png"), b.Bytes(), 0o644)
	}, func(s string) string {
		return strings.Replace(s, "mask: builtin:vad", "mask: ignored.png\n  segments: [body, rim]", 1)
	}, []string{"ignored.png", "no pixel belongs to any of the 2 segments", "defective parts would pass"}},
	{"bundle without threshold", func(tb testing.TB, dir string) {
		writeBundle(tb, dir, filepath.Join(dir, "brf.json"), nil, func(g map[string]any) { delete(g, "threshold") })
	}, useBundle, []string{filepath.Join("bundle", "manifest.json") + " has no threshold.suggested", "re-run `segad fit`", "set segad.threshold explicitly"}},
	{"bundle threshold null", func(tb testing.TB, dir string) {
		writeBundle(tb, dir, filepath.Join(dir, "brf.json"), nil, func(g map[string]any) { g["threshold"] = map[string]any{"suggested": nil} })
	}, useBundle, []string{"has no threshold.suggested"}},
	{"bundle features reordered", func(tb testing.TB, dir string) {
		writeBundle(tb, dir, filepath.Join(dir, "brf.json"), func(m *bundle.Manifest) {
			m.Features[4], m.Features[5] = m.Features[5], m.Features[4]
		}, nil)
	}, func(s string) string {
		return strings.Replace(useBundle(s), "bundle: bundle\n", "bundle: bundle\n  threshold: 0.5\n", 1)
	},
		[]string{filepath.Join("bundle", "manifest.json"), `feature 4 is "outer_half_circle.ms.skew" in the manifest but "outer_half_circle.ms.q995" in this configuration`}},
}

// writeHostile writes the test config for h into a fresh folder and returns
// its path.
func writeHostile(tb testing.TB, h hostileModel) string {
	tb.Helper()
	dir := tb.TempDir()
	cfgPath, _ := testConfig(tb, dir, 2, "meanstd_blur.onnx", "1000", "")
	if h.setup != nil {
		h.setup(tb, dir)
	}
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		tb.Fatal(err)
	}
	edited := h.edit(string(text))
	if edited == string(text) {
		tb.Fatalf("%s: the edit changed nothing", h.name)
	}
	if err := os.WriteFile(cfgPath, []byte(edited), 0o644); err != nil {
		tb.Fatal(err)
	}
	return cfgPath
}

func wantAll(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// TestHostileModelsRefusedAtStart: daemon.New (what `segad run` calls)
// refuses each hostile model, mask or bundle with an error naming the file.
func TestHostileModelsRefusedAtStart(t *testing.T) {
	for _, h := range hostileModels {
		t.Run(h.name, func(t *testing.T) {
			cfg, err := config.Load(writeHostile(t, h))
			if err != nil {
				t.Fatalf("the config itself is valid; the model is what is wrong: %v", err)
			}
			d, err := New(cfg, Options{Logger: quietLog()})
			if err == nil {
				d.Close()
			}
			wantAll(t, err, h.want)
		})
	}
}

// TestHostileModelsRefusedAtReload: a running daemon asked to reload to a
// hostile model rejects the edit, keeps inspecting with its model and
// threshold, and reports the error in health.
func TestHostileModelsRefusedAtReload(t *testing.T) {
	for _, h := range hostileModels {
		t.Run(h.name, func(t *testing.T) {
			d, cfgPath, _ := newTestDaemon(t, 2, "meanstd_blur.onnx", "1000", nil)
			defer d.Close()
			before := d.insp.Model()
			// Write the hostile config over the running one: same folder
			// layout, so relative paths (bundle, masks) resolve there.
			dir := filepath.Dir(cfgPath)
			if h.setup != nil {
				h.setup(t, dir)
			}
			text, _ := os.ReadFile(cfgPath)
			if err := os.WriteFile(cfgPath, []byte(h.edit(string(text))), 0o644); err != nil {
				t.Fatal(err)
			}
			err := d.Reload()
			wantAll(t, err, h.want)
			if d.insp.Model() != before || d.insp.Settings().Threshold != 1000 {
				t.Fatal("the rejected reload changed the running model or threshold")
			}
			if msg := d.configError.Load(); msg == nil || !strings.Contains(*msg, h.want[len(h.want)-1]) {
				t.Errorf("health's last_config_error = %v, want the refusal", msg)
			}
		})
	}
}

// TestBundleThresholdExplicit: a bundle without a suggested threshold is
// usable when the config sets segad.threshold (the advice the refusal
// gives), and a complete bundle's threshold is used when the config sets
// none.
func TestBundleThresholdExplicit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		raw       func(map[string]any)
		threshold string // "" = not set
		want      float64
	}{
		{"manifest without threshold, config sets one", func(g map[string]any) { delete(g, "threshold") }, "0.75", 0.75},
		{"complete manifest, config sets none", nil, "", 0.25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath, _ := testConfig(t, dir, 2, "meanstd_blur.onnx", "1000", "")
			writeBundle(t, dir, filepath.Join(dir, "brf.json"), nil, tc.raw)
			text, _ := os.ReadFile(cfgPath)
			seg := "  bundle: bundle\n"
			if tc.threshold != "" {
				seg += "  threshold: " + tc.threshold + "\n"
			}
			os.WriteFile(cfgPath, []byte(strings.Replace(string(text), "  model: brf.json\n  threshold: 1000\n", seg, 1)), 0o644)
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			m, settings, err := model.Build(cfg, model.Options{Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			m.Close()
			if settings.Threshold != tc.want {
				t.Fatalf("threshold %v, want %v", settings.Threshold, tc.want)
			}
		})
	}
}

// TestProbeIsCheap: the probe adds two inferences to a build, not a
// noticeable delay to start or reload.
func TestProbeIsCheap(t *testing.T) {
	cfg, err := config.Load(writeHostile(t, hostileModel{name: "good", edit: func(s string) string { return s + "\n" }}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, _, err := model.Build(cfg, model.Options{Log: quietLog(), SkipProbe: true})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	unprobed := time.Since(start)
	start = time.Now()
	m, _, err = model.Build(cfg, model.Options{Log: quietLog()})
	if err != nil {
		t.Fatalf("a good model was refused: %v", err)
	}
	m.Close()
	if took := time.Since(start) - unprobed; took > testenv.TimeBound(2*time.Second) {
		t.Errorf("probe took %v", took)
	}
}

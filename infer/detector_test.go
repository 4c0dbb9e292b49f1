package infer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetectorMatchesReference(t *testing.T) {
	setup(t)
	img := testImage(t)
	score := OutputRef{Name: "pred_score"}
	scoreIdx := OutputRef{Index: 0}
	tests := []struct {
		name      string
		cfg       DetectorConfig
		wantMap   string
		wantScore string
		modelMap  Size
		tol       float64
	}{
		{
			name:     "meanstd blur in graph, 256 map, dynamic batch",
			cfg:      DetectorConfig{Name: "ms", Model: fixture("meanstd_blur.onnx")},
			wantMap:  "meanstd_blur.npy",
			modelMap: Size{256, 256},
			tol:      2e-5,
		},
		{
			name: "64x64 map upsampled, blurred, quantile-normalised in Go",
			cfg: DetectorConfig{Name: "small", Model: fixture("small_map.onnx"), MapOutput: OutputRef{Name: "output"},
				Post: PostConfig{BlurSigma: 2, Normalize: NormalizeConfig{Kind: "quantile", QA: 0.2, QB: 0.9}}},
			wantMap:  "small_map_post.npy",
			modelMap: Size{64, 64},
			tol:      2e-5,
		},
		{
			name: "two outputs by name",
			cfg: DetectorConfig{Name: "two", Model: fixture("two_output.onnx"),
				MapOutput: OutputRef{Name: "anomaly_map"}, ScoreOutput: &score},
			wantMap: "two_output_map.npy", wantScore: "two_output_score.npy",
			modelMap: Size{256, 256},
			tol:      1e-5,
		},
		{
			name: "two outputs by index",
			cfg: DetectorConfig{Name: "two", Model: fixture("two_output.onnx"),
				MapOutput: OutputRef{Index: 1}, ScoreOutput: &scoreIdx},
			wantMap: "two_output_map.npy", wantScore: "two_output_score.npy",
			modelMap: Size{256, 256},
			tol:      1e-5,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Open(tc.cfg)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer d.Close()
			if d.ModelMapSize() != tc.modelMap {
				t.Errorf("model map %v, want %v", d.ModelMapSize(), tc.modelMap)
			}
			want := readNpy(t, fixture(tc.wantMap)).f32
			for run := 0; run < 2; run++ { // the second run checks in-place post-processing does not accumulate
				out, err := d.Run(img)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if len(out.Map) != 256*256 || out.MapSize != (Size{256, 256}) {
					t.Fatalf("map has %d values, size %v", len(out.Map), out.MapSize)
				}
				if e, at := maxRelErr(out.Map, want); e > tc.tol {
					t.Fatalf("run %d: map differs from numpy reference: rel err %g at %d (got %v want %v)", run, e, at, out.Map[at], want[at])
				}
				if tc.wantScore != "" {
					ws := readNpy(t, fixture(tc.wantScore)).f32[0]
					if !out.HasScore || absf(out.Score-ws) > 1e-6 {
						t.Fatalf("score %v (has %v), want %v", out.Score, out.HasScore, ws)
					}
				} else if out.HasScore {
					t.Fatalf("HasScore without score_output")
				}
			}
		})
	}
}

func absf(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

func TestClassifierMatchesReference(t *testing.T) {
	setup(t)
	c, err := OpenClassifier(ClassifierConfig{Model: fixture("classifier.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Run(testImage(t))
	if err != nil {
		t.Fatal(err)
	}
	want := readNpy(t, fixture("classifier_logit.npy")).f32[0]
	if absf(got-want) > 1e-5 {
		t.Fatalf("logit %v, want %v", got, want)
	}
	// The same model declared as a probability: its logit is outside [0,1] here,
	// which must be an error, not a silently wrong feature.
	p, err := OpenClassifier(ClassifierConfig{Model: fixture("classifier.onnx"), Kind: KindProbability})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if v, err := p.Run(testImage(t)); (v < 0 || v > 1) != (err != nil) {
		t.Fatalf("probability %v, err %v: out-of-range value must be an error", v, err)
	}
}

func TestBadInput(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("this is not a protobuf model\x00\x01"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.onnx")
	tests := []struct {
		name string
		cfg  DetectorConfig
		want []string
	}{
		{"missing file", DetectorConfig{Name: "d", Model: missing}, []string{missing, "no such file"}},
		{"folder", DetectorConfig{Name: "d", Model: dir}, []string{dir, "folder"}},
		{"not an ONNX file", DetectorConfig{Name: "d", Model: garbage}, []string{garbage, "not a loadable ONNX model"}},
		{"wrong input size", DetectorConfig{Name: "d", Model: fixture("meanstd_blur.onnx"), PreprocessConfig: PreprocessConfig{InputSize: Size{224, 224}}},
			[]string{"meanstd_blur.onnx", "input \"input\"", "224", `outputs [#0 "anomaly_map"`}},
		{"wrong input name", DetectorConfig{Name: "d", Model: fixture("meanstd_blur.onnx"), Input: "images"},
			[]string{"no input \"images\"", `inputs [#0 "input"`}},
		{"wrong output name", DetectorConfig{Name: "d", Model: fixture("two_output.onnx"), MapOutput: OutputRef{Name: "output"}},
			[]string{"two_output.onnx", `no output "output"`, "map_output", `#0 "pred_score"`, `#1 "anomaly_map"`}},
		{"output index out of range", DetectorConfig{Name: "d", Model: fixture("two_output.onnx"), MapOutput: OutputRef{Index: 5}},
			[]string{"no output #5"}},
		{"score output not scalar", DetectorConfig{Name: "d", Model: fixture("two_output.onnx"), MapOutput: OutputRef{Index: 0}, ScoreOutput: &OutputRef{Index: 1}},
			[]string{"map output \"pred_score\" has shape [1]"}},
		{"bad color order", DetectorConfig{Name: "d", Model: fixture("meanstd_blur.onnx"), PreprocessConfig: PreprocessConfig{ColorOrder: "hsv"}},
			[]string{"detector d", "color_order"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Open(tc.cfg)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	d, err := Open(DetectorConfig{Name: "ms", Model: fixture("meanstd_blur.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	img := testImage(t)
	frames := []struct {
		name string
		img  Image
		want string
	}{
		{"wrong size", Image{Width: 128, Height: 128, Stride: 384, Pix: make([]byte, 384*128)}, "resize in capture"},
		{"short buffer", Image{Width: 256, Height: 256, Stride: 768, Pix: img.Pix[:1000]}, "needs"},
		{"stride too small", Image{Width: 256, Height: 256, Stride: 256, Pix: img.Pix}, "stride"},
	}
	for _, f := range frames {
		t.Run("run "+f.name, func(t *testing.T) {
			_, err := d.Run(f.img)
			if err == nil || !strings.Contains(err.Error(), f.want) || !strings.Contains(err.Error(), "detector ms") {
				t.Fatalf("Run: error %v, want one naming the detector and %q", err, f.want)
			}
		})
	}
}

func TestNaNMapPassesThrough(t *testing.T) {
	setup(t)
	logs := captureLogs(t)
	d, err := Open(DetectorConfig{Name: "nan", Model: fixture("nan_map.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := d.Run(testImage(t))
	if err != nil {
		t.Fatalf("a NaN map is data for the feature stage, not a Run error: %v", err)
	}
	i := FirstNaN(out.Map)
	if i < 0 {
		t.Fatal("FirstNaN found no NaN in a map with dark pixels under Log(x-0.5)")
	}
	if err := CheckFinite(out.Map, 256); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("CheckFinite: %v", err)
	}
	// A mid-gray frame (128/255 > 0.5) is finite; a black one is NaN everywhere
	// and the warm-up check must say so.
	if err := d.Warmup(1); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "non-finite") {
		t.Fatalf("warm-up warned on a finite map: %s", logs)
	}
	black := Image{Width: 256, Height: 256, Stride: 768, Pix: make([]byte, 768*256)}
	out, _ = d.Run(black)
	d.checkWarm(out.Map)
	if !strings.Contains(logs.String(), "non-finite") {
		t.Fatalf("no warning for a NaN map: %s", logs)
	}
}

func TestClampedMapWarning(t *testing.T) {
	setup(t)
	tests := []struct {
		model string
		warn  bool
	}{
		{"clamped.onnx", true},
		{"meanstd_blur.onnx", false},
		{"two_output.onnx", false}, // all values in [0,1] but not saturated
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			logs := captureLogs(t)
			d, err := Open(DetectorConfig{Name: "c", Model: fixture(tc.model), MapOutput: OutputRef{Name: "anomaly_map"}})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.Warmup(2); err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(logs.String(), "clamped to [0,1]") && strings.Contains(logs.String(), "post_processor=False")
			if got != tc.warn {
				t.Fatalf("clamp warning %v, want %v; logs: %s", got, tc.warn, logs)
			}
		})
	}
}

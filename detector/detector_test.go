package detector

import (
	"cmp"
	"context"
	"encoding/json"
	"image"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"gocv.io/x/gocv"
	"google.golang.org/protobuf/proto"

	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/metrics"
)

var ortOnce sync.Once

// initORT initialises ONNX Runtime once per test binary, through the infer
// stage as the daemon and the CLI do.
func initORT(tb testing.TB) {
	tb.Helper()
	lib := testenv.ORTLib(tb)
	var err error
	ortOnce.Do(func() { err = infer.Init(lib) })
	if err != nil {
		tb.Fatal(err)
	}
}

// tireDir is the shared MVTec 3D-AD tire subset.
func tireDir(tb testing.TB) string {
	return filepath.Join(testenv.SharedDir(tb), "data", "mvtec3d-tire-rgb")
}

func backbonePath(tb testing.TB) string {
	return filepath.Join(testenv.SharedDir(tb), "models", "mobilenetv2-12-int8.onnx")
}

var mobileNetLayers = []string{"365_quantized", "426_quantized"}

// trainSubset is the first n train/good images: enough for a real fit, fast on 2 cores.
func trainSubset(tb testing.TB, n int) []string {
	paths, err := ListImages(filepath.Join(tireDir(tb), "train", "good", "rgb"), n)
	if err != nil {
		tb.Fatal(err)
	}
	return paths[:n]
}

// checkImages are a few test images, good and defective, for graph-vs-Go checks.
func checkImages(tb testing.TB) []string {
	d := tireDir(tb)
	var out []string
	for _, c := range []string{"good", "cut", "hole"} {
		paths, err := ListImages(filepath.Join(d, "test", c, "rgb"), 1)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, paths[0])
	}
	return out
}

// relDiff is max |a-b| over max |b|: the acceptance's "within 1e-3 relative".
func relDiff(tb testing.TB, a, b []float32) float64 {
	tb.Helper()
	if len(a) != len(b) {
		tb.Fatalf("length %d vs %d", len(a), len(b))
	}
	var d, m float64
	for i := range a {
		if math.IsNaN(float64(a[i])) || math.IsNaN(float64(b[i])) {
			tb.Fatalf("NaN at %d", i)
		}
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / m
}

// metadata parses a written model back and returns its metadata properties.
func metadata(tb testing.TB, model []byte) map[string]string {
	tb.Helper()
	var m onnx.ModelProto
	if err := proto.Unmarshal(model, &m); err != nil {
		tb.Fatalf("written model does not parse: %v", err)
	}
	out := map[string]string{}
	for _, p := range m.GetMetadataProps() {
		out[p.GetKey()] = p.GetValue()
	}
	return out
}

// openWritten writes model to a temporary file and opens it through the
// infer stage, as the daemon would from a config naming it.
func openWritten(tb testing.TB, name string, model []byte) *infer.Detector {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name+".onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		tb.Fatal(err)
	}
	d, err := OpenModel(name, path, 256)
	if err != nil {
		tb.Fatalf("written %s model does not open in infer: %v", name, err)
	}
	tb.Cleanup(func() { d.Close() })
	if got := d.ModelMapSize(); got != (infer.Size{Width: 256, Height: 256}) {
		tb.Fatalf("written %s model: map size %s, want 256x256", name, got)
	}
	return d
}

// runThroughInfer runs d on an image file decoded by capture.DecodeFrame.
func runThroughInfer(tb testing.TB, d *infer.Detector, path string) []float32 {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := RunImage(d, data, path)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

type golden struct {
	AUROC []struct {
		Scores []float64 `json:"scores"`
		Bad    []bool    `json:"bad"`
		AUROC  float64   `json:"auroc"`
	} `json:"auroc"`
	Robust []struct {
		Stack     [][]uint8 `json:"stack"`
		MinSpread float64   `json:"min_spread"`
		Median    []float64 `json:"median"`
		Spread    []float64 `json:"spread"`
	} `json:"robust"`
	Blur struct {
		H, W    int
		Sigma   float64   `json:"sigma"`
		Map     []float32 `json:"map"`
		Blurred []float64 `json:"blurred"`
	} `json:"blur"`
}

func loadGolden(t *testing.T) golden {
	data, err := os.ReadFile(filepath.Join("testdata", "detector_golden.json"))
	if err != nil {
		t.Fatalf("golden fixture (regenerate with scripts/golden/detector.py): %v", err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestEvalAUROCMatchesScipy checks metrics.AUROC, which FolderAUROC reports,
// against scipy's Mann-Whitney U on tie-heavy scores.
func TestEvalAUROCMatchesScipy(t *testing.T) {
	g := loadGolden(t)
	for i, c := range g.AUROC {
		got, err := metrics.AUROC(c.Scores, c.Bad)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-c.AUROC) > 1e-12 {
			t.Errorf("case %d: AUROC %v, scipy Mann-Whitney %v", i, got, c.AUROC)
		}
	}
	for _, tc := range []struct {
		name   string
		scores []float64
		bad    []bool
	}{
		{"only good", []float64{1, 2}, []bool{false, false}},
		{"only bad", []float64{1, 2}, []bool{true, true}},
		{"length mismatch", []float64{1, 2}, []bool{true}},
	} {
		if _, err := metrics.AUROC(tc.scores, tc.bad); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestRobustStatsMatchNumpy(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.Robust {
		med, spread := robustStats(c.Stack, len(c.Stack[0]), c.MinSpread)
		for i := range med {
			if math.Abs(float64(med[i])-c.Median[i]) > 1e-6 || math.Abs(float64(spread[i])-c.Spread[i]) > 1e-6 {
				t.Fatalf("n=%d value %d: median %v spread %v, numpy %v %v", len(c.Stack), i, med[i], spread[i], c.Median[i], c.Spread[i])
			}
		}
	}
}

func TestGaussianBlurMatchesScipy(t *testing.T) {
	b := loadGolden(t).Blur
	got := gaussianBlur(b.Map, b.H, b.W, b.Sigma)
	for i := range got {
		if math.Abs(float64(got[i])-b.Blurred[i]) > 1e-5 {
			t.Fatalf("pixel %d: %v, scipy %v", i, got[i], b.Blurred[i])
		}
	}
}

// TestGreedyCoresetIsFarthestPoint checks each pick against a brute-force
// farthest-point step on random data, and that the covering radius shrinks.
func TestGreedyCoresetIsFarthestPoint(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const n, d, k = 500, 7, 40
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	sel, err := greedyCoreset(context.Background(), x, d, k, 3, newBar(nil, k, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) != k || sel[0] != 3 {
		t.Fatalf("selected %d starting at %d", len(sel), sel[0])
	}
	radius := func(s []int) (float32, int) {
		var worst float32 = -1
		arg := -1
		for i := 0; i < n; i++ {
			best := float32(math.Inf(1))
			for _, c := range s {
				best = min(best, sqDist(x[i*d:(i+1)*d], x[c*d:(c+1)*d]))
			}
			if best > worst {
				worst, arg = best, i
			}
		}
		return worst, arg
	}
	prev := float32(math.Inf(1))
	for j := 1; j < k; j++ {
		r, arg := radius(sel[:j])
		if sel[j] != arg {
			t.Fatalf("pick %d is %d, brute-force farthest point is %d", j, sel[j], arg)
		}
		if r > prev {
			t.Fatalf("covering radius grew at pick %d", j)
		}
		prev = r
	}
}

func TestVariationONNXMatchesGo(t *testing.T) {
	initORT(t)
	paths := trainSubset(t, 40)
	v, err := FitVariation(context.Background(), paths, VariationConfig{Seed: 1, Reservoir: 25})
	if err != nil {
		t.Fatal(err)
	}
	model, err := v.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	meta := metadata(t, model)
	for k, want := range map[string]string{"segad.kind": "variation", "segad.images": "40", "segad.reservoir": "25", "segad.size": "256"} {
		if meta[k] != want {
			t.Errorf("metadata %s = %q, want %q", k, meta[k], want)
		}
	}
	d := openWritten(t, "variation", model)
	maxes := map[string]float32{}
	for _, p := range checkImages(t) {
		got := runThroughInfer(t, d, p)
		in, err := LoadInput(p, 256)
		if err != nil {
			t.Fatal(err)
		}
		want := v.Map(in)
		if r := relDiff(t, got, want); r > 1e-3 {
			t.Errorf("%s: ONNX map (infer.Open, capture.DecodeFrame) differs from Go by %.2g relative", p, r)
		}
		maxes[p] = maxOf(got)
	}
	// A training image scores low where it matches the median: its map must
	// stay below a defective image's peak.
	in, _ := LoadInput(paths[0], 256)
	if train, cut := maxOf(v.Map(in)), maxes[checkImages(t)[1]]; train >= cut {
		t.Errorf("training image peak %v not below cut image peak %v", train, cut)
	}
}

// fitSmallPatchCore fits on 40 images (a few seconds on 2 cores).
func fitSmallPatchCore(tb testing.TB, cfg PatchCoreConfig) *PatchCore {
	tb.Helper()
	initORT(tb)
	cfg.Backbone = backbonePath(tb)
	cfg.Layers = mobileNetLayers
	p, err := FitPatchCore(context.Background(), trainSubset(tb, 40), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestPatchCoreONNXMatchesGo(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  PatchCoreConfig
		dim  int
	}{
		{"full features, two-stage search", PatchCoreConfig{Seed: 2}, 128},
		{"full features, two-stage search, float stage 1", PatchCoreConfig{Seed: 2, Search: SearchTwoStageFloat, SearchDim: 32, SearchK: 8}, 128},
		{"full features, exact search", PatchCoreConfig{Seed: 2, Search: SearchExact}, 128},
		{"random projection 48, two-stage search", PatchCoreConfig{Seed: 3, ProjDim: 48, CoresetProjDim: -1, SearchDim: 24}, 48},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fitSmallPatchCore(t, tc.cfg)
			if p.GridH != 32 || p.GridW != 32 || p.FeatDim != 128 || p.Dim() != tc.dim {
				t.Fatalf("layout grid %dx%d featdim %d dim %d", p.GridH, p.GridW, p.FeatDim, p.Dim())
			}
			if want := int(math.Ceil(0.01 * 40 * 1024)); p.BankSize != want || len(p.Bank) != want*tc.dim {
				t.Fatalf("bank %d rows (%d values), want %d rows of %d", p.BankSize, len(p.Bank), want, tc.dim)
			}
			model, err := p.ONNX()
			if err != nil {
				t.Fatal(err)
			}
			meta := metadata(t, model)
			if meta["segad.kind"] != "patchcore" || meta["segad.layers"] != "365_quantized,426_quantized" || meta["segad.bank_size"] == "" {
				t.Errorf("metadata %v", meta)
			}
			wantSearch := map[string]string{"segad.search": SearchExact}
			switch tc.cfg.Search {
			case "":
				dim := cmp.Or(tc.cfg.SearchDim, defaultSearchDim)
				wantSearch = map[string]string{"segad.search": SearchTwoStage, "segad.search_dim": strconv.Itoa(dim), "segad.search_k": strconv.Itoa(defaultSearchK)}
			case SearchTwoStageFloat:
				wantSearch = map[string]string{"segad.search": SearchTwoStageFloat, "segad.search_dim": "32", "segad.search_k": "8", "segad.search_stage1": "float32"}
			}
			for k, v := range wantSearch {
				if meta[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, meta[k], v)
				}
			}
			ex, err := newExtractor(p.bb, p.Config)
			if err != nil {
				t.Fatal(err)
			}
			defer ex.r.close()
			d := openWritten(t, "patchcore", model)
			for _, path := range checkImages(t) {
				got := runThroughInfer(t, d, path)
				in, err := LoadInput(path, 256)
				if err != nil {
					t.Fatal(err)
				}
				feats, err := ex.features(in)
				if err != nil {
					t.Fatal(err)
				}
				if r := relDiff(t, got, p.Map(feats)); r > 1e-3 {
					t.Errorf("%s: ONNX map (infer.Open, capture.DecodeFrame) differs from Go by %.2g relative", path, r)
				}
			}
		})
	}
}

// writeImages writes n random images of the given sizes into a temp folder.
func writeImages(t *testing.T, sizes ...image.Point) string {
	dir := t.TempDir()
	for i, s := range sizes {
		m := gocv.NewMatWithSize(s.Y, s.X, gocv.MatTypeCV8UC3)
		gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
		if !gocv.IMWrite(filepath.Join(dir, "img"+string(rune('a'+i))+".png"), m) {
			t.Fatal("IMWrite failed")
		}
		m.Close()
	}
	return dir
}

func repeat(p image.Point, n int) []image.Point {
	out := make([]image.Point, n)
	for i := range out {
		out[i] = p
	}
	return out
}

func TestBadInputErrors(t *testing.T) {
	initORT(t)
	few := writeImages(t, repeat(image.Pt(40, 30), 3)...)
	mixed := writeImages(t, append(repeat(image.Pt(40, 30), 9), image.Pt(41, 30))...)
	okDir := writeImages(t, repeat(image.Pt(40, 30), 10)...)
	broken := writeImages(t, repeat(image.Pt(40, 30), 10)...)
	if err := os.WriteFile(filepath.Join(broken, "imgz.png"), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	notONNX := filepath.Join(t.TempDir(), "backbone.onnx")
	if err := os.WriteFile(notONNX, []byte("\xff\xff\xffgarbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	list := func(dir string) []string {
		p, err := ListImages(dir, 1)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	variation := func(dir string) error {
		_, err := FitVariation(context.Background(), list(dir), VariationConfig{Size: 64})
		return err
	}
	patchcore := func(dir, bb string, layers ...string) func() error {
		return func() error {
			_, err := FitPatchCore(context.Background(), list(dir), PatchCoreConfig{Backbone: bb, Layers: layers, Size: 64})
			return err
		}
	}
	bb := backbonePath(t)
	for _, tc := range []struct {
		name string
		run  func() error
		want []string // all must appear in the error
	}{
		{"folder with too few images", func() error { _, err := ListImages(few, DefaultMinImages); return err }, []string{few, "3 images", "at least 10"}},
		{"variation with too few images", func() error {
			_, err := FitVariation(context.Background(), list(few), VariationConfig{})
			return err
		}, []string{"3 good images", "at least 10"}},
		{"mixed sizes", func() error { return variation(mixed) }, []string{"imgj.png", "41x30", "imga.png", "40x30"}},
		{"mixed sizes patchcore", patchcore(mixed, bb, mobileNetLayers...), []string{"imgj.png", "41x30"}},
		{"unreadable image", func() error { return variation(broken) }, []string{"imgz.png", "not a readable image"}},
		{"missing backbone tensor", patchcore(okDir, bb, "365_quantized", "no_such_tensor"), []string{bb, `"no_such_tensor"`, "pick intermediate tensors"}},
		{"no layers", patchcore(okDir, bb), []string{"no feature layers"}},
		{"backbone not ONNX", patchcore(okDir, notONNX, "a"), []string{notONNX}},
		{"backbone missing", patchcore(okDir, filepath.Join(okDir, "nope.onnx"), "a"), []string{"nope.onnx"}},
		{"coarse layer first", patchcore(okDir, bb, "426_quantized", "365_quantized"), []string{"finer than the first layer"}},
		{"unknown search", func() error {
			_, err := FitPatchCore(context.Background(), list(okDir), PatchCoreConfig{Backbone: bb, Layers: mobileNetLayers, Size: 64, Search: "fast"})
			return err
		}, []string{`"fast"`, SearchTwoStage, SearchTwoStageFloat, SearchExact}},
		{"negative search candidates", func() error {
			_, err := FitPatchCore(context.Background(), list(okDir), PatchCoreConfig{Backbone: bb, Layers: mobileNetLayers, Size: 64, SearchK: -1})
			return err
		}, []string{"two-stage", "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMedianTimes2MatchesSort(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, n := range []int{1, 2, 3, 10, 11, 255} {
		vals := make([]int, n)
		hist := make([]int, 256)
		for i := range vals {
			vals[i] = rng.Intn(6) * 50
			hist[vals[i]]++
		}
		sort.Ints(vals)
		want := vals[(n-1)/2] + vals[n/2]
		if got := medianTimes2(hist, n); got != want {
			t.Errorf("n=%d: 2*median %d, sorted %d", n, got, want)
		}
	}
}

// TestTireAUROC is the acceptance measurement: fit each kind on all of
// train/good and score test/ (good vs every defect) by the map maximum.
func TestTireAUROC(t *testing.T) {
	if testing.Short() {
		t.Skip("full fit on 210 images; run without -short")
	}
	initORT(t)
	d := tireDir(t)
	paths, err := ListImages(filepath.Join(d, "train", "good", "rgb"), DefaultMinImages)
	if err != nil {
		t.Fatal(err)
	}
	v, err := FitVariation(context.Background(), paths, VariationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := FitPatchCore(context.Background(), paths, PatchCoreConfig{Backbone: backbonePath(t), Layers: mobileNetLayers})
	if err != nil {
		t.Fatal(err)
	}
	exact, err := p.withSearch(SearchExact, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]AUROCResult{}
	for name, m := range map[string]interface{ ONNX() ([]byte, error) }{"variation": v, "patchcore": p, "patchcore exact search": exact} {
		model, err := m.ONNX()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".onnx")
		if err := os.WriteFile(path, model, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := FolderAUROC(path, 256, filepath.Join(d, "test"))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d good, %d bad, image AUROC %.4f", name, r.Good, r.Bad, r.AUROC)
		res[name] = r
	}
	if res["variation"].AUROC < 0.55 {
		t.Errorf("variation AUROC %.3f: no better than chance", res["variation"].AUROC)
	}
	// The two-stage search (the default) may differ from the exact one only
	// where the nearest bank row is not among its candidates: rare, so the
	// image-level result must stay within 0.002.
	if d := res["patchcore"].AUROC - res["patchcore exact search"].AUROC; math.Abs(d) > 0.002 {
		t.Errorf("two-stage search AUROC %.4f differs from the exact search's %.4f by %.4f", res["patchcore"].AUROC, res["patchcore exact search"].AUROC, d)
	}
	if res["patchcore"].AUROC < res["variation"].AUROC+0.1 {
		t.Errorf("patchcore AUROC %.3f does not clearly beat variation %.3f", res["patchcore"].AUROC, res["variation"].AUROC)
	}
}

package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/npy"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// The fixtures of these tests come from scripts/golden/segmodel.py: small
// ONNX segmentation models built with onnx.helper, part images, anomaly
// maps, and the label maps and features numpy computes for them.

func segFixture(name string) string { return filepath.Join("testdata", "segmodel", name) }

type segGolden struct {
	Labels    []string
	Detectors []string
	Maps      string
	Cases     map[string]struct {
		Image, Labels string
		Area          map[string]float64
	}
	Features []*float64
}

func readSegGolden(tb testing.TB) segGolden {
	tb.Helper()
	data, err := os.ReadFile(segFixture("segmodel.json"))
	if err != nil {
		tb.Fatalf("%v (regenerate with /usr/bin/python3 scripts/golden/segmodel.py)", err)
	}
	var g segGolden
	if err := json.Unmarshal(data, &g); err != nil {
		tb.Fatal(err)
	}
	return g
}

func readNpyFixture(tb testing.TB, name string) *npy.Array {
	tb.Helper()
	a, err := npy.Read(segFixture(name))
	if err != nil {
		tb.Fatalf("%v (regenerate with /usr/bin/python3 scripts/golden/segmodel.py)", err)
	}
	return a
}

// npyFrame is a part image fixture (uint8 [H,W,3] BGR) as a preprocessed
// frame, as capture hands it to the model.
func npyFrame(tb testing.TB, name string, seq uint64) *capture.Frame {
	tb.Helper()
	a := readNpyFixture(tb, name)
	pix := make([]byte, len(a.Int))
	for i, v := range a.Int {
		pix[i] = byte(v)
	}
	img, err := gocv.NewMatFromBytes(a.Shape[0], a.Shape[1], gocv.MatTypeCV8UC3, pix)
	if err != nil {
		tb.Fatal(err)
	}
	return &capture.Frame{Source: "test", Seq: seq, PartID: name, Image: img, Color: capture.ColorBGR}
}

// fixtureMaps gives the golden anomaly maps on every run: the detectors
// are not what these tests are about, the mask is.
type fixtureMaps struct {
	size int
	maps [][]float32
}

func newFixtureMaps(tb testing.TB, file string) *fixtureMaps {
	a := readNpyFixture(tb, file)
	n := a.Shape[1] * a.Shape[2]
	f := &fixtureMaps{size: a.Shape[1]}
	for k := 0; k < a.Shape[0]; k++ {
		f.maps = append(f.maps, a.Float32[k*n:(k+1)*n])
	}
	return f
}

func (d *fixtureMaps) Run([]infer.Image) (*infer.SetOutput, error) {
	out := &infer.SetOutput{}
	for _, m := range d.maps {
		out.Detectors = append(out.Detectors, infer.Output{Map: m})
	}
	return out, nil
}
func (d *fixtureMaps) RunEach([]infer.Image) error { return nil }
func (d *fixtureMaps) InputSizes() []infer.Size {
	return []infer.Size{{Width: d.size, Height: d.size}}
}
func (d *fixtureMaps) Warmup(int) error { return nil }
func (d *fixtureMaps) Close() error     { return nil }

func initORT(tb testing.TB) {
	tb.Helper()
	if err := infer.Init(testenv.ORTLib(tb)); err != nil {
		tb.Fatalf("infer.Init: %v", err)
	}
}

// perFrameModel is the golden maps' detectors with a real segmentation
// model (ONNX Runtime) making every frame's mask, and bounds (nil: none).
func perFrameModel(tb testing.TB, g segGolden, onnxFile string, bounds []segad.SegmentBounds) *Model {
	tb.Helper()
	initORT(tb)
	seg, err := infer.OpenSegmenter(infer.SegmenterConfig{Model: segFixture(onnxFile), Classes: len(g.Labels)})
	if err != nil {
		tb.Fatal(err)
	}
	det := newFixtureMaps(tb, g.Maps)
	out, err := seg.Run(grayInput(seg.InputSize()))
	if err != nil {
		tb.Fatal(err)
	}
	fm, err := NewFrameMask(seg, out, g.Labels, bounds, det.size, det.size, "test")
	if err != nil {
		tb.Fatal(err)
	}
	ex, err := segad.NewFrameExtractor(det.size, det.size, g.Labels, g.Detectors, "")
	if err != nil {
		tb.Fatal(err)
	}
	m := New(det, g.Detectors, perFrameMask(g.Labels, det.size, det.size), ex, fakeScorer{-1})
	m.Frame = fm
	return m
}

func relErr(got float32, want *float64) float64 {
	if want == nil {
		if math.IsNaN(float64(got)) {
			return 0
		}
		return math.Inf(1)
	}
	return math.Abs(float64(got)-*want) / math.Max(1, math.Abs(*want))
}

// TestPerFrameMaskGolden (acceptance 1): a segmentation model made by the
// golden script, run through the real ONNX Runtime, gives the label map
// numpy computes (argmax at 128x128, nearest neighbour to 256x256) for
// every output form (class scores, int64 and uint8 label maps), and the
// features of a frame computed with it (Model.Features, which segad fit,
// eval and inspect use, and Inspector.Inspect) equal numpy/scipy's on the
// model's own label map within 1e-4 relative.
func TestPerFrameMaskGolden(t *testing.T) {
	g := readSegGolden(t)
	want := readNpyFixture(t, g.Cases["part_good"].Labels)
	for _, onnxFile := range []string{"seg_scores.onnx", "seg_labels.onnx", "seg_labels_u8.onnx"} {
		t.Run(onnxFile, func(t *testing.T) {
			m := perFrameModel(t, g, onnxFile, nil)
			defer m.Close()
			f := npyFrame(t, "part_good.npy", 1)
			defer f.Close()
			row, maxes := make([]float32, m.Extractor.NumFeatures()), make([]float32, len(m.Names))
			if err := m.Features(f, row, maxes); err != nil {
				t.Fatal(err)
			}
			if len(row) != len(g.Features) {
				t.Fatalf("%d features, golden has %d", len(row), len(g.Features))
			}
			names := m.Extractor.Names()
			for i := range row {
				if e := relErr(row[i], g.Features[i]); e > 1e-4 {
					t.Errorf("feature %s = %v, numpy %v (rel. error %.2g)", names[i], row[i], show(g.Features[i]), e)
				}
			}
			insp := NewInspector(m, Settings{Threshold: 0, Warn: math.NaN()})
			ins := insp.Inspect(f, true)
			if ins.Result.Verdict != result.VerdictPass {
				t.Fatalf("verdict %s (%s)", ins.Result.Verdict, ins.Result.Reason)
			}
			if ins.Mask == nil || len(ins.Mask.Labels) != len(want.Int) {
				t.Fatalf("the inspection carries no per-frame mask for the audit: %+v", ins.Mask)
			}
			diff := 0
			for i, l := range ins.Mask.Labels {
				if int64(l) != want.Int[i] {
					diff++
				}
			}
			if diff != 0 {
				t.Fatalf("%d of %d labels differ from numpy's label map", diff, len(want.Int))
			}
			for i, ft := range ins.Result.Features {
				if float32(ft.Value) != row[i] && !(math.IsNaN(ft.Value) && math.IsNaN(float64(row[i]))) {
					t.Fatalf("feature %s: %v from Features, %v from Inspect", ft.Name, row[i], ft.Value)
				}
			}
		})
	}
}

func show(p *float64) string {
	if p == nil {
		return "NaN"
	}
	return fmt.Sprint(*p)
}

// TestPerFrameMaskFollowsTheFrame: two frames with different parts give
// each its own mask (a part without wires has an empty wires segment,
// whose four features are 0.0 as in the reference), and the static path is
// untouched: a static model's extractor refuses per-frame labels.
func TestPerFrameMaskFollowsTheFrame(t *testing.T) {
	g := readSegGolden(t)
	m := perFrameModel(t, g, "seg_scores.onnx", nil)
	defer m.Close()
	row := make([]float32, m.Extractor.NumFeatures())
	maxes := make([]float32, len(m.Names))
	for _, name := range []string{"part_good", "part_nowires", "part_good"} {
		f := npyFrame(t, name+".npy", 1)
		if err := m.Features(f, row, maxes); err != nil {
			t.Fatal(err)
		}
		f.Close()
		wires := 2 // label of "wires"; features of segment j, detector k at (j*K+k)*4
		K := len(m.Names)
		zero := true
		for k := 0; k < K; k++ {
			for s := 0; s < 4; s++ {
				zero = zero && row[(wires*K+k)*4+s] == 0
			}
		}
		if absent := g.Cases[name].Area["wires"] == 0; zero != absent {
			t.Fatalf("%s: wires area %v but its features all zero = %v: %v", name, g.Cases[name].Area["wires"], zero, row[wires*K*4:(wires+1)*K*4])
		}
	}
	static := fakeModel(t, &fakeDetectors{size: 32}, 0)
	defer static.Close()
	if err := static.Extractor.SetLabels(make([]uint8, 32*32)); err == nil {
		t.Fatal("a static extractor accepted per-frame labels")
	}
}

// segConfig writes a line configuration with the real detector fixture
// (infer/testdata/meanstd_blur.onnx), a forest of the right width and
// segad.mask as given (YAML), and returns its path.
func segConfig(tb testing.TB, mask string, labels int) string {
	tb.Helper()
	dir := tb.TempDir()
	det, err := filepath.Abs(filepath.Join("..", "infer", "testdata", "meanstd_blur.onnx"))
	if err != nil {
		tb.Fatal(err)
	}
	testenv.TrainForest(tb, filepath.Join(dir, "brf.json"), len(segad.FeatureNames(make([]string, labels), []string{"ms"}, "")))
	text := fmt.Sprintf(`capture: {kind: folder, path: %s}
detectors:
  - name: ms
    model: %s
segad:
  mask: %s
  model: brf.json
  threshold: 1000
`, dir, det, mask)
	path := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func buildFrom(tb testing.TB, path string) (*Model, Settings, error) {
	tb.Helper()
	initORT(tb)
	cfg, err := config.Load(path)
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	cfg.ONNXRuntime.Library = testenv.ORTLib(tb)
	return Build(cfg, Options{})
}

// TestPerFrameMaskWrongOutputRefused (acceptance 2): a segmentation model
// whose output is not class scores for the configured labels nor a label
// map is refused by model.Build (the daemon's start, reload, `segad config
// check` and fit), with an error that lists the model's outputs (name,
// type, shape) and says what was expected.
func TestPerFrameMaskWrongOutputRefused(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"seg_wrong_classes.onnx", []string{`"scores" ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT [1 5 128 128]`, "5 channels but segad.mask.labels names 4 labels"}},
		{"seg_rank3.onnx", []string{`"labels" ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 [1 128 128]`, "rank 3, want 4"}},
		{"seg_bool.onnx", []string{`"mask" ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL [1 1 128 128]`, "not one of float32, int64, int32, uint8"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			mask := fmt.Sprintf("{model: %s, labels: [background, rubber, wires, solder]}", abs(t, segFixture(tc.file)))
			m, _, err := buildFrom(t, segConfig(t, mask, 4))
			if err == nil {
				m.Close()
				t.Fatal("model.Build accepted it")
			}
			msg := err.Error()
			for _, w := range append(tc.want, "outputs [#0", "want class scores float32 [1,4,H,W]", "label map [1,1,H,W]", tc.file) {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func abs(tb testing.TB, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// TestPerFrameMaskFailsClosed (acceptance 3): through model.Build and the
// real Inspector, a frame whose segmentation is implausible (a required
// segment missing, a segment's area outside its bounds, NaN class scores)
// is a segmentation_error naming the segment and the measured area, never
// a verdict; a plausible frame is judged; Model.Features (segad fit)
// refuses the same frames with the same reason code.
func TestPerFrameMaskFailsClosed(t *testing.T) {
	g := readSegGolden(t)
	bounds := "required: [wires, rubber], area: {rubber: [0.1, 0.5]}"
	for _, tc := range []struct {
		name, onnx, image string
		code              string
		want              []string
		probeRefuses      string // Build refuses it unless the probe is skipped
	}{
		{"plausible", "seg_scores.onnx", "part_good.npy", "", nil, ""},
		{"required segment missing", "seg_scores.onnx", "part_nowires.npy", result.ReasonSegmentation, []string{`required segment "wires" is missing`, "area 0"}, ""},
		{"area above bounds", "seg_labels.onnx", "part_big.npy", result.ReasonSegmentation,
			[]string{`segment "rubber" covers ` + fmt.Sprintf("%.4f", g.Cases["part_big"].Area["rubber"]), "[0.1, 0.5]"}, ""},
		{"NaN class scores", "seg_nan.onnx", "part_good.npy", result.ReasonSegmentation, []string{"NaN", "class score of label"},
			"gives NaN in channel 0 at model pixel (0, 0) on a colour-gradient test frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mask := fmt.Sprintf("{model: %s, labels: [background, rubber, wires, solder], %s}", abs(t, segFixture(tc.onnx)), bounds)
			cfgPath := segConfig(t, mask, 4)
			m, s, err := buildFrom(t, cfgPath)
			if tc.probeRefuses != "" {
				// NaN already on a probe frame: refused at start, reload
				// and `segad config check`. A model that gives NaN only on
				// some parts must still fail those closed: skip the probe.
				if err == nil || !strings.Contains(err.Error(), tc.probeRefuses) {
					t.Fatalf("model.Build: %v, want a refusal with %q", err, tc.probeRefuses)
				}
				cfg, lerr := config.Load(cfgPath)
				if lerr != nil {
					t.Fatal(lerr)
				}
				cfg.ONNXRuntime.Library = testenv.ORTLib(t)
				m, s, err = Build(cfg, Options{SkipProbe: true})
			}
			if err != nil {
				t.Fatalf("model.Build: %v", err)
			}
			insp := NewInspector(m, s)
			defer insp.Close()
			f := npyFrame(t, tc.image, 3)
			defer f.Close()
			ins := insp.Inspect(f, true)
			r := ins.Result
			if tc.code == "" {
				if r.Verdict == result.VerdictError {
					t.Fatalf("a plausible frame failed closed: %s (%s)", r.ReasonCode, r.Reason)
				}
				return
			}
			if r.Verdict != result.VerdictError || r.ReasonCode != tc.code || !r.Rejected() {
				t.Fatalf("verdict %s code %q (%s), want error %s", r.Verdict, r.ReasonCode, r.Reason, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Reason, w) {
					t.Errorf("reason lacks %q: %s", w, r.Reason)
				}
			}
			row, maxes := make([]float32, m.Extractor.NumFeatures()), make([]float32, len(m.Names))
			if err := m.Features(f, row, maxes); err == nil || !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("Features: %v, want a %s error", err, tc.code)
			}
			// Buffers went back: the model keeps judging frames.
			for i := 0; i < 2*inFlight; i++ {
				insp.Inspect(f, false)
			}
		})
	}
}

// benchFeatures times Model.Features (one frame through detectors, mask
// and extractor, the path Inspector.Infer+Score take) on part_good.
func benchFeatures(b *testing.B, m *Model) {
	f := npyFrame(b, "part_good.npy", 1)
	defer f.Close()
	row, maxes := make([]float32, m.Extractor.NumFeatures()), make([]float32, len(m.Names))
	b.ReportAllocs()
	cpu0 := maskBenchCPU()
	for b.Loop() {
		if err := m.Features(f, row, maxes); err != nil {
			b.Fatal(err)
		}
	}
	reportMaskCPU(b, cpu0)
}

// BenchmarkFeaturesStaticMask is the baseline: the golden label map of
// part_good as a static mask; the detectors give the golden maps.
func BenchmarkFeaturesStaticMask(b *testing.B) {
	g := readSegGolden(b)
	lab := readNpyFixture(b, g.Cases["part_good"].Labels)
	det := newFixtureMaps(b, g.Maps)
	mask := &segad.Mask{Width: det.size, Height: det.size, Labels: make([]uint8, len(lab.Int)), Names: g.Labels}
	for i, v := range lab.Int {
		mask.Labels[i] = uint8(v)
	}
	ex, err := segad.NewExtractor(mask, g.Detectors, "")
	if err != nil {
		b.Fatal(err)
	}
	m := New(det, g.Detectors, mask, ex, nil)
	defer m.Close()
	benchFeatures(b, m)
}

// BenchmarkFeaturesPerFrameMask is the same frame with the mask made by
// the segmentation model (seg_scores.onnx: 1x1 conv and 2x2 pooling on
// ONNX Runtime, one CPU thread) on every frame: model run, argmax,
// nearest-neighbour resize, plausibility check, extractor runs rebuilt.
func BenchmarkFeaturesPerFrameMask(b *testing.B) {
	g := readSegGolden(b)
	m := perFrameModel(b, g, "seg_scores.onnx", nil)
	defer m.Close()
	benchFeatures(b, m)
}

// maskBenchCPU is the process's user+system CPU time. On the shared
// development VM (load average often above the core count) wall time per
// op mostly measures waiting; CPU time per op (reported as cpu-ns/op)
// measures the work, and is what the README's ratios use.
func maskBenchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportMaskCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(maskBenchCPU()-since)/float64(b.N), "cpu-ns/op")
}

// TestPerFrameMaskOverlapped: as the daemon runs them, Infer of frame n+1
// overlaps Score of frame n; every frame is scored with its own mask (a
// part without wires fails closed, the others are judged, and each judged
// frame's features equal its own Model.Features row).
func TestPerFrameMaskOverlapped(t *testing.T) {
	g := readSegGolden(t)
	bounds := make([]segad.SegmentBounds, len(g.Labels))
	for i := range bounds {
		bounds[i] = segad.SegmentBounds{MaxArea: 1, Required: g.Labels[i] == "wires"}
	}
	m := perFrameModel(t, g, "seg_labels.onnx", bounds)
	insp := NewInspector(m, Settings{Threshold: 0, Warn: math.NaN()})
	defer insp.Close()
	names := []string{"part_good", "part_nowires", "part_big"}
	want := map[string][]float32{}
	for _, n := range names[:1] {
		f := npyFrame(t, n+".npy", 0)
		row, maxes := make([]float32, m.Extractor.NumFeatures()), make([]float32, len(m.Names))
		if err := m.Features(f, row, maxes); err != nil {
			t.Fatal(err)
		}
		want[n] = row
		f.Close()
	}
	const frames = 12
	queue := make(chan *Inferred, 2)
	go func() {
		for i := 0; i < frames; i++ {
			f := npyFrame(t, names[i%3]+".npy", uint64(i))
			queue <- insp.Infer(f)
			f.Close()
		}
		close(queue)
	}()
	i := 0
	for in := range queue {
		r := insp.Score(in, i%2 == 0).Result
		name := names[i%3]
		switch {
		case name == "part_nowires":
			if r.ReasonCode != result.ReasonSegmentation {
				t.Fatalf("frame %d (%s): %s %q", i, name, r.Verdict, r.ReasonCode)
			}
		case r.Verdict == result.VerdictError:
			t.Fatalf("frame %d (%s) failed closed: %s", i, name, r.Reason)
		case want[name] != nil:
			for k, ft := range r.Features {
				if float32(ft.Value) != want[name][k] && !(math.IsNaN(ft.Value) && math.IsNaN(float64(want[name][k]))) {
					t.Fatalf("frame %d (%s) feature %s: %v, its own mask gives %v", i, name, ft.Name, ft.Value, want[name][k])
				}
			}
		}
		i++
	}
	if i != frames {
		t.Fatalf("%d results for %d frames", i, frames)
	}
}

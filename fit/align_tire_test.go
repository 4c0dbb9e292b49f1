package fit

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/detector"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// Fixturing acceptance on the MVTec 3D-AD tire (docs/fixturing.md): the
// test jitters every image itself (seeded: shift up to +-6% of each side,
// rotation up to +-4 degrees about the centre, train and test alike, border
// replicate as a camera sees more conveyor) and runs the one-class protocol
// four times, each with its own variation detector fitted by
// detector.FitVariation and its own forest: on the original images, on the
// jittered images, on the jittered images with capture.align (the reference
// is the mean of the unjittered train/good images), and, as a diagnostic, on
// the original images with capture.align. The variation detector alone is
// SegAD's detector here: it is the pose-sensitive one (per-pixel median and
// spread) and cheap enough to fit four times.

// alignJitterMax is the jitter of the acceptance: shift fraction, degrees.
const (
	alignJitterShift = 0.06
	alignJitterAngle = 4.0
)

// jitterImages writes a seeded, jittered copy of every sample into dir and
// returns the copies (same labels and types).
func jitterImages(t testing.TB, samples []Sample, dir string, seed uint64) []Sample {
	return jitterImagesOracle(t, samples, dir, seed, false)
}

func jitterImagesOracle(t testing.TB, samples []Sample, dir string, seed uint64, oracle bool) []Sample {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := make([]Sample, len(samples))
	for i, s := range samples {
		m, err := capture.ReadImage(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		wm := jitterWarp(seed, i, image.Pt(m.Cols(), m.Rows()))
		j := gocv.NewMat()
		gocv.WarpAffineWithParams(m, &j, wm, image.Pt(m.Cols(), m.Rows()), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
		if oracle {
			back := gocv.NewMat()
			gocv.WarpAffineWithParams(j, &back, wm, image.Pt(m.Cols(), m.Rows()), gocv.InterpolationLinear|gocv.WarpInverseMap, gocv.BorderReplicate, color.RGBA{})
			j.Close()
			j = back
		}
		name := s.Type + "_" + filepath.Base(s.Path)
		if s.Type == "" {
			name = "good_" + filepath.Base(s.Path)
		}
		p := filepath.Join(dir, name)
		if err := capture.WriteImage(p, j); err != nil {
			t.Fatal(err)
		}
		m.Close()
		wm.Close()
		j.Close()
		out[i] = Sample{Path: p, Bad: s.Bad, Type: s.Type}
	}
	return out
}

// jitterOf is the seeded jitter of image i: its shift in pixels of an
// image of size sz and its rotation in degrees, counter-clockwise on screen.
func jitterOf(seed uint64, i int, sz image.Point) (dx, dy, angle float64) {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	w, h := float64(sz.X), float64(sz.Y)
	dx = (2*rng.Float64() - 1) * alignJitterShift * w
	dy = (2*rng.Float64() - 1) * alignJitterShift * h
	angle = (2*rng.Float64() - 1) * alignJitterAngle
	return dx, dy, angle
}

// jitterWarp is image i's jitter as warpAffine's forward map (CV_64F 2x3):
// a turn about the image centre, then the shift.
func jitterWarp(seed uint64, i int, sz image.Point) gocv.Mat {
	dx, dy, ang := jitterOf(seed, i, sz)
	r := ang * math.Pi / 180
	cs, sn := math.Cos(r), math.Sin(r)
	cx, cy := float64(sz.X-1)/2, float64(sz.Y-1)/2
	wm := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	for k, v := range []float64{cs, sn, cx - cs*cx - sn*cy + dx, -sn, cs, cy + sn*cx - cs*cy + dy} {
		wm.SetDoubleAt(k/3, k%3, v)
	}
	return wm
}

// alignRunResult is one setup's held-out result, averaged over seeds.
type alignRunResult struct {
	AUROC, FPR float64
	NotLocated int // test images failed closed not_located (scored as rejects)
	NotLocGood int // of them good (false rejects)
	SkippedVal int // validation images not located (left out of training)
}

// alignRun fits a variation detector on train (with align), builds the
// forest on val + synthetic defects and measures it on test. A test part
// that is not located is a reject (the line fails it closed): it is scored
// +Inf, so a good one counts as a false reject.
func alignRun(t testing.TB, dir string, train []string, val, test []Sample, align capture.AlignConfig, seeds []int, backbone string) alignRunResult {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := detector.FitVariation(context.Background(), train, detector.VariationConfig{Align: align})
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "variation.onnx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	detectorsYAML := "  - {name: variation, model: " + filepath.Join(dir, "variation.onnx") + ", map_output: anomaly_map}\n"
	if backbone != "" {
		// The project's tire setup (TestOneClassTireLong): PatchCore on
		// MobileNetV2 int8 beside the variation model.
		p, err := detector.FitPatchCore(context.Background(), train, detector.PatchCoreConfig{Backbone: backbone,
			Layers: []string{"365_quantized", "426_quantized"}, Align: align})
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.ONNX()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "patchcore.onnx"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		detectorsYAML = "  - {name: patchcore, model: " + filepath.Join(dir, "patchcore.onnx") + ", map_output: anomaly_map}\n" + detectorsYAML
	}
	if err := gridMask(256, 256).WritePNG(filepath.Join(dir, "grid.png")); err != nil {
		t.Fatal(err)
	}
	alignYAML := ""
	if align.Enabled() {
		alignYAML = fmt.Sprintf(", align: {reference: %q, motion: %s, method: %s, min_score: %v}", align.Reference, align.Motion, align.Method, align.MinScore)
	}
	yml := "capture: {kind: folder, path: ." + alignYAML + "}\n" +
		"onnxruntime: {library: " + testenv.ORTLib(t) + "}\n" +
		"detectors:\n" + detectorsYAML +
		"segad: {mask: " + filepath.Join(dir, "grid.png") + ", bundle: bundle}\n"
	if err := os.WriteFile(filepath.Join(dir, "segad.yaml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "segad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	feat, err := NewFeaturizer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer feat.Close()
	var res alignRunResult
	valDS, err := feat.ImageDataset(val, ImageOptions{SkipBadImages: true})
	if err != nil {
		t.Fatal(err)
	}
	res.SkippedVal = len(valDS.Skipped)
	testDS := &Dataset{Features: feat.Features, Detectors: feat.Detectors, NCols: len(feat.Features)}
	row, max := make([]float32, testDS.NCols), make([]float32, len(feat.Detectors))
	var notLocated []bool
	for _, s := range test {
		fr, err := feat.Decode(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Align != nil && !fr.Align.Located() {
			notLocated = append(notLocated, s.Bad)
			if !s.Bad {
				res.NotLocGood++
			}
			fr.Close()
			continue
		}
		err = feat.FrameRow(fr, row, max)
		fr.Close()
		if err != nil {
			t.Fatal(err)
		}
		testDS.add(s, row, max)
	}
	res.NotLocated = len(notLocated)
	var goods []string
	for _, s := range valDS.Samples {
		goods = append(goods, s.Path)
	}
	for _, seed := range seeds {
		o := SyntheticOptions{N: 90, Seed: seed}
		cand, err := feat.Candidates(goods, o)
		if err != nil {
			t.Fatal(err)
		}
		tr := valDS.Subset(allIdx(valDS.Len()))
		rep, err := AddSynthetic(tr, o, cand, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr.Synthetic = rep
		to := DefaultTrainOptions()
		to.Seed = seed
		model, _, err := Train(tr, to)
		if err != nil {
			t.Fatal(err)
		}
		m, err := brf.LoadBytes(model)
		if err != nil {
			t.Fatal(err)
		}
		scores := Score(m, testDS)
		bad := testDS.Bad()
		for _, nb := range notLocated {
			scores = append(scores, math.Inf(1))
			bad = append(bad, nb)
		}
		met, err := metricsOf(scores, bad)
		if err != nil {
			t.Fatal(err)
		}
		res.AUROC += met.AUROC / float64(len(seeds))
		res.FPR += met.FPRAt95TPR / float64(len(seeds))
	}
	return res
}

// TestAlignTireAcceptance is the fixturing acceptance (make acceptance;
// SEGAD_ACCEPTANCE=1): with capture.align, SegAD's AUROC on jittered tires
// is within 1 point and its FPR@95TPR within 3 points of the unjittered
// run, and the jittered run without fixturing is worse than the aligned one.
func TestAlignTireAcceptance(t *testing.T) {
	if os.Getenv("SEGAD_ACCEPTANCE") == "" {
		t.Skip("set SEGAD_ACCEPTANCE=1 (make acceptance): four detector fits and forests on the tire data")
	}
	if err := xgboost.Open(); err != nil {
		t.Skip(err)
	}
	root := tireRoot(t)
	if err := infer.Init(testenv.ORTLib(t)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	trainPaths, err := detector.ListImages(filepath.Join(root, "train", "good", "rgb"), detector.DefaultMinImages)
	if err != nil {
		t.Fatal(err)
	}
	var train []Sample
	for _, p := range trainPaths {
		train = append(train, Sample{Path: p})
	}
	val, err := ListImages(filepath.Join(root, "validation", "good", "rgb"), "")
	if err != nil {
		t.Fatal(err)
	}
	test, err := ListImages(filepath.Join(root, "test", "good", "rgb"), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"combined", "contamination", "cut", "hole"} {
		bs, err := ListImages(filepath.Join(root, "test", typ, "rgb"), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range bs {
			test = append(test, Sample{Path: s.Path, Bad: true, Type: typ})
		}
	}
	dir := t.TempDir()
	jTrain := jitterImages(t, train, filepath.Join(dir, "jit", "train"), 11)
	jVal := jitterImages(t, val, filepath.Join(dir, "jit", "val"), 12)
	jTest := jitterImages(t, test, filepath.Join(dir, "jit", "test"), 13)
	paths := func(ss []Sample) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = s.Path
		}
		return out
	}
	// Euclidean: on the tire it did better than affine, whose extra scale
	// and shear adapt each tire's size to the reference (measured: affine
	// AUROC 0.514, euclidean 0.570, translation 0.559, same seeds).
	// The reference is the mean of the (unjittered) train/good images:
	// tires differ in tread phase, and the mean is the tire's body without
	// one tire's tread (docs/fixturing.md). min_score 0.6: good tires
	// correlate with one reference tire at 0.69..0.98; against the mean at
	// the default smooth the training tires score 0.962 and up
	// (TestAlignTirePose), so the default 0.8 would do too, but 0.6 keeps
	// fail-closed rejects out of what this compares: the poses.
	ref := meanImage(t, trainPaths, filepath.Join(dir, "reference.png"))
	align := capture.AlignConfig{Reference: ref, Motion: capture.MotionEuclidean, Method: capture.MethodECC, MinScore: 0.6}
	align.Defaults()
	seeds := []int{1, 2, 3}
	// SEGAD_ACCEPTANCE=patchcore adds PatchCore (the project's tire setup;
	// three PatchCore fits, several minutes more).
	backbone, what := "", "variation detector"
	if os.Getenv("SEGAD_ACCEPTANCE") == "patchcore" {
		backbone, what = filepath.Join(testenv.SharedDir(t), "models", "mobilenetv2-12-int8.onnx"), "PatchCore + variation"
	}
	var plain, jit alignRunResult
	plain = alignRun(t, filepath.Join(dir, "plain"), trainPaths, val, test, capture.AlignConfig{}, seeds, backbone)
	jit = alignRun(t, filepath.Join(dir, "jitter"), paths(jTrain), jVal, jTest, capture.AlignConfig{}, seeds, backbone)
	aligned := alignRun(t, filepath.Join(dir, "aligned"), paths(jTrain), jVal, jTest, align, seeds, backbone)
	// Diagnostic: fixturing on the original, unjittered images. The tires
	// already sit in a fixed pose there, so this measures what registering
	// each tire to the reference costs by itself.
	regPlain := alignRun(t, filepath.Join(dir, "registered-plain"), trainPaths, val, test, align, seeds, backbone)
	var sb strings.Builder
	fmt.Fprintf(&sb, "tire, %s, %d seeds, %d test images (%s):\n", what, len(seeds), len(test), time.Since(start).Round(time.Second))
	for _, r := range []struct {
		name string
		r    alignRunResult
	}{{"unjittered", plain}, {"jittered", jit}, {"jittered+align", aligned}, {"unjittered+align", regPlain}} {
		fmt.Fprintf(&sb, "  %-15s AUROC %.4f  FPR@95TPR %.4f  not located %d (good %d), val skipped %d\n",
			r.name, r.r.AUROC, r.r.FPR, r.r.NotLocated, r.r.NotLocGood, r.r.SkippedVal)
	}
	t.Log(sb.String())
	if aligned.AUROC < plain.AUROC-0.01 {
		t.Errorf("aligned AUROC %.4f is more than 1 point below the unjittered %.4f", aligned.AUROC, plain.AUROC)
	}
	if aligned.FPR > plain.FPR+0.03 {
		t.Errorf("aligned FPR@95TPR %.4f is more than 3 points above the unjittered %.4f", aligned.FPR, plain.FPR)
	}
	if !(jit.AUROC < aligned.AUROC && jit.FPR > aligned.FPR) {
		t.Errorf("the jittered run without fixturing (AUROC %.4f, FPR %.4f) is not worse than with it (%.4f, %.4f)",
			jit.AUROC, jit.FPR, aligned.AUROC, aligned.FPR)
	}
}

// meanImage writes the pixel mean of the images at paths (same size) to out:
// the reference for parts whose texture differs between good parts (a
// tire's tread phase), so registration follows the part's body, not the
// texture of one particular part.
func meanImage(t testing.TB, paths []string, out string) string {
	t.Helper()
	var acc gocv.Mat
	for _, p := range paths {
		m, err := capture.ReadImage(p)
		if err != nil {
			t.Fatal(err)
		}
		f := gocv.NewMat()
		m.ConvertTo(&f, gocv.MatTypeCV32FC3)
		m.Close()
		if acc.Ptr() == nil {
			acc = f
			continue
		}
		gocv.Add(acc, f, &acc)
		f.Close()
	}
	defer acc.Close()
	mean := gocv.NewMat()
	defer mean.Close()
	acc.ConvertToWithParams(&mean, gocv.MatTypeCV8UC3, float32(1/float64(len(paths))), 0)
	if err := capture.WriteImage(out, mean); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAlignTirePose checks registration itself, without detectors or
// forests (SEGAD_ACCEPTANCE=1, seconds): every train/good tire, as it is and
// jittered like the acceptance does, is registered to the mean reference.
// It logs each set's pose error against the known jitter (zero for the
// originals) and checks that the jittered copy lands on its original's pose
// plus the jitter. SEGAD_ALIGN_SMOOTH=0.004,0.05,0.1 compares smooth values.
//
// Measured: the originals do not sit in one pose. Every registration tried
// (grey ECC at smooth 0.001..0.15, ECC on the gradient magnitude of the
// blurred image, on an Otsu silhouette) finds the same per-tire shifts
// within 1-2 px, median 2.7 px and up to 10 px at 256 px, and by eye the
// tire's edges differ by as much (150.png against 180.png).
func TestAlignTirePose(t *testing.T) {
	if os.Getenv("SEGAD_ACCEPTANCE") == "" {
		t.Skip("set SEGAD_ACCEPTANCE=1: registers the 210 tire training images twice")
	}
	trainPaths, err := detector.ListImages(filepath.Join(tireRoot(t), "train", "good", "rgb"), detector.DefaultMinImages)
	if err != nil {
		t.Fatal(err)
	}
	ref := meanImage(t, trainPaths, filepath.Join(t.TempDir(), "reference.png"))
	smooths := []float64{capture.DefaultAlignSmooth}
	if s := os.Getenv("SEGAD_ALIGN_SMOOTH"); s != "" {
		smooths = nil
		for _, f := range strings.Split(s, ",") {
			var v float64
			if _, err := fmt.Sscan(f, &v); err != nil {
				t.Fatal(err)
			}
			smooths = append(smooths, v)
		}
	}
	for _, smooth := range smooths {
		align := capture.AlignConfig{Reference: ref, Motion: capture.MotionEuclidean, Method: capture.MethodECC, MinScore: 0.6, Smooth: smooth}
		pc := capture.PreprocessConfig{Align: align}
		// Pose errors in preprocessed (256x256) pixels and degrees.
		plain, jit, cons := poseErrors{minScore: 1}, poseErrors{minScore: 1}, poseErrors{minScore: 1}
		var last [3]float64
		for i, p := range trainPaths {
			for _, jittered := range []bool{false, true} {
				m, err := capture.ReadImage(p)
				if err != nil {
					t.Fatal(err)
				}
				sz := image.Pt(m.Cols(), m.Rows())
				var wantX, wantY, wantA float64
				if jittered {
					wm := jitterWarp(11, i, sz)
					j := gocv.NewMat()
					gocv.WarpAffineWithParams(m, &j, wm, sz, gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
					wm.Close()
					m.Close()
					m = j
					wantX, wantY, wantA = jitterOf(11, i, sz)
				}
				f := capture.FrameFromMat(m, pc)
				if f.Err != nil {
					t.Fatal(f.Err)
				}
				a := f.Align
				e := &plain
				if jittered {
					e = &jit
				}
				if !a.Located() {
					e.notLocated++
				} else {
					sx, sy := float64(a.Size.X)/float64(sz.X), float64(a.Size.Y)/float64(sz.Y)
					ex, ey, ea := a.DX-wantX*sx, a.DY-wantY*sy, a.Angle-wantA
					e.add(ex, ey, ea)
					e.minScore = min(e.minScore, a.Score)
					if !jittered {
						last = [3]float64{ex, ey, ea}
					} else {
						cons.add(ex-last[0], ey-last[1], ea-last[2])
					}
				}
				f.Close()
			}
		}
		t.Logf("smooth %.3f: unjittered %v", smooth, &plain)
		t.Logf("smooth %.3f: jittered   %v", smooth, &jit)
		t.Logf("smooth %.3f: jittered minus unjittered %v", smooth, &cons)
		// Equivariance: the jitter is recovered on top of the tire's own pose.
		// The unjittered poses are logged, not bounded: the tires are not in
		// one pose (150.png sits about 10 px left of 180.png).
		if plain.notLocated+jit.notLocated > 0 {
			t.Errorf("smooth %.3f: %d unjittered and %d jittered tires not located", smooth, plain.notLocated, jit.notLocated)
		}
		if q := quantile(cons.shift, 0.9); q > 0.6 {
			t.Errorf("smooth %.3f: jittered minus unjittered shift p90 %.2f px, want <= 0.6", smooth, q)
		}
		if q := quantile(cons.angle, 0.9); q > 0.4 {
			t.Errorf("smooth %.3f: jittered minus unjittered angle p90 %.2f deg, want <= 0.4", smooth, q)
		}
	}
}

// poseErrors collects registration errors against the known pose.
type poseErrors struct {
	shift, angle []float64 // |error|: shift length in pixels, degrees
	sx, sy, sa   float64   // sums of the signed errors
	minScore     float64   // lowest registration score (1: none recorded)
	notLocated   int
}

func (e *poseErrors) add(dx, dy, da float64) {
	e.sx, e.sy, e.sa = e.sx+dx, e.sy+dy, e.sa+da
	e.shift = append(e.shift, math.Hypot(dx, dy))
	e.angle = append(e.angle, math.Abs(da))
}

// quantile of xs (sorted in place).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	return xs[min(len(xs)-1, int(q*float64(len(xs))))]
}

func (e *poseErrors) String() string {
	n := float64(len(e.shift))
	return fmt.Sprintf("mean (%.2f, %.2f, %.2f) ", e.sx/n, e.sy/n, e.sa/n) + fmt.Sprintf("shift error median %.2f p90 %.2f max %.2f px, angle error median %.2f p90 %.2f max %.2f deg, not located %d, lowest score %.3f",
		quantile(e.shift, 0.5), quantile(e.shift, 0.9), quantile(e.shift, 1), quantile(e.angle, 0.5), quantile(e.angle, 0.9), quantile(e.angle, 1), e.notLocated, e.minScore)
}

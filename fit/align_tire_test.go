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
	"github.com/segad-edge/segad-edge/metrics"
	"github.com/segad-edge/segad-edge/segad"
)

// Fixturing acceptance on the MVTec 3D-AD tire (docs/fixturing.md): the
// test jitters every image itself (seeded: shift up to +-6% of each side,
// rotation up to +-4 degrees about the centre, train and test alike, border
// replicate as a camera sees more conveyor) and measures SegAD four times,
// each with its own detectors (PatchCore on MobileNetV2 int8 and the
// variation model, the project's tire setup, fitted on train/good) and its
// own forests: on the original images, on the jittered images, on the
// jittered images with capture.align (the reference is the mean of the
// unjittered train/good images), and, as a diagnostic, on the original
// images with capture.align. The mask is a 3x3 grid over the tire, the
// background left out (tireMask says why). SegAD is measured as the paper
// trains it (supervised: the forest sees real defects, 5-fold
// cross-validated over the test images) and, logged beside it, one-class
// (forest on good parts and synthetic defects only).
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

// alignRunResult is one setup's held-out result under both protocols.
type alignRunResult struct {
	// AUROC and FPR: one-class protocol (forest on validation/good plus
	// synthetic defects), averaged over forest seeds.
	AUROC, FPR float64
	// SupAUROC and SupFPR: supervised protocol (the paper's: the forest
	// sees real defects), 5-fold cross-validated over the test images.
	SupAUROC, SupFPR float64
	NotLocated       int // test images failed closed not_located (scored as rejects)
	NotLocGood       int // of them good (false rejects)
	SkippedVal       int // validation images not located (left out of training)
}

// alignRows are one setup's feature rows: validation/good, and the test
// images in list order (at[i] is test image i's row in test, -1 when it was
// not located).
type alignRows struct {
	val, test *Dataset
	samples   []Sample
	at        []int
	feat      *Featurizer
}

// alignRun fits a variation detector on train (with align), computes the
// rows of val and test and measures SegAD on them under both protocols. A
// test part that is not located is a reject (the line fails it closed): it
// is scored +Inf, so a good one counts as a false reject.
func alignRun(t testing.TB, dir string, train []string, val, test []Sample, mask *segad.Mask, align capture.AlignConfig, seeds []int, splits int, backbone string) alignRunResult {
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
	if err := mask.WritePNG(filepath.Join(dir, "tire.png")); err != nil {
		t.Fatal(err)
	}
	alignYAML := ""
	if align.Enabled() {
		alignYAML = fmt.Sprintf(", align: {reference: %q, motion: %s, method: %s, min_score: %v}", align.Reference, align.Motion, align.Method, align.MinScore)
	}
	yml := "capture: {kind: folder, path: ." + alignYAML + "}\n" +
		"onnxruntime: {library: " + testenv.ORTLib(t) + "}\n" +
		"detectors:\n" + detectorsYAML +
		"segad: {mask: " + filepath.Join(dir, "tire.png") + ", bundle: bundle}\n"
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
	rows := alignRows{val: valDS, samples: test, feat: feat,
		test: &Dataset{Features: feat.Features, Detectors: feat.Detectors, NCols: len(feat.Features)}}
	row, max := make([]float32, rows.test.NCols), make([]float32, len(feat.Detectors))
	for _, s := range test {
		fr, err := feat.Decode(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Align != nil && !fr.Align.Located() {
			rows.at = append(rows.at, -1)
			res.NotLocated++
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
		rows.at = append(rows.at, rows.test.Len())
		rows.test.add(s, row, max)
	}
	res.AUROC, res.FPR = rows.oneClass(t, seeds)
	res.SupAUROC, res.SupFPR = rows.supervised(t, splits)
	return res
}

// score returns the scores and labels of the test images idx, in idx's
// order: the forest's score, or +Inf for an image that was not located.
func (r *alignRows) score(m brf.Model, idx []int) ([]float64, []bool) {
	var rowIdx []int
	for _, i := range idx {
		if r.at[i] >= 0 {
			rowIdx = append(rowIdx, r.at[i])
		}
	}
	forest := Score(m, r.test.Subset(rowIdx))
	scores, bad := make([]float64, len(idx)), make([]bool, len(idx))
	for j, i := range idx {
		bad[j] = r.samples[i].Bad
		if r.at[i] < 0 {
			scores[j] = math.Inf(1)
			continue
		}
		scores[j], forest = forest[0], forest[1:]
	}
	return scores, bad
}

// oneClass trains the forest on validation/good plus 90 synthetic defects
// per seed and measures it on every test image: AUROC and FPR@95TPR,
// averaged over seeds.
func (r *alignRows) oneClass(t testing.TB, seeds []int) (auroc, fpr float64) {
	t.Helper()
	var goods []string
	for _, s := range r.val.Samples {
		goods = append(goods, s.Path)
	}
	for _, seed := range seeds {
		o := SyntheticOptions{N: 90, Seed: seed}
		cand, err := r.feat.Candidates(goods, o)
		if err != nil {
			t.Fatal(err)
		}
		tr := r.val.Subset(allIdx(r.val.Len()))
		rep, err := AddSynthetic(tr, o, cand, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr.Synthetic = rep
		to := DefaultTrainOptions()
		to.Seed = seed
		met := r.trainAndMeasure(t, tr, to, allIdx(len(r.samples)))
		auroc += met.AUROC / float64(len(seeds))
		fpr += met.FPRAt95TPR / float64(len(seeds))
	}
	return auroc, fpr
}

// supervised is SegAD as the paper trains it, cross-validated over the
// test images: for each of repeats seeded repetitions, the test images are
// split into 5 folds stratified by class (each defect type, and good); each
// fold is scored by a forest trained on validation/good plus the other four
// folds, and AUROC and FPR@95TPR are measured on the pooled out-of-fold
// scores of all test images (every one held out once, so FPR@95TPR counts
// all 25 good tires), averaged over the repetitions. The folds depend on
// the seed and the images' order only, so every setup gets the same folds.
func (r *alignRows) supervised(t testing.TB, repeats int) (auroc, fpr float64) {
	t.Helper()
	const k = 5
	for rep := 0; rep < repeats; rep++ {
		fold := supervisedFolds(r.samples, k, rep)
		scores := make([]float64, len(r.samples))
		for f := 0; f < k; f++ {
			var trainRows, held []int
			for i, fi := range fold {
				switch {
				case fi == f:
					held = append(held, i)
				case r.at[i] >= 0: // an unlocated part has no row to learn from
					trainRows = append(trainRows, r.at[i])
				}
			}
			tr := r.val.Subset(allIdx(r.val.Len()))
			tr.Append(r.test.Subset(trainRows))
			to := DefaultTrainOptions()
			to.Seed = rep*k + f + 1
			model, _, err := Train(tr, to)
			if err != nil {
				t.Fatal(err)
			}
			m, err := brf.LoadBytes(model)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := r.score(m, held)
			for j, i := range held {
				scores[i] = s[j]
			}
		}
		bad := make([]bool, len(r.samples))
		for i, s := range r.samples {
			bad[i] = s.Bad
		}
		met, err := metricsOf(scores, bad)
		if err != nil {
			t.Fatal(err)
		}
		auroc += met.AUROC / float64(repeats)
		fpr += met.FPRAt95TPR / float64(repeats)
	}
	return auroc, fpr
}

// supervisedFolds assigns every sample one of k folds, stratified by class
// (each defect type, and good) and shuffled with seed.
func supervisedFolds(samples []Sample, k, seed int) []int {
	byType := map[string][]int{}
	for i, s := range samples {
		c := s.Type
		if !s.Bad {
			c = ""
		}
		byType[c] = append(byType[c], i)
	}
	fold := make([]int, len(samples))
	rng := rand.New(rand.NewPCG(uint64(seed), 0xa11))
	next := 0 // classes continue where the last one ended, to balance folds
	for _, c := range sortedKeys(byType) {
		idx := byType[c]
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		for _, i := range idx {
			fold[i] = next % k
			next++
		}
	}
	return fold
}

// trainAndMeasure trains a forest on tr and measures it on the test images
// idx.
func (r *alignRows) trainAndMeasure(t testing.TB, tr *Dataset, to TrainOptions, idx []int) Metrics {
	t.Helper()
	model, _, err := Train(tr, to)
	if err != nil {
		t.Fatal(err)
	}
	m, err := brf.LoadBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	scores, bad := r.score(m, idx)
	met, err := metricsOf(scores, bad)
	if err != nil {
		t.Fatal(err)
	}
	return met
}

// TestAlignTireAcceptance is the fixturing acceptance (make acceptance;
// SEGAD_ACCEPTANCE=1): with capture.align, SegAD's AUROC on jittered tires
// is within 1 point and its FPR@95TPR within 3 points of the unjittered
// run, and the jittered run without fixturing is worse than the aligned one.
func TestAlignTireAcceptance(t *testing.T) {
	if os.Getenv("SEGAD_ACCEPTANCE") == "" {
		t.Skip("set SEGAD_ACCEPTANCE=1 (make acceptance): four PatchCore and variation fits and 70 forests on the tire data, 4-7 minutes")
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
	test := tireTestSet(t, root)
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
	// and shear adapt each tire's size to the reference (measured with the
	// variation model, one-class, on a grid over the whole frame: affine
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
	// SEGAD_ACCEPTANCE=variation leaves PatchCore out (a minute faster). The
	// variation model alone does not see the tire's defects once the
	// background is out of the mask (SegAD AUROC 0.55 unjittered), so it
	// cannot show what fixturing wins back; the run is logged, not judged.
	backbone, what := filepath.Join(testenv.SharedDir(t), "models", "mobilenetv2-12-int8.onnx"), "PatchCore + variation"
	variationOnly := os.Getenv("SEGAD_ACCEPTANCE") == "variation"
	if variationOnly {
		backbone, what = "", "variation detector"
	}
	splits := 4 // repetitions of the 5-fold cross-validation
	mask := tireMask(t, ref)
	var plain, jit alignRunResult
	plain = alignRun(t, filepath.Join(dir, "plain"), trainPaths, val, test, mask, capture.AlignConfig{}, seeds, splits, backbone)
	jit = alignRun(t, filepath.Join(dir, "jitter"), paths(jTrain), jVal, jTest, mask, capture.AlignConfig{}, seeds, splits, backbone)
	aligned := alignRun(t, filepath.Join(dir, "aligned"), paths(jTrain), jVal, jTest, mask, align, seeds, splits, backbone)
	// Diagnostic: fixturing on the original, unjittered images. The tires
	// are not all in one pose there (TestAlignTirePose), so this measures
	// what registering each tire to the reference changes by itself.
	regPlain := alignRun(t, filepath.Join(dir, "registered-plain"), trainPaths, val, test, mask, align, seeds, splits, backbone)
	var sb strings.Builder
	fmt.Fprintf(&sb, "tire, %s, %d test images (%s); supervised: 5-fold x %d, one-class: %d forest seeds:\n", what, len(test), time.Since(start).Round(time.Second), splits, len(seeds))
	for _, r := range []struct {
		name string
		r    alignRunResult
	}{{"unjittered", plain}, {"jittered", jit}, {"jittered+align", aligned}, {"unjittered+align", regPlain}} {
		fmt.Fprintf(&sb, "  %-16s supervised AUROC %.4f FPR@95TPR %.4f | one-class AUROC %.4f FPR@95TPR %.4f | not located %d (good %d), val skipped %d\n",
			r.name, r.r.SupAUROC, r.r.SupFPR, r.r.AUROC, r.r.FPR, r.r.NotLocated, r.r.NotLocGood, r.r.SkippedVal)
	}
	t.Log(sb.String())
	if variationOnly {
		return
	}
	// The acceptance is SegAD as the paper trains it (supervised); the
	// one-class figures are logged beside it (docs/fixturing.md). The
	// unjittered run is not the ideal it stands for here: its test tires sit
	// 5 px from the training tires' pose (TestAlignTireBackground), which
	// fixturing corrects too, so the aligned run may beat it.
	if aligned.SupAUROC < plain.SupAUROC-0.01 {
		t.Errorf("aligned AUROC %.4f is more than 1 point below the unjittered %.4f", aligned.SupAUROC, plain.SupAUROC)
	}
	if aligned.SupFPR > plain.SupFPR+0.03 {
		t.Errorf("aligned FPR@95TPR %.4f is more than 3 points above the unjittered %.4f", aligned.SupFPR, plain.SupFPR)
	}
	// Worse without fixturing: by AUROC, with a margin well above the
	// run-to-run noise. FPR@95TPR cannot rank these setups: at 95% recall
	// every setup rejects 83-93% of the 25 good test tires (the hardest
	// defects score like good tires), so it moves by one or two tires
	// between them; it is logged.
	if jit.SupAUROC > aligned.SupAUROC-0.05 {
		t.Errorf("the jittered run without fixturing (AUROC %.4f) is not clearly worse than with it (%.4f)", jit.SupAUROC, aligned.SupAUROC)
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

// tireMask is the acceptance's segmentation: a 3x3 grid over the tire's
// bounding box in the reference pose (from the mean image ref, at the
// detectors' 256x256), every pixel outside it ignored (label 255). The
// background must not be a segment here: on this data the empty background
// alone tells the test set's defective images from its good ones (they were
// captured apart: in the top-right 40x40 px corner, with no tire in it, the
// noise level alone separates them with AUROC 0.86, TestAlignTireBackground),
// and a forest that reads it measures the capture sessions, not the tire,
// and any resampling of the frame (fixturing's warp, or the test's own
// jitter) smooths that noise away.
func tireMask(t testing.TB, ref string) *segad.Mask {
	t.Helper()
	m, err := capture.ReadImage(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	small, grey := gocv.NewMat(), gocv.NewMat()
	defer small.Close()
	defer grey.Close()
	const size = 256
	gocv.Resize(m, &small, image.Pt(size, size), 0, 0, gocv.InterpolationArea)
	gocv.CvtColor(small, &grey, gocv.ColorBGRToGray)
	// The tire is where the mean image differs from the background (the
	// median of the image's outermost rows and columns, grey 17..20): its
	// rubber is darker (4..9), its lit tread brighter.
	var border []int
	for i := 0; i < size; i++ {
		border = append(border, int(grey.GetUCharAt(0, i)), int(grey.GetUCharAt(size-1, i)), int(grey.GetUCharAt(i, 0)), int(grey.GetUCharAt(i, size-1)))
	}
	sort.Ints(border)
	bg := border[len(border)/2]
	// The box spans the rows and columns in which at least a tenth of the
	// pixels differ by more than 6 grey levels (specks of background do not
	// count).
	cols, rows := make([]int, size), make([]int, size)
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			if d := int(grey.GetUCharAt(y, x)) - bg; d > 6 || d < -6 {
				cols[x]++
				rows[y]++
			}
		}
	}
	span := func(n []int) (lo, hi int) {
		lo, hi = size, -1
		for i, c := range n {
			if c >= size/10 {
				lo, hi = min(lo, i), max(hi, i)
			}
		}
		return lo, hi
	}
	x0, x1 := span(cols)
	y0, y1 := span(rows)
	if x1 < x0+size/4 || y1 < y0+size/4 {
		t.Fatalf("tire mask: no tire in the mean image %s (background %d, box %d,%d..%d,%d)", ref, bg, x0, y0, x1, y1)
	}
	// A few pixels of margin keep the tire's edges inside the segments.
	const margin = 4
	x0, y0, x1, y1 = max(0, x0-margin), max(0, y0-margin), min(size-1, x1+margin), min(size-1, y1+margin)
	w, h := x1-x0+1, y1-y0+1
	mask := &segad.Mask{Width: size, Height: size, Labels: make([]uint8, size*size), Names: segad.DefaultNames(9)}
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			l := uint8(segad.Ignore)
			if x >= x0 && x <= x1 && y >= y0 && y <= y1 {
				l = uint8(((y-y0)*3/h)*3 + (x-x0)*3/w)
			}
			mask.Labels[y*size+x] = l
		}
	}
	return mask
}

// TestAlignTireBackground measures why the acceptance's mask leaves the
// background out (SEGAD_ACCEPTANCE=1, a second): in MVTec 3D-AD's tire test
// set the defective tires were captured apart from the good ones, and the
// empty background shows it. The noise (standard deviation of grey) of a
// 40x40 px corner of the raw image, where no tire is, separates test/good
// from the defective test images with AUROC 0.86 (top right); and every
// test image sits about 5 px left of the training tires' pose
// (TestAlignTirePose's registration), good and defective alike. A SegAD
// whose segments include the background learns the sessions; fixturing's
// warp (and the acceptance's jitter) resamples the frame, which smooths that
// noise away, so such a baseline would lose points to any resampling, not
// to the pose.
func TestAlignTireBackground(t *testing.T) {
	if os.Getenv("SEGAD_ACCEPTANCE") == "" {
		t.Skip("set SEGAD_ACCEPTANCE=1: a measurement of the tire data itself")
	}
	root := tireRoot(t)
	test := tireTestSet(t, root)
	var bad []bool
	for _, s := range test {
		bad = append(bad, s.Bad)
	}
	best := 0.0
	for _, c := range []struct {
		name string
		r    image.Rectangle
	}{{"top left", image.Rect(0, 0, 40, 40)}, {"top right", image.Rect(260, 0, 300, 40)},
		{"bottom left", image.Rect(0, 360, 40, 400)}, {"bottom right", image.Rect(260, 360, 300, 400)}} {
		var noise []float64
		for _, s := range test {
			m, err := capture.ReadImage(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			if m.Cols() != 300 || m.Rows() != 400 {
				t.Fatalf("%s is %dx%d, want the README's 300x400", s.Path, m.Cols(), m.Rows())
			}
			g := gocv.NewMat()
			gocv.CvtColor(m, &g, gocv.ColorBGRToGray)
			roi := g.Region(c.r)
			mean, std := gocv.NewMat(), gocv.NewMat()
			gocv.MeanStdDev(roi, &mean, &std)
			noise = append(noise, std.GetDoubleAt(0, 0))
			for _, x := range []gocv.Mat{mean, std, roi, g, m} {
				x.Close()
			}
		}
		a, err := metrics.AUROC(noise, bad)
		if err != nil {
			t.Fatal(err)
		}
		a = math.Max(a, 1-a) // either direction separates
		best = math.Max(best, a)
		t.Logf("%-12s corner: background noise alone separates good from defective test images with AUROC %.3f", c.name, a)
	}
	if best < 0.8 {
		t.Errorf("the background separates the test set's classes with AUROC %.3f at best; docs/fixturing.md says 0.86", best)
	}
	// Where each set's tires sit, registered to the mean training tire.
	trainPaths, err := detector.ListImages(filepath.Join(root, "train", "good", "rgb"), detector.DefaultMinImages)
	if err != nil {
		t.Fatal(err)
	}
	align := capture.AlignConfig{Reference: meanImage(t, trainPaths, filepath.Join(t.TempDir(), "reference.png")),
		Motion: capture.MotionEuclidean, Method: capture.MethodECC, MinScore: 0.6}
	align.Defaults()
	meanDX := map[string]float64{}
	for _, set := range []string{"train/good", "validation/good", "test/good", "test/cut", "test/hole", "test/contamination", "test/combined"} {
		ss, err := ListImages(filepath.Join(root, set, "rgb"), "")
		if err != nil {
			t.Fatal(err)
		}
		var dx, dy, ang float64
		for _, s := range ss {
			f := capture.ReadFrame(s.Path, capture.PreprocessConfig{Align: align})
			if f.Err != nil || !f.Align.Located() {
				t.Fatalf("%s: %v %+v", s.Path, f.Err, f.Align)
			}
			dx, dy, ang = dx+f.Align.DX, dy+f.Align.DY, ang+f.Align.Angle
			f.Close()
		}
		n := float64(len(ss))
		meanDX[set] = dx / n
		t.Logf("%-19s %3d tires: mean pose dx %+.2f px, dy %+.2f px, %+.2f degrees (256x256)", set, len(ss), dx/n, dy/n, ang/n)
	}
	for _, set := range []string{"test/good", "test/cut", "test/hole", "test/contamination"} {
		if d := meanDX[set] - meanDX["train/good"]; d > -3 {
			t.Errorf("%s sits %+.2f px from the training tires in x; docs/fixturing.md says about -5", set, d)
		}
	}
}

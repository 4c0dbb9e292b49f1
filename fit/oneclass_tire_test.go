package fit

import (
	"context"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/detector"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/segad"
)

// The one-class protocol on MVTec 3D-AD tire (docs/fit.md): PatchCore and
// variation detectors fitted on train/good; the forest on validation/good
// plus synthetic defects made from validation/good (plus real bad images in
// low-shot runs); held out: test/good and every test defect. The tire has no
// segmentation, so a static 3x3 grid is the mask.
//
// Detector maps are deterministic, so their feature rows (real images and
// every synthetic candidate, keyed by seed, kind and index) are cached on
// disk under os.TempDir()/segad-oneclass-tire-<hash>: the experiments and the
// long run then only train forests.

// tireCache holds the cached rows of one detector/mask setup.
type tireCache struct {
	dir string
	cfg *config.Config

	mu    sync.Mutex
	feat  *Featurizer
	goods []string
	cands map[string]cachedRow // "seed/kind/i"
	dirty int
	real  map[string]*Dataset // "val", "test"
}

type cachedRow struct {
	Row, Max []float32
	Def      Defect
	Src      string
}

// gridMask is the tire's static 3x3 grid at w x h.
func gridMask(w, h int) *segad.Mask {
	m := &segad.Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: segad.DefaultNames(9)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Labels[y*w+x] = uint8((y*3/h)*3 + x*3/w)
		}
	}
	return m
}

// tireRoot is the shared tire data.
// tireTestSet lists the tire data's test split: test/good, then every defect
// type as a bad sample carrying its type.
func tireTestSet(t testing.TB, root string) []Sample {
	t.Helper()
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
	return test
}

func tireRoot(t testing.TB) string {
	return filepath.Join(testenv.SharedDir(t), "data", "mvtec3d-tire-rgb")
}

// openTireCache fits (or reuses) the two detectors and opens the cache.
func openTireCache(t testing.TB) *tireCache {
	t.Helper()
	if err := xgboost.Open(); err != nil {
		t.Skip(err)
	}
	root := tireRoot(t)
	backbone := filepath.Join(testenv.SharedDir(t), "models", "mobilenetv2-12-int8.onnx")
	if _, err := os.Stat(backbone); err != nil {
		t.Skip(err)
	}
	if err := infer.Init(testenv.ORTLib(t)); err != nil {
		t.Fatal(err)
	}
	// The cache is keyed by this setup and the generator's version, so a
	// changed generator never reads stale rows.
	hs := sha256.Sum256([]byte(fmt.Sprintf("tire-grid3-patchcore-variation-v1-gen%d", generatorVersion)))
	dir := filepath.Join(os.TempDir(), "segad-oneclass-tire-"+hex.EncodeToString(hs[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	paths, err := detector.ListImages(filepath.Join(root, "train", "good", "rgb"), detector.DefaultMinImages)
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]func() ([]byte, error){
		"variation": func() ([]byte, error) {
			v, err := detector.FitVariation(context.Background(), paths, detector.VariationConfig{})
			if err != nil {
				return nil, err
			}
			return v.ONNX()
		},
		"patchcore": func() ([]byte, error) {
			p, err := detector.FitPatchCore(context.Background(), paths, detector.PatchCoreConfig{Backbone: backbone, Layers: []string{"365_quantized", "426_quantized"}})
			if err != nil {
				return nil, err
			}
			return p.ONNX()
		},
	}
	for name, fit := range models {
		p := filepath.Join(dir, name+".onnx")
		if _, err := os.Stat(p); err == nil {
			continue
		}
		b, err := fit()
		if err != nil {
			t.Fatalf("fit %s: %v", name, err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := gridMask(256, 256).WritePNG(filepath.Join(dir, "grid.png")); err != nil {
		t.Fatal(err)
	}
	yml := "capture: {kind: folder, path: .}\n" +
		"onnxruntime: {library: " + testenv.ORTLib(t) + "}\n" +
		"detectors:\n" +
		"  - {name: patchcore, model: " + filepath.Join(dir, "patchcore.onnx") + ", map_output: anomaly_map}\n" +
		"  - {name: variation, model: " + filepath.Join(dir, "variation.onnx") + ", map_output: anomaly_map}\n" +
		"segad: {mask: " + filepath.Join(dir, "grid.png") + ", bundle: bundle}\n"
	if err := os.WriteFile(filepath.Join(dir, "segad.yaml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "segad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := &tireCache{dir: dir, cfg: cfg, cands: map[string]cachedRow{}, real: map[string]*Dataset{}}
	if f, err := os.Open(filepath.Join(dir, "candidates.gob")); err == nil {
		gob.NewDecoder(f).Decode(&c.cands)
		f.Close()
	}
	t.Cleanup(func() {
		c.save(t)
		if c.feat != nil {
			c.feat.Close()
		}
	})
	return c
}

func (c *tireCache) featurizer(t testing.TB) *Featurizer {
	if c.feat == nil {
		f, err := NewFeaturizer(c.cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.feat = f
	}
	return c.feat
}

func (c *tireCache) save(t testing.TB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty == 0 {
		return
	}
	tmp := filepath.Join(c.dir, "candidates.gob.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		t.Error(err)
		return
	}
	if err := gob.NewEncoder(f).Encode(c.cands); err != nil {
		t.Error(err)
	}
	f.Close()
	os.Rename(tmp, filepath.Join(c.dir, "candidates.gob"))
	c.dirty = 0
}

// realRows returns "val" (validation/good) or "test" (test/good and every
// defect type) rows, cached as gob.
func (c *tireCache) realRows(t testing.TB, which string) *Dataset {
	if d := c.real[which]; d != nil {
		return d
	}
	p := filepath.Join(c.dir, which+".gob")
	var d Dataset
	if f, err := os.Open(p); err == nil {
		err = gob.NewDecoder(f).Decode(&d)
		f.Close()
		if err == nil {
			c.real[which] = &d
			return &d
		}
	}
	root := tireRoot(t)
	var samples []Sample
	var err error
	if which == "val" {
		samples, err = ListImages(filepath.Join(root, "validation", "good", "rgb"), "")
	} else {
		samples = tireTestSet(t, root)
	}
	if err != nil {
		t.Fatal(err)
	}
	dd, err := c.featurizer(t).ImageDataset(samples, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := gob.NewEncoder(f).Encode(dd); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.real[which] = dd
	return dd
}

// candidates is the cached Candidate source over validation/good for seed:
// the same function segad fit uses (Featurizer.Candidates), memoised.
func (c *tireCache) candidates(t testing.TB, seed int) Candidate {
	var live Candidate
	return func(kind string, i int, row, max []float32) (Defect, string, error) {
		key := fmt.Sprintf("%d/%s/%d", seed, kind, i)
		c.mu.Lock()
		r, ok := c.cands[key]
		c.mu.Unlock()
		if !ok {
			if live == nil {
				val := c.realRows(t, "val")
				var goods []string
				for _, s := range val.Samples {
					goods = append(goods, s.Path)
				}
				var err error
				if live, err = c.featurizer(t).Candidates(goods, SyntheticOptions{Seed: seed}); err != nil {
					return Defect{}, "", err
				}
			}
			r = cachedRow{Row: make([]float32, len(row)), Max: make([]float32, len(max))}
			var err error
			if r.Def, r.Src, err = live(kind, i, r.Row, r.Max); err != nil {
				return Defect{}, "", err
			}
			c.mu.Lock()
			c.cands[key] = r
			c.dirty++
			c.mu.Unlock()
			if c.dirty >= 500 {
				c.save(t)
			}
		}
		copy(row, r.Row)
		copy(max, r.Max)
		return r.Def, r.Src, nil
	}
}

// oneClassResult is one forest's held-out result.
type oneClassResult struct {
	AUROC, FPR float64
	Rep        *SyntheticReport
}

// trainEval trains the paper's forest on train and measures it on test.
func trainEval(t testing.TB, train, test *Dataset, seed int) oneClassResult {
	o := DefaultTrainOptions()
	o.Seed = seed
	model, _, err := Train(train, o)
	if err != nil {
		t.Fatal(err)
	}
	m, err := brf.LoadBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	met, err := metricsOf(Score(m, test), test.Bad())
	if err != nil {
		t.Fatal(err)
	}
	return oneClassResult{AUROC: met.AUROC, FPR: met.FPRAt95TPR, Rep: train.Synthetic}
}

// oneClassRun builds validation/good + synthetic defects (o) for seed and
// returns the held-out result on test.
func (c *tireCache) oneClassRun(t testing.TB, o SyntheticOptions, seed int) oneClassResult {
	val := c.realRows(t, "val")
	train := val.Subset(allIdx(val.Len()))
	o.Seed = seed
	rep, err := AddSynthetic(train, o, c.candidates(t, seed), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	train.Synthetic = rep
	return trainEval(t, train, c.realRows(t, "test"), seed)
}

func allIdx(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// baselineOn returns detector k's map-max AUROC and FPR@95TPR on d.
func baselineOn(t testing.TB, d *Dataset, k int) (float64, float64) {
	m, err := metricsOf(BaselineScores(d, k), d.Bad())
	if err != nil {
		t.Fatal(err)
	}
	return m.AUROC, m.FPRAt95TPR
}

// fmtMS formats mean±std of xs.
func fmtMS(xs []float64) string {
	m, s := meanStd(xs)
	return fmt.Sprintf("%.4f±%.4f", m, s)
}

// TestOneClassExplore prints held-out results per kind and severity setting
// (SEGAD_EXPLORE=1). It is how the defaults were looked at; the defaults
// themselves were chosen in TestOneClassTireLong on validation data only.
func TestOneClassExplore(t *testing.T) {
	if os.Getenv("SEGAD_EXPLORE") == "" {
		t.Skip("set SEGAD_EXPLORE=1")
	}
	c := openTireCache(t)
	test := c.realRows(t, "test")
	val := c.realRows(t, "val")
	for k, n := range test.Detectors {
		a, f := baselineOn(t, test, k)
		t.Logf("detector %s alone: AUROC %.4f FPR@95TPR %.3f", n, a, f)
	}
	// Map maxima: good validation vs test good vs real defects.
	for k, n := range test.Detectors {
		var vg, tg, tb []float64
		for i := range val.Samples {
			vg = append(vg, float64(val.Max[i*2+k]))
		}
		for i, s := range test.Samples {
			if s.Bad {
				tb = append(tb, float64(test.Max[i*2+k]))
			} else {
				tg = append(tg, float64(test.Max[i*2+k]))
			}
		}
		sort.Float64s(vg)
		sort.Float64s(tg)
		sort.Float64s(tb)
		t.Logf("%s max: val good %v\n test good %v\n test bad %v", n, vg, tg, tb)
	}
	b, err := NewSeverityBounds(val, Severity{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bounds %s good %v", b, b.Good)
	cand := c.candidates(t, 0)
	row, mx := make([]float32, val.NCols), make([]float32, 2)
	for _, k := range AllKinds {
		var ratios []string
		cnt := map[int]int{}
		for i := 0; i < 30; i++ {
			if _, _, err := cand(k, i, row, mx); err != nil {
				t.Fatal(err)
			}
			cnt[b.Verdict(mx)]++
			lv := func(n string, v float32) float64 { return (float64(v) - b.Median[n]) / (b.Good[n] - b.Median[n]) }
			ratios = append(ratios, fmt.Sprintf("%.1f/%.1f", lv("patchcore", mx[0]), lv("variation", mx[1])))
		}
		t.Logf("%-10s weak %2d ok %2d strong %2d: %s", k, cnt[-1], cnt[0], cnt[1], strings.Join(ratios, " "))
	}
	c.save(t)
	if os.Getenv("SEGAD_EXPLORE") == "dist" {
		return
	}
	seeds := []int{0, 1, 2, 3, 4}
	type cfg struct {
		name string
		o    SyntheticOptions
	}
	off := Severity{Off: true}
	configs := []cfg{
		{"paper, no filter", SyntheticOptions{N: 200, Kinds: PaperKinds, Severity: off}},
		{"all, no filter", SyntheticOptions{N: 200, Kinds: AllKinds, Severity: off}},
		{"all, 1..3", SyntheticOptions{N: 200, Kinds: AllKinds}},
		{"all, 0..3", SyntheticOptions{N: 200, Kinds: AllKinds, Severity: Severity{LowSet: true, High: 3}}},
		{"all, 0.5..2", SyntheticOptions{N: 200, Kinds: AllKinds, Severity: Severity{Low: 0.5, High: 2}}},
		{"structural, no filter", SyntheticOptions{N: 200, Kinds: StructuralKinds, Severity: off}},
		{"logical, no filter", SyntheticOptions{N: 200, Kinds: LogicalKinds, Severity: off}},
	}
	for _, k := range AllKinds {
		configs = append(configs, cfg{k + " only, no filter", SyntheticOptions{N: 200, Kinds: []string{k}, Severity: off}})
	}
	for _, cf := range configs {
		var au, fp []float64
		var rep *SyntheticReport
		for _, s := range seeds {
			r := c.oneClassRun(t, cf.o, s)
			au, fp = append(au, r.AUROC), append(fp, r.FPR)
			rep = r.Rep
		}
		var kept []string
		for _, k := range rep.Kinds {
			kr := rep.PerKind[k]
			kept = append(kept, fmt.Sprintf("%s %d/%d (weak %d strong %d)", k, kr.Kept, kr.Quota, kr.TooWeak, kr.TooStrong))
		}
		t.Logf("%-22s AUROC %s FPR %s  [%s]", cf.name, fmtMS(au), fmtMS(fp), strings.Join(kept, ", "))
		c.save(t)
	}
}

// lowShotRun trains on validation/good + nBad real defects drawn from test
// (seeded) [+ synthetic defects o] and measures on the rest of test.
func (c *tireCache) lowShotRun(t testing.TB, nBad int, o *SyntheticOptions, seed int) oneClassResult {
	val, test := c.realRows(t, "val"), c.realRows(t, "test")
	var bad, rest []int
	for i, s := range test.Samples {
		if s.Bad {
			bad = append(bad, i)
		} else {
			rest = append(rest, i)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x10))
	rng.Shuffle(len(bad), func(a, b int) { bad[a], bad[b] = bad[b], bad[a] })
	rest = append(rest, bad[nBad:]...)
	sort.Ints(rest)
	train := val.Subset(allIdx(val.Len()))
	train.Append(test.Subset(bad[:nBad]))
	if o != nil {
		so := *o
		so.Seed = seed
		rep, err := AddSynthetic(train, so, c.candidates(t, seed), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		train.Synthetic = rep
	}
	return trainEval(t, train, test.Subset(rest), seed)
}

// lokoScore is the validation-only selection criterion for synthetic
// options: validation/good is split in two halves by image; the forest is
// trained on one half's good images plus the synthetic defects made from
// that half, with one kind left out, and measured on the other half's good
// images against the left-out kind's defects made from them (all severities
// kept: they stand for unknown real defects). It returns the mean over
// left-out kinds and both halves of SegAD's AUROC minus the best detector's
// (map max) on the same held-out rows. No test image is involved.
func (c *tireCache) lokoScore(t testing.TB, o SyntheticOptions, seed int, probe []string) float64 {
	val := c.realRows(t, "val")
	half := map[string]int{}
	for i, s := range val.Samples {
		half[s.Path] = i % 2
	}
	// One pool of candidates per kind; each is assigned to its source's half.
	all := val.Subset(allIdx(val.Len()))
	po := SyntheticOptions{N: 40 * len(probe), Kinds: probe, Seed: seed, Severity: Severity{Off: true}}
	if _, err := AddSynthetic(all, po, c.candidates(t, seed), nil, nil); err != nil {
		t.Fatal(err)
	}
	srcHalf := func(s Sample) int { return half[strings.SplitN(s.Path, "#", 2)[0]] }
	var gains []float64
	for h := 0; h < 2; h++ {
		for _, left := range probe {
			var trainIdx, testIdx []int
			for i, s := range all.Samples {
				in := srcHalf(s) == h
				switch {
				case s.Kind == "" && in:
					trainIdx = append(trainIdx, i)
				case s.Kind == "" && !in:
					testIdx = append(testIdx, i)
				case s.Kind == left && !in:
					testIdx = append(testIdx, i)
				}
			}
			train := all.Subset(trainIdx)
			to := o
			to.Seed = seed
			to.Kinds = nil
			for _, k := range o.Kinds {
				if k != left {
					to.Kinds = append(to.Kinds, k)
				}
			}
			if len(to.Kinds) == 0 {
				continue
			}
			// Candidates from this half's images only.
			cand := c.candidates(t, seed)
			found := map[string][]int{} // per kind: candidate indices from half h
			next := map[string]int{}
			halfCand := func(kind string, i int, row, max []float32) (Defect, string, error) {
				for len(found[kind]) <= i {
					j := next[kind]
					next[kind]++
					_, src, err := cand(kind, j, row, max)
					if err != nil {
						return Defect{}, "", err
					}
					if half[src] == h {
						found[kind] = append(found[kind], j)
					}
				}
				return cand(kind, found[kind][i], row, max)
			}
			if _, err := AddSynthetic(train, to, halfCand, nil, nil); err != nil {
				t.Fatal(err)
			}
			test := all.Subset(testIdx)
			r := trainEval(t, train, test, seed)
			best := 0.0
			for k := range test.Detectors {
				a, _ := baselineOn(t, test, k)
				best = max(best, a)
			}
			gains = append(gains, r.AUROC-best)
		}
	}
	m, _ := meanStd(gains)
	return m
}

// namedOptions is one synthetic-defect setting under comparison.
type namedOptions struct {
	name string
	o    SyntheticOptions
}

// selectionCandidates are the settings the validation criterion chooses
// among (kinds x severity band), all with 200 defects.
func selectionCandidates() []namedOptions {
	off := Severity{Off: true}
	band := Severity{Low: 0.5, High: 2}
	return []namedOptions{
		{"paper kinds, no filter (paper recipe)", SyntheticOptions{N: 200, Kinds: PaperKinds, Severity: off}},
		{"paper kinds, band 0.5..2", SyntheticOptions{N: 200, Kinds: PaperKinds, Severity: band}},
		{"all kinds, no filter", SyntheticOptions{N: 200, Kinds: AllKinds, Severity: off}},
		{"all kinds, band 0.5..2", SyntheticOptions{N: 200, Kinds: AllKinds, Severity: band}},
	}
}

// TestOneClassTireLong is the acceptance measurement (SEGAD_LONG=1, 5.4
// minutes on the shared 2-core machine with a warm row cache, longer cold;
// the synthetic setting is chosen on validation data only
// (lokoScore), then every setting is measured on the held-out test set over
// 5 seeds next to the best detector alone, and low-shot (10 real defects)
// with and without synthetic defects.
func TestOneClassTireLong(t *testing.T) {
	if os.Getenv("SEGAD_LONG") == "" {
		t.Skip("set SEGAD_LONG=1 (heavy: 5 seeds, every kind)")
	}
	c := openTireCache(t)
	test := c.realRows(t, "test")
	seeds := []int{0, 1, 2, 3, 4}
	bestDet, bestAUC, bestFPR := "", 0.0, 0.0
	for k, n := range test.Detectors {
		a, f := baselineOn(t, test, k)
		t.Logf("%s alone (map max): AUROC %.4f FPR@95TPR %.3f", n, a, f)
		if a > bestAUC {
			bestDet, bestAUC, bestFPR = n, a, f
		}
	}
	// 1. Choose on validation data only.
	cands := selectionCandidates()
	chosen, chosenScore := -1, math.Inf(-1)
	for i, nc := range cands {
		var sc []float64
		for _, s := range seeds[:1] {
			sc = append(sc, c.lokoScore(t, nc.o, s, AllKinds))
		}
		m, _ := meanStd(sc)
		t.Logf("validation (leave-one-kind-out gain over the best detector): %-40s %+.4f", nc.name, m)
		if m > chosenScore {
			chosen, chosenScore = i, m
		}
		c.save(t)
	}
	t.Logf("chosen on validation: %s", cands[chosen].name)
	// 2. Held-out test, 5 seeds, every setting (the chosen one is asserted).
	type agg struct{ auc, fpr []float64 }
	res := map[string]*agg{}
	run := func(name string, o SyntheticOptions) *agg {
		a := &agg{}
		for _, s := range seeds {
			r := c.oneClassRun(t, o, s)
			a.auc, a.fpr = append(a.auc, r.AUROC), append(a.fpr, r.FPR)
		}
		res[name] = a
		t.Logf("one-class %-40s AUROC %s FPR@95TPR %s", name, fmtMS(a.auc), fmtMS(a.fpr))
		return a
	}
	for _, nc := range cands {
		run(nc.name, nc.o)
		c.save(t)
	}
	ch := res[cands[chosen].name]
	am, _ := meanStd(ch.auc)
	fm, _ := meanStd(ch.fpr)
	if am < bestAUC+0.01 {
		t.Errorf("one-class SegAD (%s) AUROC %.4f does not beat %s alone (%.4f) by 1 point", cands[chosen].name, am, bestDet, bestAUC)
	}
	if fm > bestFPR {
		t.Errorf("one-class SegAD (%s) FPR@95TPR %.3f is above %s alone (%.3f)", cands[chosen].name, fm, bestDet, bestFPR)
	}
	// 3. Low-shot: 10 real defects, with and without the chosen synthetic ones.
	var with, without []float64
	var withF, withoutF []float64
	for _, s := range seeds {
		o := cands[chosen].o
		r0 := c.lowShotRun(t, 10, nil, s)
		r1 := c.lowShotRun(t, 10, &o, s)
		without, with = append(without, r0.AUROC), append(with, r1.AUROC)
		withoutF, withF = append(withoutF, r0.FPR), append(withF, r1.FPR)
	}
	t.Logf("low-shot 10 real: without synthetic AUROC %s FPR %s; with synthetic AUROC %s FPR %s",
		fmtMS(without), fmtMS(withoutF), fmtMS(with), fmtMS(withF))
	mw, _ := meanStd(with)
	mo, _ := meanStd(without)
	if mw <= mo {
		t.Errorf("low-shot with synthetic defects (AUROC %.4f) does not beat low-shot without (%.4f)", mw, mo)
	}
}

// TestOneClassFitEvalFast runs one-class and mixed `segad fit` and `segad
// eval` on the real tire images with both detectors (the normal suite's
// variant of TestOneClassTireLong): the manifest records kinds, shares,
// severity bounds and kept/rejected counts; every kept defect is in the
// bounds; the same seed gives the same model; eval reports each synthetic
// kind next to the detectors alone; mixed mode weighs synthetic rows.
func TestOneClassFitEvalFast(t *testing.T) {
	if testing.Short() {
		t.Skip("real detectors on real images")
	}
	c := openTireCache(t)
	root := tireRoot(t)
	dir := t.TempDir()
	link := func(src, dst string, n int) {
		os.MkdirAll(dst, 0o755)
		fs, _ := filepath.Glob(filepath.Join(src, "*.png"))
		if n > 0 && len(fs) > n {
			fs = fs[:n]
		}
		for _, f := range fs {
			if err := os.Symlink(f, filepath.Join(dst, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
	}
	link(filepath.Join(root, "test", "good", "rgb"), filepath.Join(dir, "testgood"), 0)
	for _, typ := range []string{"contamination", "cut", "hole"} {
		link(filepath.Join(root, "test", typ, "rgb"), filepath.Join(dir, "testbad", typ), 8)
	}
	link(filepath.Join(root, "test", "combined", "rgb"), filepath.Join(dir, "fewbad", "combined"), 4)
	good := filepath.Join(root, "validation", "good", "rgb")
	rich := []string{KindBlur, KindPerlin, KindCutPaste, KindScratch, KindColor, KindDisplace, KindMissing, KindDuplicate, KindStretch}
	syn := SyntheticOptions{N: 27, Kinds: rich, Seed: 3}
	fitOnce := func(out, bad string) *Summary {
		sum, err := Run(Options{Config: c.cfg, Good: good, Bad: bad, Out: out, Train: smallTrain(), ToolVersion: "test",
			Images: ImageOptions{Synthetic: syn}})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	out := filepath.Join(dir, "oneclass")
	sum := fitOnce(out, "")
	b, err := bundle.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep SyntheticReport
	if err := json.Unmarshal(b.Manifest.Synthetic, &rep); err != nil {
		t.Fatalf("manifest synthetic record: %v (%s)", err, b.Manifest.Synthetic)
	}
	if !slices.Equal(rep.Kinds, rich) || rep.Seed != 3 || rep.Severity == nil || rep.Weight != 1 || rep.Bank != 29 {
		t.Fatalf("synthetic record %+v", rep)
	}
	share, kept := 0.0, 0
	for _, k := range rich {
		kr := rep.PerKind[k]
		if kr == nil || kr.Quota != 3 || kr.Kept > kr.Quota {
			t.Fatalf("kind %s: %+v", k, kr)
		}
		share += kr.Share
		kept += kr.Kept
	}
	if kept != rep.Kept || kept != b.Manifest.Data.Synthetic || kept < 15 || math.Abs(share-1) > 1e-9 {
		t.Errorf("kept %d (record %d, manifest %d), shares sum %v", kept, rep.Kept, b.Manifest.Data.Synthetic, share)
	}
	for _, n := range []string{"patchcore", "variation"} {
		if !(rep.Severity.Min[n] > rep.Severity.Median[n] && rep.Severity.Max[n] > rep.Severity.Min[n]) {
			t.Errorf("bounds for %s: %+v", n, rep.Severity)
		}
	}
	if sum.Synthetic == nil || sum.Synthetic.Kept != kept {
		t.Errorf("summary synthetic %+v", sum.Synthetic)
	}
	// Reproducible: the same seed gives the same forest, byte for byte.
	out2 := filepath.Join(dir, "again")
	fitOnce(out2, "")
	m1, _ := os.ReadFile(filepath.Join(out, bundle.ModelFile))
	m2, _ := os.ReadFile(filepath.Join(out2, bundle.ModelFile))
	if len(m1) == 0 || string(m1) != string(m2) {
		t.Error("two one-class fits with the same seed gave different models")
	}
	// Eval: one-class flagged, every synthetic kind next to each detector.
	res, err := EvaluateBundle(EvaluateOptions{Bundle: out, Config: c.cfg, Good: filepath.Join(dir, "testgood"), Bad: filepath.Join(dir, "testbad"),
		Images: ImageOptions{Synthetic: SyntheticOptions{N: 22, Kinds: AllKinds, Seed: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OneClass || res.SyntheticTraining == nil || len(res.PerKind) == 0 {
		t.Fatalf("eval one_class %v training %+v per kind %v", res.OneClass, res.SyntheticTraining, res.PerKind)
	}
	for k, m := range res.PerKind {
		if m.N == 0 || len(m.Baseline) != 2 || m.SegAD.AUROC < 0 || m.SegAD.AUROC > 1 {
			t.Errorf("kind %s: %+v", k, m)
		}
	}
	if res.AUROC < 0.6 {
		t.Errorf("one-class SegAD held-out AUROC %.3f: barely above chance", res.AUROC)
	}
	t.Logf("fast one-class: SegAD AUROC %.3f, patchcore alone %.3f, variation alone %.3f; per kind %d kinds",
		res.AUROC, res.Baseline["patchcore"].AUROC, res.Baseline["variation"].AUROC, len(res.PerKind))
	// Mixed: 4 real defects + synthetic ones weighing as much together.
	mixed := fitOnce(filepath.Join(dir, "mixed"), filepath.Join(dir, "fewbad"))
	if mixed.Synthetic == nil || math.Abs(mixed.Synthetic.Weight-4/float64(mixed.Synthetic.Kept)) > 1e-9 || mixed.Counts.BadTypes["combined"] != 4 {
		t.Errorf("mixed: synthetic %+v counts %+v", mixed.Synthetic, mixed.Counts)
	}
}

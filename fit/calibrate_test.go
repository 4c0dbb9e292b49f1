package fit

import (
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/bundle"
)

// TestIntervalsGolden checks both intervals against scipy's
// binomtest(k, n).proportion_ci (scripts/golden/intervals.py).
func TestIntervalsGolden(t *testing.T) {
	var g struct {
		Cases []struct {
			K, N           int
			Confidence     float64
			ClopperPearson [2]float64 `json:"clopper_pearson"`
			Wilson         [2]float64
		}
	}
	readJSON(t, "testdata/intervals.json", &g)
	if len(g.Cases) < 100 {
		t.Fatalf("%d golden cases", len(g.Cases))
	}
	for _, c := range g.Cases {
		for _, m := range []struct {
			name string
			got  bundle.Interval
			want [2]float64
		}{
			{"clopper-pearson", ClopperPearson(c.K, c.N, c.Confidence), c.ClopperPearson},
			{"wilson", Wilson(c.K, c.N, c.Confidence), c.Wilson},
		} {
			if math.Abs(m.got.Low-m.want[0]) > 1e-9 || math.Abs(m.got.High-m.want[1]) > 1e-9 {
				t.Errorf("%s k=%d n=%d conf=%v: got [%.12g, %.12g], scipy [%.12g, %.12g]",
					m.name, c.K, c.N, c.Confidence, m.got.Low, m.got.High, m.want[0], m.want[1])
			}
		}
	}
	if iv := ClopperPearson(0, 0, 0.95); iv.Low != 0 || iv.High != 1 {
		t.Errorf("n=0: %+v", iv)
	}
}

// TestStratifiedFolds: every fold holds both classes, about 1/k of each,
// and the assignment depends only on the seed.
func TestStratifiedFolds(t *testing.T) {
	for _, tc := range []struct{ good, bad, k int }{{29, 43, 5}, {10, 5, 5}, {7, 2, 2}, {100, 3, 3}} {
		bad := make([]bool, tc.good+tc.bad)
		for i := range bad {
			bad[i] = i%(tc.good+tc.bad) >= tc.good
		}
		// Interleave the classes so folds cannot follow row order.
		rand.New(rand.NewPCG(9, 9)).Shuffle(len(bad), func(a, b int) { bad[a], bad[b] = bad[b], bad[a] })
		f1 := stratifiedFolds(bad, tc.k, rand.New(rand.NewPCG(1, 0xf01d)))
		f2 := stratifiedFolds(bad, tc.k, rand.New(rand.NewPCG(1, 0xf01d)))
		f3 := stratifiedFolds(bad, tc.k, rand.New(rand.NewPCG(2, 0xf01d)))
		if !slices.Equal(f1, f2) {
			t.Errorf("%+v: the same seed gave different folds", tc)
		}
		if slices.Equal(f1, f3) {
			t.Errorf("%+v: different seeds gave the same folds", tc)
		}
		cnt := make([][2]int, tc.k)
		for i, f := range f1 {
			if f < 0 || f >= tc.k {
				t.Fatalf("fold %d", f)
			}
			if bad[i] {
				cnt[f][1]++
			} else {
				cnt[f][0]++
			}
		}
		for f, c := range cnt {
			if c[0] < tc.good/tc.k || c[0] > tc.good/tc.k+1 || c[1] < tc.bad/tc.k || c[1] > tc.bad/tc.k+1 || c[1] == 0 || c[0] == 0 {
				t.Errorf("%+v: fold %d holds %d good, %d bad", tc, f, c[0], c[1])
			}
		}
	}
}

func TestCalibrationFolds(t *testing.T) {
	for _, tc := range []struct {
		good, bad, want, k int
		note, err          string
	}{
		{29, 43, 0, 5, "", ""},
		{29, 43, 10, 10, "", ""},
		{29, 3, 5, 3, "only 3 bad images", ""},
		{4, 30, 5, 4, "only 4 good images", ""},
		{2, 2, 5, 2, "only 2", ""},
		{10, 1, 5, 0, "", "at least 2 good and 2 bad"},
		{10, 0, 5, 0, "", "--calibration training"},
		{10, 10, 1, 0, "", "at least 2 folds"},
	} {
		k, note, err := CalibrationFolds(tc.good, tc.bad, tc.want)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err %v", tc, err)
			}
			continue
		}
		if err != nil || k != tc.k || (tc.note == "") != (note == "") || !strings.Contains(note, tc.note) {
			t.Errorf("%+v: k %d note %q err %v", tc, k, note, err)
		}
	}
}

// countAt recounts a threshold on the calibration data.
func countAt(scores []float64, bad []bool, thr float64) bundle.PointCounts {
	var c bundle.PointCounts
	for i, s := range scores {
		if bad[i] {
			c.Bad++
			if s >= thr {
				c.Caught++
			}
		} else {
			c.Good++
			if s >= thr {
				c.Rejected++
			}
		}
	}
	return c
}

// checkTable checks what every table must satisfy: counts reproduce from
// the thresholds, rows run from strict to lenient with both rates rising,
// intervals hold the estimates.
func checkTable(t *testing.T, tab *Table, scores []float64, bad []bool) {
	t.Helper()
	all := append(append([]bundle.OperatingPoint{}, tab.Rows...), tab.Points...)
	for i, p := range all {
		if c := countAt(scores, bad, p.Threshold); c != *p.Counts {
			t.Errorf("point %d (thr %v): recounted %+v, recorded %+v", i, p.Threshold, c, *p.Counts)
		}
		if p.Recall != float64(p.Counts.Caught)/float64(p.Counts.Bad) || p.FPR != float64(p.Counts.Rejected)/float64(p.Counts.Good) {
			t.Errorf("point %d: rates %v %v vs counts %+v", i, p.Recall, p.FPR, p.Counts)
		}
		if !(p.RecallCI.Low <= p.Recall && p.Recall <= p.RecallCI.High && p.FPRCI.Low <= p.FPR && p.FPR <= p.FPRCI.High) {
			t.Errorf("point %d: intervals %+v %+v do not hold %v %v", i, p.RecallCI, p.FPRCI, p.Recall, p.FPR)
		}
	}
	for i := 1; i < len(tab.Rows); i++ {
		a, b := tab.Rows[i-1], tab.Rows[i]
		if !(b.Threshold < a.Threshold && b.Counts.Caught > a.Counts.Caught && b.Counts.Rejected > a.Counts.Rejected) {
			t.Errorf("rows %d, %d not a strict staircase: %+v %+v", i-1, i, a.Counts, b.Counts)
		}
	}
}

func TestOperatingTable(t *testing.T) {
	// 10 bad, 10 good, overlapping; bad at 10..19 step 1 minus a few, good 0..9 and two high.
	scores := []float64{19, 18, 17, 16, 15, 14, 13, 12, 11, 5, 20, 14.5, 9, 8, 7, 6, 4.5, 3, 2, 1}
	bad := []bool{true, true, true, true, true, true, true, true, true, true, false, false, false, false, false, false, false, false, false, false}
	tab, err := SuggestFromLabelled(scores, bad,
		bundle.Budget{Kind: bundle.BudgetRecall, Value: 0.9}, bundle.Budget{Kind: bundle.BudgetRecall, Value: 1},
		bundle.Budget{Kind: bundle.BudgetMaxFalseReject, Value: 0.1}, bundle.Budget{Kind: bundle.BudgetMaxFalseReject, Value: 0})
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, tab, scores, bad)
	if tab.Good != 10 || tab.Bad != 10 || tab.Interval != "clopper-pearson" || tab.Confidence != 0.95 {
		t.Errorf("table header %+v", tab)
	}
	want := []bundle.PointCounts{
		{Caught: 9, Bad: 10, Rejected: 2, Good: 10},  // recall 0.9: 11 and above, the two high goods fail
		{Caught: 10, Bad: 10, Rejected: 6, Good: 10}, // recall 1: down to 5 (goods 20, 14.5, 9, 8, 7, 6)
		{Caught: 5, Bad: 10, Rejected: 1, Good: 10},  // fpr <= 0.1: down to 15 (14.5 would add a good)
		{Caught: 5, Bad: 10, Rejected: 1, Good: 10},  // fpr 0: impossible (the top part is good): the strictest row
	}
	for i, w := range want {
		p := tab.Points[i]
		if *p.Counts != w {
			t.Errorf("budget %v: counts %+v, want %+v", p.Budget, *p.Counts, w)
		}
	}
	if p := tab.Points[3]; p.Met == nil || *p.Met || len(tab.Warnings) != 1 || !strings.Contains(tab.Warnings[0], "already fails 1 of 10") {
		t.Errorf("unmet budget: met %v warnings %q", p.Met, tab.Warnings)
	}
	if tab.Points[0].Met != nil || tab.Suggested.Threshold != tab.Points[0].Threshold {
		t.Errorf("suggested %+v", tab.Suggested)
	}
	// The threshold lies halfway to the next lower score: 11 (bad) and 9 (good).
	if tab.Points[0].Threshold != 10 {
		t.Errorf("recall 0.9 threshold %v, want 10", tab.Points[0].Threshold)
	}
	if tab.Rows[0].Threshold != 14.75 || tab.Rows[len(tab.Rows)-1].Counts.Caught != 10 {
		t.Errorf("rows %+v", tab.Rows)
	}
}

func TestOperatingTableEdges(t *testing.T) {
	r95 := bundle.Budget{Kind: bundle.BudgetRecall, Value: 0.95}
	f02 := bundle.Budget{Kind: bundle.BudgetMaxFalseReject, Value: 0.02}
	t.Run("no bad rows", func(t *testing.T) {
		_, err := SuggestFromLabelled([]float64{1, 2, 3}, []bool{false, false, false}, r95)
		if err == nil || !strings.Contains(err.Error(), "3 good and 0 bad") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("one bad row", func(t *testing.T) {
		scores, bad := []float64{1, 2, 3, 2.5}, []bool{false, false, false, true}
		tab, err := SuggestFromLabelled(scores, bad, r95, f02)
		if err != nil {
			t.Fatal(err)
		}
		checkTable(t, tab, scores, bad)
		p := tab.Suggested
		if p.Counts.Caught != 1 || p.Counts.Rejected != 1 || p.Threshold != 2.25 {
			t.Errorf("suggested %+v counts %+v", p, p.Counts)
		}
		// One bad part says little: recall 1 with an interval reaching 0.025.
		if math.Abs(p.RecallCI.Low-0.025) > 1e-12 || p.RecallCI.High != 1 {
			t.Errorf("recall interval %+v", p.RecallCI)
		}
	})
	t.Run("all scores equal", func(t *testing.T) {
		scores, bad := []float64{4, 4, 4, 4}, []bool{false, true, false, true}
		tab, err := SuggestFromLabelled(scores, bad, r95, f02)
		if err != nil {
			t.Fatal(err)
		}
		checkTable(t, tab, scores, bad)
		if len(tab.Rows) != 1 || tab.Suggested.Threshold != 4 || tab.Suggested.FPR != 1 || tab.Points[1].Met == nil || *tab.Points[1].Met {
			t.Errorf("rows %+v points %+v", tab.Rows, tab.Points)
		}
	})
	t.Run("NaN score", func(t *testing.T) {
		_, err := SuggestFromLabelled([]float64{1, math.NaN(), 3, 4}, []bool{false, true, false, true}, r95)
		if err == nil || !strings.Contains(err.Error(), "1 of 4 scores are not finite (first: row 1") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("bad budgets", func(t *testing.T) {
		for _, b := range []bundle.Budget{{Kind: bundle.BudgetRecall, Value: 0}, {Kind: bundle.BudgetRecall, Value: 1.2},
			{Kind: bundle.BudgetMaxFalseReject, Value: 1}, {Kind: "yield", Value: 0.1}} {
			if _, err := SuggestFromLabelled([]float64{1, 2}, []bool{false, true}, b); err == nil {
				t.Errorf("budget %v accepted", b)
			}
		}
		if _, err := SuggestFromLabelled([]float64{1, 2}, []bool{false, true}); err == nil {
			t.Error("no budget accepted")
		}
	})
	t.Run("thinned", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 5))
		var scores []float64
		var bad []bool
		for i := 0; i < 2000; i++ {
			b := i%2 == 0
			s := rng.NormFloat64()
			if b {
				s += 1
			}
			scores, bad = append(scores, s), append(bad, b)
		}
		tab, err := SuggestFromLabelled(scores, bad, r95, f02, bundle.Budget{Kind: bundle.BudgetRecall, Value: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		checkTable(t, tab, scores, bad)
		if len(tab.Rows) < DefaultTableRows || len(tab.Rows) > DefaultTableRows+3 {
			t.Errorf("%d rows, cap %d", len(tab.Rows), DefaultTableRows)
		}
		for _, p := range tab.Points {
			if !slices.ContainsFunc(tab.Rows, func(r bundle.OperatingPoint) bool { return r.Threshold == p.Threshold }) {
				t.Errorf("requested point %v (thr %v) missing from the table", p.Budget, p.Threshold)
			}
		}
		if tab.Rows[len(tab.Rows)-1].Recall != 1 {
			t.Errorf("last row recall %v", tab.Rows[len(tab.Rows)-1].Recall)
		}
	})
}

func TestBudgets(t *testing.T) {
	b, err := Budgets([]float64{0.95, 0.99}, []float64{0.02}, "")
	if err != nil || len(b) != 3 || b[0].Kind != bundle.BudgetRecall {
		t.Fatalf("%v %v", b, err)
	}
	b, err = Budgets([]float64{0.95}, []float64{0.02}, bundle.BudgetMaxFalseReject)
	if err != nil || b[0] != (bundle.Budget{Kind: bundle.BudgetMaxFalseReject, Value: 0.02}) {
		t.Fatalf("%v %v", b, err)
	}
	if b, err = Budgets(nil, []float64{0.02}, ""); err != nil || b[0].Kind != bundle.BudgetMaxFalseReject {
		t.Fatalf("%v %v", b, err)
	}
	for _, bad := range []func() error{
		func() error { _, err := Budgets([]float64{0.95}, nil, bundle.BudgetMaxFalseReject); return err },
		func() error { _, err := Budgets([]float64{1.5}, nil, ""); return err },
		func() error { _, err := Budgets(nil, []float64{-0.1}, ""); return err },
	} {
		if bad() == nil {
			t.Error("bad budgets accepted")
		}
	}
}

func TestReadScoresCSV(t *testing.T) {
	ls, err := ReadScoresCSV(strings.NewReader("label,score\nbad,1.5\ngood,-2\n1,0.5\n# comment\n0, 3e-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []LabelledScore{{1.5, true}, {-2, false}, {0.5, true}, {0.3, false}}
	if !slices.Equal(ls, want) {
		t.Fatalf("%v", ls)
	}
	if ls, err = ReadScoresCSV(strings.NewReader("0.25,1\n0.5,0\n")); err != nil || len(ls) != 2 || !ls[0].Bad {
		t.Fatalf("no header: %v %v", ls, err)
	}
	for in, msg := range map[string]string{"1.5,maybe\n": "label \"maybe\"", "score,label\nx,1\n": "line 2: score", "1.5\n": "1 columns"} {
		if _, err := ReadScoresCSV(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err %v", in, err)
		}
	}
}

func TestPromiseReport(t *testing.T) {
	scores := []float64{1, 2, 3, 4, 5, 6, 7, 8}
	bad := []bool{false, false, false, false, true, true, true, true}
	tab, err := SuggestFromLabelled(scores, bad, bundle.Budget{Kind: bundle.BudgetRecall, Value: 1})
	if err != nil {
		t.Fatal(err)
	}
	th := tab.Threshold(CalibrationOutOfFold)
	// Held out: 3 of 4 bad parts score below the threshold, below the
	// promise's interval (recall 1 of 4 parts: low end 0.398).
	r := MeasurePromise(th, th.Suggested, []float64{1, 2, 3, 9, 4, 4, 4, 7}, bad)
	if r.Measured.Counts.Caught != 1 || r.Measured.Counts.Rejected != 1 || r.Promised.Recall != 1 || !strings.HasPrefix(r.Verdict, "broken: recall 0.250") {
		t.Errorf("report %+v verdict %q", r, r.Verdict)
	}
	if r := MeasurePromise(th, th.Suggested, scores, bad); r.Verdict != "kept" {
		t.Errorf("same data: verdict %q", r.Verdict)
	}
	old := bundle.Threshold{Suggested: 4.5, Recall: 0.95, Calibration: CalibrationTraining, Points: []bundle.OperatingPoint{{Recall: 0.95, Threshold: 4.5, FPR: 0}}}
	if r := MeasurePromise(old, 4.5, scores, bad); r.Promised.RecallCI != nil || !strings.Contains(r.Verdict, "in-sample") {
		t.Errorf("old bundle: %+v", r)
	}
}

// tireCalibration is one split of the calibration acceptance protocol.
type tireCalibration struct {
	OOFPromise, OOFHeldOut, TrainPromise, TrainHeldOut float64
	OOFFRR, TrainFRR                                   float64
}

// calibrationSplit trains on validation/good + half of every test defect
// type (drawn by seed) and measures the out-of-fold and the in-sample
// suggested thresholds (recall budget r) on test/good + the other half.
func calibrationSplit(t *testing.T, c *tireCache, o TrainOptions, seed int, r float64) tireCalibration {
	t.Helper()
	val, test := c.realRows(t, "val"), c.realRows(t, "test")
	byType := map[string][]int{}
	var goodIdx []int
	for i, s := range test.Samples {
		if s.Bad {
			byType[s.Type] = append(byType[s.Type], i)
		} else {
			goodIdx = append(goodIdx, i)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0xca1))
	var trainBad, heldBad []int
	for _, typ := range sortedKeys(byType) {
		idx := slices.Clone(byType[typ])
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		h := len(idx) / 2
		trainBad, heldBad = append(trainBad, idx[:h]...), append(heldBad, idx[h:]...)
	}
	// test/good is split too: validation/good alone scores lower than the
	// test parts (docs/fit.md), which would make every defect trivially
	// separable from the training goods and every recall 1.
	rng.Shuffle(len(goodIdx), func(a, b int) { goodIdx[a], goodIdx[b] = goodIdx[b], goodIdx[a] })
	hg := len(goodIdx) / 2
	train := val.Subset(allIdx(val.Len()))
	train.Append(test.Subset(append(slices.Clone(goodIdx[:hg]), trainBad...)))
	held := test.Subset(append(slices.Clone(goodIdx[hg:]), heldBad...))
	o.Seed = seed
	model, _, err := Train(train, o)
	if err != nil {
		t.Fatal(err)
	}
	forest, err := brf.LoadBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	var res tireCalibration
	heldScores := Score(forest, held)
	for _, m := range []string{CalibrationOutOfFold, CalibrationTraining} {
		th, err := calibrate(Options{Train: o, Recalls: []float64{r}, Calibrate: CalibrateOptions{Method: m}}, train, train, forest, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		pr := MeasurePromise(th, th.Suggested, heldScores, held.Bad())
		if m == CalibrationOutOfFold {
			if th.Folds != 5 || th.Promise == nil || th.Promise.Counts.Bad != len(trainBad) {
				t.Fatalf("out-of-fold threshold record %+v", th)
			}
			res.OOFPromise, res.OOFHeldOut, res.OOFFRR = th.Recall, pr.Measured.Recall, pr.Measured.FalseReject
		} else {
			if th.Warning == "" || th.Folds != 0 {
				t.Fatalf("in-sample threshold record %+v", th)
			}
			res.TrainPromise, res.TrainHeldOut, res.TrainFRR = th.Recall, pr.Measured.Recall, pr.Measured.FalseReject
		}
	}
	return res
}

// TestCalibrationTire is issue 14's acceptance on the real tire (cached
// PatchCore + variation rows, 3x3 grid): the out-of-fold suggested
// threshold's recall on held-out parts is within 5 points of its promise,
// while the in-sample one promises far more than it keeps. Averaged over
// splits, since one split of ~44 held-out defects alone moves recall by
// about 3 points (binomial noise). A smaller forest than the paper's keeps it
// fast; SEGAD_LONG=1 runs the paper's forest on more splits.
func TestCalibrationTire(t *testing.T) {
	if testing.Short() {
		t.Skip("real detectors on real images")
	}
	c := openTireCache(t)
	o := DefaultTrainOptions()
	o.Params.NumParallelTree, o.Params.NThread = 40, 1
	splits := 4
	if os.Getenv("SEGAD_LONG") == "1" {
		o, splits = DefaultTrainOptions(), 10
	}
	var oofP, oofH, trP, trH, oofF, trF []float64
	for s := 0; s < splits; s++ {
		r := calibrationSplit(t, c, o, s, 0.95)
		t.Logf("split %d: out-of-fold promise %.3f held-out %.3f (FRR %.3f); in-sample promise %.3f held-out %.3f (FRR %.3f)",
			s, r.OOFPromise, r.OOFHeldOut, r.OOFFRR, r.TrainPromise, r.TrainHeldOut, r.TrainFRR)
		oofP, oofH, trP, trH = append(oofP, r.OOFPromise), append(oofH, r.OOFHeldOut), append(trP, r.TrainPromise), append(trH, r.TrainHeldOut)
		oofF, trF = append(oofF, r.OOFFRR), append(trF, r.TrainFRR)
	}
	mp, _ := meanStd(oofP)
	mh, sh := meanStd(oofH)
	tp, _ := meanStd(trP)
	th, sth := meanStd(trH)
	of, _ := meanStd(oofF)
	tf, _ := meanStd(trF)
	t.Logf("recall budget 0.95, %d splits, %d trees: out-of-fold promise %.3f, held-out %.3f ± %.3f (FRR %.3f); in-sample promise %.3f, held-out %.3f ± %.3f (FRR %.3f)",
		splits, o.Params.NumParallelTree*o.Rounds, mp, mh, sh, of, tp, th, sth, tf)
	if math.Abs(mh-mp) > 0.05 {
		t.Errorf("out-of-fold: held-out recall %.3f is more than 5 points from the promised %.3f", mh, mp)
	}
	if tp-th <= 0.05 {
		t.Errorf("in-sample: held-out recall %.3f is within 5 points of the promised %.3f (expected the in-sample promise to be optimistic)", th, tp)
	}
}

// TestFitCalibrationDefault: `segad fit` without --cv calibrates
// out-of-fold, with fewer folds than 5 when there are few bad images (and
// says why); --calibration training is labelled and warned about; a
// false-reject budget gives the threshold when it is the primary one; eval
// sets the promise next to the measured rates.
func TestFitCalibrationDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	if err := xgboost.Open(); err != nil {
		t.Skip(err)
	}
	dir, cfg := tireSetup(t, 8, 2) // 8 good, 4 bad (2 cut, 2 hole)
	run := func(name string, c CalibrateOptions) *bundle.Manifest {
		out := filepath.Join(dir, name)
		if _, err := Run(Options{Config: cfg, Good: filepath.Join(dir, "good"), Bad: filepath.Join(dir, "bad"), Out: out,
			Train: smallTrain(), ToolVersion: "test", Calibrate: c}); err != nil {
			t.Fatal(err)
		}
		b, err := bundle.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		return b.Manifest
	}
	m := run("oof", CalibrateOptions{})
	th := m.Threshold
	if th.Calibration != CalibrationOutOfFold || th.Folds != 4 || !strings.Contains(th.FoldsNote, "only 4 bad images") || th.Warning != "" {
		t.Errorf("default calibration: %s, %d folds (%q), warning %q", th.Calibration, th.Folds, th.FoldsNote, th.Warning)
	}
	if th.Promise == nil || th.Promise.Counts.Bad != 4 || th.Promise.Counts.Good != 8 || th.Interval != IntervalMethod || th.Confidence != 0.95 ||
		len(th.Table) == 0 || len(th.Points) != 2 || th.Budget == nil || *th.Budget != (bundle.Budget{Kind: bundle.BudgetRecall, Value: 0.95}) ||
		th.Suggested != th.Promise.Threshold || th.Recall != th.Promise.Recall {
		t.Errorf("threshold record %+v", th)
	}
	if ms := m.Baseline["ms"]; len(ms) != 2 || ms[0].Budget == nil || !sameBudget(ms[0], th) {
		t.Errorf("baseline points %+v", ms)
	}
	if m := run("train", CalibrateOptions{Method: CalibrationTraining}); m.Threshold.Calibration != CalibrationTraining ||
		m.Threshold.Folds != 0 || !strings.Contains(m.Threshold.Warning, "in-sample") {
		t.Errorf("training calibration: %+v", m.Threshold)
	}
	m = run("yield", CalibrateOptions{MaxFalseReject: []float64{0.25}, Primary: bundle.BudgetMaxFalseReject})
	if b := m.Threshold.Budget; b == nil || b.Kind != bundle.BudgetMaxFalseReject || len(m.Threshold.Points) != 3 ||
		(m.Threshold.Promise.FPR > 0.25 && (m.Threshold.Promise.Met == nil || *m.Threshold.Promise.Met)) {
		t.Errorf("yield budget: %+v", m.Threshold)
	}
	res, err := EvaluateBundle(EvaluateOptions{Bundle: filepath.Join(dir, "oof"), Config: cfg, Good: filepath.Join(dir, "testgood"), Bad: filepath.Join(dir, "testbad"), Report: filepath.Join(dir, "report")})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Promise
	if p == nil || p.Measured.Counts.Bad != 4 || p.Measured.Counts.Good != 8 || p.Measured.Recall != res.Recall || p.Measured.FalseReject != res.FPR ||
		p.Promised.RecallCI == nil || p.Verdict == "" || p.Calibration != CalibrationOutOfFold {
		t.Errorf("eval promise %+v", p)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report", "summary.md"))
	if !strings.Contains(string(md), "| promised |") || !strings.Contains(string(md), "calibration: out-of-fold") {
		t.Errorf("summary.md has no promise table:\n%s", md)
	}
	t.Logf("eval promise: %s; promised recall %.3f %+v, measured %.3f %+v", p.Verdict, p.Promised.Recall, *p.Promised.RecallCI, p.Measured.Recall, *p.Measured.RecallCI)
}

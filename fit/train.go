package fit

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"

	"github.com/segad-edge/segad-edge/segad"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/metrics"
)

// DefaultRecalls are the operating points a bundle records; the first is
// the suggested threshold's.
var DefaultRecalls = []float64{0.95, 0.99}

// TrainOptions are the forest's hyper-parameters and seeding.
type TrainOptions struct {
	// Params are XGBoost's parameters (xgboost.DefaultParams: the paper's).
	// ScalePosWeight 0 means n_good/n_bad of the training rows, as the
	// reference sets it; Seed is overwritten by Seed below.
	Params xgboost.Params
	// Rounds is the number of boosting rounds (default xgboost.DefaultRounds).
	Rounds int
	// Seed seeds XGBoost's sampling, subset choice and fold assignment.
	Seed int
}

// DefaultTrainOptions returns the paper's BRF.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{Params: xgboost.DefaultParams(), Rounds: xgboost.DefaultRounds}
}

// Train fits the forest on d and returns the XGBoost JSON model and the
// parameters actually used (scale_pos_weight filled in).
func Train(d *Dataset, o TrainOptions) ([]byte, xgboost.Params, error) {
	labels := d.Labels()
	spw, err := xgboost.ScalePosWeight(labels)
	if err != nil {
		return nil, o.Params, fmt.Errorf("train: %w", err)
	}
	if d.Weights != nil {
		// The paper balances the classes by count; with weighted rows
		// (synthetic defects next to real ones) balance by weight.
		var wg, wb float64
		for i, l := range labels {
			if l == 1 {
				wb += float64(d.Weights[i])
			} else {
				wg += float64(d.Weights[i])
			}
		}
		if !(wb > 0) {
			return nil, o.Params, fmt.Errorf("train: the bad rows weigh %g", wb)
		}
		spw = wg / wb
	}
	p := o.Params
	if p.ScalePosWeight == 0 {
		p.ScalePosWeight = spw
	}
	p.Seed = o.Seed
	rounds := o.Rounds
	if rounds == 0 {
		rounds = xgboost.DefaultRounds
	}
	model, err := xgboost.TrainWeighted(d.Rows, d.Len(), d.NCols, labels, d.Weights, p, rounds)
	if err != nil {
		return nil, p, fmt.Errorf("train: %w", err)
	}
	return model, p, nil
}

// Score returns the forest's raw margins for every row of d.
func Score(model brf.Model, d *Dataset) []float64 {
	out := make([]float64, d.Len())
	for i := range out {
		out[i] = model.Margin(d.Row(i))
	}
	return out
}

// BaselineScores returns detector k's map maxima for every row.
func BaselineScores(d *Dataset, k int) []float64 {
	n := len(d.Detectors)
	out := make([]float64, d.Len())
	for i := range out {
		out[i] = float64(d.Max[i*n+k])
	}
	return out
}

// OperatingPoints returns, for each recall, the threshold that keeps it
// (the reference's rule: the (1-recall) linear quantile of the bad scores)
// and the share of good parts at or above it.
func OperatingPoints(scores []float64, bad []bool, recalls []float64) ([]bundle.OperatingPoint, error) {
	out := make([]bundle.OperatingPoint, len(recalls))
	for i, r := range recalls {
		if !(r > 0 && r <= 1) {
			return nil, fmt.Errorf("recall %v: want a share in (0, 1]", r)
		}
		fpr, thr, err := metrics.FPRAtTPR(scores, bad, r)
		if err != nil {
			return nil, err
		}
		out[i] = bundle.OperatingPoint{Recall: r, Threshold: thr, FPR: fpr}
	}
	return out, nil
}

// ParamsMap renders params as the key/value pairs recorded in a manifest.
func ParamsMap(p xgboost.Params) map[string]string {
	m := map[string]string{
		"booster": "gbtree", "num_parallel_tree": fmt.Sprint(p.NumParallelTree), "eta": fmt.Sprint(p.Eta),
		"max_depth": fmt.Sprint(p.MaxDepth), "subsample": fmt.Sprint(p.Subsample),
		"colsample_bytree": fmt.Sprint(p.ColsampleByTree), "colsample_bynode": fmt.Sprint(p.ColsampleByNode),
		"reg_alpha": fmt.Sprint(p.RegAlpha), "objective": p.Objective, "tree_method": p.TreeMethod,
		"seed": fmt.Sprint(p.Seed), "scale_pos_weight": fmt.Sprint(p.ScalePosWeight),
	}
	for k, v := range p.Extra {
		m[k] = v
	}
	return m
}

// LimitBad returns the indices of d keeping every good row, every
// synthetic defect and at most limit real bad rows drawn at random (limit <=
// 0 keeps all), in index order.
func LimitBad(d *Dataset, idx []int, limit int, rng *rand.Rand) []int {
	if limit <= 0 {
		return idx
	}
	var good, bad []int
	for _, i := range idx {
		if d.Samples[i].Bad && d.Samples[i].Kind == "" {
			bad = append(bad, i)
		} else {
			good = append(good, i)
		}
	}
	if len(bad) <= limit {
		return idx
	}
	rng.Shuffle(len(bad), func(a, b int) { bad[a], bad[b] = bad[b], bad[a] })
	out := append(good, bad[:limit]...)
	sort.Ints(out)
	return out
}

// Metrics are one score's separation on labelled data.
type Metrics struct {
	AUROC      float64 `json:"auroc"`
	FPRAt95TPR float64 `json:"fpr_at_95tpr"`
}

func metricsOf(scores []float64, bad []bool) (Metrics, error) {
	a, err := metrics.AUROC(scores, bad)
	if err != nil {
		return Metrics{}, err
	}
	f, _, err := metrics.FPRAt95TPR(scores, bad)
	if err != nil {
		return Metrics{}, err
	}
	return Metrics{AUROC: a, FPRAt95TPR: f}, nil
}

// CVReport is the result of cross-validation, repeated over seeds.
type CVReport struct {
	// Folds is K; Seeds is the number of repetitions; BadLimit the number of
	// bad rows each training fold kept (0: all).
	Folds    int `json:"folds"`
	Seeds    int `json:"seeds"`
	BadLimit int `json:"bad_limit,omitempty"`
	// PerSeed are the pooled out-of-fold metrics of each repetition.
	PerSeed []Metrics `json:"per_seed"`
	// FoldAUROC are the per-fold AUROCs of every repetition (folds that
	// hold both classes).
	FoldAUROC []float64 `json:"fold_auroc"`
	// Mean and Std are across repetitions (across folds when Seeds is 1).
	AUROCMean      float64 `json:"auroc_mean"`
	AUROCStd       float64 `json:"auroc_std"`
	FPRAt95TPRMean float64 `json:"fpr_at_95tpr_mean"`
	// Baseline is the detector-alone pooled metric per detector (first seed).
	Baseline map[string]Metrics `json:"baseline"`
	// OOFScores are the first repetition's out-of-fold scores, row order.
	OOFScores []float64 `json:"-"`
}

// CrossValidate trains on K-1 folds and scores the held-out fold, for
// seeds repetitions (seed o.Seed+s: fold assignment, bad subset, XGBoost).
// Folds are stratified by class. With badLimit > 0 each training fold keeps
// only that many bad rows at random (low-shot), while held-out folds keep
// all, so the metric is the low-shot model's on unseen parts.
func CrossValidate(d *Dataset, o TrainOptions, k, seeds, badLimit int) (*CVReport, error) {
	if k < 2 {
		return nil, fmt.Errorf("cross-validation needs at least 2 folds, got %d", k)
	}
	if seeds < 1 {
		seeds = 1
	}
	bad := d.Bad()
	var nGood, nBad int
	for _, b := range bad {
		if b {
			nBad++
		} else {
			nGood++
		}
	}
	if nGood < k || nBad < k {
		return nil, fmt.Errorf("%d-fold cross-validation needs at least %d images per class, have %d good and %d bad", k, k, nGood, nBad)
	}
	r := &CVReport{Folds: k, Seeds: seeds, BadLimit: badLimit, Baseline: map[string]Metrics{}}
	for s := 0; s < seeds; s++ {
		rng := rand.New(rand.NewPCG(uint64(o.Seed+s), 0xc0ffee))
		fold := stratifiedFolds(bad, k, rng)
		oof := make([]float64, d.Len())
		for f := 0; f < k; f++ {
			var train, test []int
			for i, fi := range fold {
				if fi == f {
					test = append(test, i)
				} else {
					train = append(train, i)
				}
			}
			train = LimitBad(d, train, badLimit, rng)
			to := o
			to.Seed = o.Seed + s
			model, _, err := Train(d.Subset(train), to)
			if err != nil {
				return nil, fmt.Errorf("seed %d fold %d: %w", s, f, err)
			}
			m, err := brf.LoadBytes(model)
			if err != nil {
				return nil, fmt.Errorf("seed %d fold %d: %w", s, f, err)
			}
			ts := d.Subset(test)
			sc := Score(m, ts)
			for j, i := range test {
				oof[i] = sc[j]
			}
			if a, err := metrics.AUROC(sc, ts.Bad()); err == nil {
				r.FoldAUROC = append(r.FoldAUROC, a)
			}
		}
		met, err := metricsOf(oof, bad)
		if err != nil {
			return nil, err
		}
		r.PerSeed = append(r.PerSeed, met)
		if s == 0 {
			r.OOFScores = oof
			for j, n := range d.Detectors {
				if bm, err := metricsOf(BaselineScores(d, j), bad); err == nil {
					r.Baseline[n] = bm
				}
			}
		}
	}
	var aucs, fprs []float64
	for _, m := range r.PerSeed {
		aucs = append(aucs, m.AUROC)
		fprs = append(fprs, m.FPRAt95TPR)
	}
	if seeds == 1 {
		aucs = r.FoldAUROC
	}
	r.AUROCMean, r.AUROCStd = meanStd(aucs)
	r.FPRAt95TPRMean, _ = meanStd(fprs)
	return r, nil
}

// stratifiedFolds assigns each row a fold so every fold holds about 1/k of
// each class.
func stratifiedFolds(bad []bool, k int, rng *rand.Rand) []int {
	fold := make([]int, len(bad))
	for _, cls := range []bool{false, true} {
		var idx []int
		for i, b := range bad {
			if b == cls {
				idx = append(idx, i)
			}
		}
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		for j, i := range idx {
			fold[i] = j % k
		}
	}
	return fold
}

// meanStd returns the mean and the sample standard deviation (0 for one value).
func meanStd(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	if len(xs) == 1 {
		return m, 0
	}
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)-1))
}

// ExtractRows computes feature rows for precomputed maps (k maps per row,
// row-major in maps) on workers goroutines (0: GOMAXPROCS), one Extractor
// each, since an Extractor keeps scratch space and is not safe for
// concurrent use.
func ExtractRows(maps [][]float32, k int, mask *segad.Mask, detectors []string, workers int) ([]float32, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	n := len(maps) / k
	probe, err := segad.NewExtractor(mask, detectors, "")
	if err != nil {
		return nil, err
	}
	nc := probe.NumFeatures()
	rows := make([]float32, n*nc)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ex := probe
			if w > 0 {
				if ex, errs[w] = segad.NewExtractor(mask, detectors, ""); errs[w] != nil {
					return
				}
			}
			for i := w; i < n; i += workers {
				if err := ex.Extract(rows[i*nc:(i+1)*nc], maps[i*k:(i+1)*k], 0); err != nil {
					errs[w] = fmt.Errorf("row %d: %w", i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	return rows, errors.Join(errs...)
}

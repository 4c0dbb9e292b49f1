package metrics

import (
	"encoding/json"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Labels of a part in the result history's vocabulary (history's label
// column; `segad results label`).
const (
	// LabelBad is a confirmed defect.
	LabelBad = "bad"
	// LabelGood is a false reject or a good part.
	LabelGood = "good"
)

// DefaultConfidence is the level of WhatIf's intervals when none is given.
const DefaultConfidence = 0.95

// Part is one recent part as the threshold page sees it.
type Part struct {
	// Score is the forest's score (non-finite: the part could not be
	// judged; it fails closed whatever the threshold).
	Score float64
	// Label is "" (unlabelled), LabelBad or LabelGood.
	Label string
}

// WhatIf is what a threshold would have done to a set of recent parts:
// how many it rejects and, on the labelled ones, its recall (defects
// rejected) and false-reject rate (good parts rejected) with exact
// (Clopper-Pearson) intervals. A rate without labelled parts of its class
// is 0 in Go and null in JSON (see MarshalJSON), never NaN.
type WhatIf struct {
	// Threshold is the threshold judged: a part is rejected at score >= it,
	// result.Decide's rule.
	Threshold float64
	// N counts the parts, Rejected those the threshold rejects (parts that
	// could not be scored included: they fail closed).
	N, Rejected int
	// Unscored counts parts without a finite score (rejected whatever the
	// threshold).
	Unscored int
	// Defects and Good count the labelled parts of each class.
	Defects, Good int
	// Recall is the share of labelled defects rejected, with its interval.
	Recall, RecallLo, RecallHi float64
	// FalseReject is the share of labelled good parts rejected, with its
	// interval.
	FalseReject, FalseRejectLo, FalseRejectHi float64
	// Confidence is the intervals' level.
	Confidence float64
}

// ComputeWhatIf applies threshold to parts the way result.Decide does
// (score >= threshold rejects; a non-finite score, or a non-finite
// threshold, fails closed and so rejects) and reports the counts, recall
// and false-reject rate with Clopper-Pearson intervals at confidence
// (outside (0, 1): DefaultConfidence).
func ComputeWhatIf(parts []Part, threshold, confidence float64) WhatIf {
	if !(confidence > 0 && confidence < 1) {
		confidence = DefaultConfidence
	}
	w := WhatIf{Threshold: threshold, N: len(parts), Confidence: confidence}
	badThreshold := math.IsNaN(threshold) || math.IsInf(threshold, 0)
	var caught, falseRej int
	for _, p := range parts {
		finite := !math.IsNaN(p.Score) && !math.IsInf(p.Score, 0)
		if !finite {
			w.Unscored++
		}
		rejected := badThreshold || !finite || p.Score >= threshold
		if rejected {
			w.Rejected++
		}
		switch p.Label {
		case LabelBad:
			w.Defects++
			if rejected {
				caught++
			}
		case LabelGood:
			w.Good++
			if rejected {
				falseRej++
			}
		}
	}
	if w.Defects > 0 {
		w.Recall = float64(caught) / float64(w.Defects)
		w.RecallLo, w.RecallHi = ClopperPearson(caught, w.Defects, confidence)
	}
	if w.Good > 0 {
		w.FalseReject = float64(falseRej) / float64(w.Good)
		w.FalseRejectLo, w.FalseRejectHi = ClopperPearson(falseRej, w.Good, confidence)
	}
	return w
}

// whatIfJSON is WhatIf on the wire: rates without parts of their class are
// null, and so is a threshold that is not a finite number.
type whatIfJSON struct {
	Threshold     *float64 `json:"threshold"`
	N             int      `json:"n"`
	Rejected      int      `json:"rejected"`
	Unscored      int      `json:"unscored"`
	Defects       int      `json:"defects"`
	Good          int      `json:"good"`
	Recall        *float64 `json:"recall"`
	RecallLo      *float64 `json:"recall_lo"`
	RecallHi      *float64 `json:"recall_hi"`
	FalseReject   *float64 `json:"false_reject"`
	FalseRejectLo *float64 `json:"false_reject_lo"`
	FalseRejectHi *float64 `json:"false_reject_hi"`
	Confidence    float64  `json:"confidence"`
}

func finitePtr(v float64, ok bool) *float64 {
	if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// MarshalJSON writes snake_case keys; rates of a class without labelled
// parts are null (JSON has no NaN, and 0 would read as "none rejected").
func (w WhatIf) MarshalJSON() ([]byte, error) {
	d, g := w.Defects > 0, w.Good > 0
	return json.Marshal(whatIfJSON{
		Threshold: finitePtr(w.Threshold, true), N: w.N, Rejected: w.Rejected, Unscored: w.Unscored,
		Defects: w.Defects, Good: w.Good,
		Recall: finitePtr(w.Recall, d), RecallLo: finitePtr(w.RecallLo, d), RecallHi: finitePtr(w.RecallHi, d),
		FalseReject: finitePtr(w.FalseReject, g), FalseRejectLo: finitePtr(w.FalseRejectLo, g),
		FalseRejectHi: finitePtr(w.FalseRejectHi, g), Confidence: w.Confidence,
	})
}

// ClopperPearson returns the exact (Clopper-Pearson) two-sided confidence
// interval of a binomial share with k successes in n trials: the
// Beta(k, n-k+1) and Beta(k+1, n-k) quantiles at (1-conf)/2 and
// 1-(1-conf)/2, as scipy.stats.binomtest(k, n).proportion_ci(conf,
// "exact"). Its coverage is at least conf for every true share, which suits
// a promise; it is wider than Wilson's. n = 0 gives [0, 1].
func ClopperPearson(k, n int, conf float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	a := (1 - conf) / 2
	lo, hi = 0, 1
	if k > 0 {
		lo = distuv.Beta{Alpha: float64(k), Beta: float64(n - k + 1)}.Quantile(a)
	}
	if k < n {
		hi = distuv.Beta{Alpha: float64(k + 1), Beta: float64(n - k)}.Quantile(1 - a)
	}
	return lo, hi
}

// Histogram counts the finite scores in bins equal-width bins between the
// smallest and the largest, as numpy.histogram(scores, bins) does: edges
// has bins+1 values, each bin holds [edge_i, edge_i+1) and the last one
// also its upper edge. All scores equal: the range is that value ± 0.5
// (numpy's rule). No finite score or bins < 1: nil, nil.
func Histogram(scores []float64, bins int) (edges []float64, counts []int) {
	if bins < 1 {
		return nil, nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range scores {
		if s-s != 0 { // NaN or ±Inf
			continue
		}
		if s < lo {
			lo = s
		}
		if s > hi {
			hi = s
		}
	}
	if lo > hi {
		return nil, nil
	}
	if lo == hi {
		lo, hi = lo-0.5, hi+0.5
	}
	edges = make([]float64, bins+1)
	for i := range edges {
		edges[i] = lo + (hi-lo)*float64(i)/float64(bins)
	}
	edges[bins] = hi
	counts = make([]int, bins)
	norm := float64(bins) / (hi - lo)
	for _, s := range scores {
		if s-s != 0 {
			continue
		}
		i := int((s - lo) * norm)
		if i >= bins {
			i = bins - 1
		}
		// The division can land one bin off an edge: settle against the
		// edges themselves, as numpy does.
		if i > 0 && s < edges[i] {
			i--
		} else if i < bins-1 && s >= edges[i+1] {
			i++
		}
		counts[i]++
	}
	return edges, counts
}

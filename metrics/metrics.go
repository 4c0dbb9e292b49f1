// Package metrics measures how well scores separate good from bad parts: the
// classification AUROC and FPR at 95% TPR exactly as the SegAD reference
// defines them, and threshold suggestions at a chosen recall.
package metrics

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// AUROC returns the area under the ROC curve of scores for labels (true =
// bad, the positive class), with sklearn's roc_auc_score semantics: the
// probability that a random bad part scores above a random good one, ties
// counting half. It errs when a class is missing or a score is NaN.
func AUROC(scores []float64, bad []bool) (float64, error) {
	if len(scores) != len(bad) {
		return 0, fmt.Errorf("auroc: %d scores but %d labels", len(scores), len(bad))
	}
	type sl struct {
		s   float64
		bad bool
	}
	v := make([]sl, len(scores))
	var nBad int
	for i, s := range scores {
		if math.IsNaN(s) {
			return 0, fmt.Errorf("auroc: score %d is NaN", i)
		}
		v[i] = sl{s, bad[i]}
		if bad[i] {
			nBad++
		}
	}
	nGood := len(v) - nBad
	if nBad == 0 || nGood == 0 {
		return 0, errors.New("auroc: needs both good and bad parts")
	}
	sort.Slice(v, func(i, j int) bool { return v[i].s < v[j].s })
	// Mann-Whitney U with mid-ranks for ties.
	var rankSumBad float64
	for i := 0; i < len(v); {
		j := i
		for j < len(v) && v[j].s == v[i].s {
			j++
		}
		mid := float64(i+j+1) / 2 // ranks i+1..j, averaged
		for k := i; k < j; k++ {
			if v[k].bad {
				rankSumBad += mid
			}
		}
		i = j
	}
	u := rankSumBad - float64(nBad)*float64(nBad+1)/2
	return u / (float64(nBad) * float64(nGood)), nil
}

// Quantile is numpy's default (linear) quantile of xs at q in [0,1].
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	h := float64(len(s)-1) * q
	i := int(math.Floor(h))
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (h-float64(i))*(s[i+1]-s[i])
}

// FPRAt95TPR is the reference implementation's FPR@95TPR: the threshold is
// the 5% linear quantile of the bad parts' scores, and the result is the
// share of good parts scoring at or above it.
func FPRAt95TPR(scores []float64, bad []bool) (fpr, threshold float64, err error) {
	return FPRAtTPR(scores, bad, 0.95)
}

// FPRAtTPR generalises FPRAt95TPR to any recall.
func FPRAtTPR(scores []float64, bad []bool, tpr float64) (fpr, threshold float64, err error) {
	if len(scores) != len(bad) {
		return 0, 0, fmt.Errorf("fpr: %d scores but %d labels", len(scores), len(bad))
	}
	var b, g []float64
	for i, s := range scores {
		if bad[i] {
			b = append(b, s)
		} else {
			g = append(g, s)
		}
	}
	if len(b) == 0 || len(g) == 0 {
		return 0, 0, errors.New("fpr: needs both good and bad parts")
	}
	// Round 1-tpr so that 0.95 gives exactly numpy's q=0.05 (1-0.95 is
	// 0.05000000000000004 in binary floating point).
	threshold = Quantile(b, math.Round((1-tpr)*1e9)/1e9)
	var n int
	for _, s := range g {
		if s >= threshold {
			n++
		}
	}
	return float64(n) / float64(len(g)), threshold, nil
}

// RecallAtFPR is the share of bad parts caught when the threshold is set to
// fail the given share of good parts (the threshold is the good scores'
// 1-fpr linear quantile; a part fails when it scores above it): scores
// compared at one false-reject rate, independent of where a threshold was
// put. NaN when a class is missing.
func RecallAtFPR(scores []float64, bad []bool, fpr float64) float64 {
	var g []float64
	for i, x := range scores {
		if !bad[i] {
			g = append(g, x)
		}
	}
	if len(g) == 0 {
		return math.NaN()
	}
	thr := Quantile(g, 1-fpr)
	var n, caught int
	for i, x := range scores {
		if bad[i] {
			n++
			if x > thr {
				caught++
			}
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return float64(caught) / float64(n)
}

package drift

import (
	"math"
	"sort"

	"github.com/segad-edge/segad-edge/bundle"
)

// Epsilon replaces an empty bin's share (on either side) in the PSI sum:
// ln(0) is undefined, and a bin the window has not filled yet must weigh
// as "very rare", not as infinitely surprising. 1e-4 is the usual choice
// for PSI; with the default window of 500 parts one part is a share of
// 2e-3, well above it, so real counts are never masked.
const Epsilon = 1e-4

// DefaultBins is the number of quantile bins of a reference (deciles of
// the good training parts): PSI's conventional 10, which keeps at least
// a few dozen training parts per bin on a typical fit of a few hundred
// good parts.
const DefaultBins = 10

// Distribution computes a feature's reference bins from the good training
// parts' values: inner edges at the numpy-linear quantiles k/bins (k = 1 ..
// bins-1), ties merged (a feature that is often exactly 0, say an empty
// segment, gives fewer bins), and the share of values per bin counted with
// the same rule the monitor uses (Bin), so shares are exact, not assumed
// 1/bins. NaN values (skewness, kurtosis of a constant segment) get a bin
// of their own (nan). With no finite value at all, edges is empty and all
// finite mass would be one bin.
func Distribution(values []float64, bins int) (edges, shares []float64, nan float64) {
	finite := make([]float64, 0, len(values))
	for _, v := range values {
		if !math.IsNaN(v) {
			finite = append(finite, v)
		}
	}
	n := float64(len(values))
	if n == 0 {
		return nil, []float64{1}, 0
	}
	nan = float64(len(values)-len(finite)) / n
	sort.Float64s(finite)
	for k := 1; k < bins && len(finite) > 0; k++ {
		e := sortedQuantile(finite, float64(k)/float64(bins))
		if math.IsInf(e, 0) {
			continue
		}
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	shares = make([]float64, len(edges)+1)
	for _, v := range finite {
		shares[Bin(edges, v)]++
	}
	for i := range shares {
		shares[i] /= n
	}
	return edges, shares, nan
}

// sortedQuantile is numpy's linear quantile of sorted s.
func sortedQuantile(s []float64, q float64) float64 {
	h := float64(len(s)-1) * q
	i := int(math.Floor(h))
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (h-float64(i))*(s[i+1]-s[i])
}

// Bin is the bin of a finite value: the number of edges below v
// (numpy.searchsorted(edges, v, side="left")); NaN has no bin here (the
// caller counts it in the NaN bin).
func Bin(edges []float64, v float64) int {
	// A linear scan beats a binary search on ten edges and is branch-cheap.
	i := 0
	for i < len(edges) && edges[i] < v {
		i++
	}
	return i
}

// PSI is the population stability index of observed bin counts (the
// finite bins, then the NaN bin as the last element) against a reference:
// sum over bins of (a - e) * ln(a / e), a the observed share, e the
// reference share, each at least Epsilon.
func PSI(f *bundle.DriftFeature, counts []int, total int) float64 {
	if total <= 0 {
		return 0
	}
	n := float64(total)
	psi := 0.0
	for i, e := range f.Shares {
		psi += psiTerm(float64(counts[i])/n, e)
	}
	return psi + psiTerm(float64(counts[len(f.Shares)])/n, f.NaN)
}

func psiTerm(a, e float64) float64 {
	a, e = max(a, Epsilon), max(e, Epsilon)
	if a == e {
		return 0
	}
	return (a - e) * math.Log(a/e)
}

package brf

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Contribution is one named share of a margin, in logit units: positive
// pushes the score toward "bad".
type Contribution struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// WholeMap is the per-segment table's group for the per-detector maxima of
// the whole map ("<detector>.max"), which belong to no one segment. The
// parentheses and space keep it apart from any segment name.
const WholeMap = "(whole map)"

// statNames are the per-segment statistics of SegAD's feature names.
var statNames = []string{"q995", "skew", "kurtosis", "mean"}

// Groups maps a model's feature columns to the segments and detectors they
// describe, from SegAD's feature names (segad.FeatureNames):
//
//	<segment>.<detector>.q995|skew|kurtosis|mean   segment and detector
//	<detector>.max                                 WholeMap and detector
//	<extra>.score                                  its own group in both tables
//
// Groups appear in the order of their first column (mask order, then
// detector order). Immutable and safe for concurrent use.
type Groups struct {
	features  []string
	segments  []string
	detectors []string
	segOf     []int32 // per feature: index into segments
	detOf     []int32 // per feature: index into detectors
}

// NewGroups reads the feature names of a model's columns, in row order.
func NewGroups(featureNames []string) (*Groups, error) {
	if len(featureNames) == 0 {
		return nil, fmt.Errorf("explain groups: no feature names")
	}
	g := &Groups{
		features: slices.Clone(featureNames),
		segOf:    make([]int32, len(featureNames)),
		detOf:    make([]int32, len(featureNames)),
	}
	seen := make(map[string]bool, len(featureNames))
	segIdx, detIdx := map[string]int32{}, map[string]int32{}
	group := func(names *[]string, idx map[string]int32, name string) int32 {
		i, ok := idx[name]
		if !ok {
			i = int32(len(*names))
			idx[name] = i
			*names = append(*names, name)
		}
		return i
	}
	for j, name := range featureNames {
		if seen[name] {
			return nil, fmt.Errorf("explain groups: feature %d name %q appears twice", j, name)
		}
		seen[name] = true
		p := strings.Split(name, ".")
		ok := !slices.Contains(p, "")
		var seg, det string
		switch {
		case ok && len(p) == 3 && slices.Contains(statNames, p[2]):
			seg, det = p[0], p[1]
		case ok && len(p) == 2 && p[1] == "max":
			seg, det = WholeMap, p[0]
		case ok && len(p) == 2 && p[1] == "score":
			seg, det = name, name
		default:
			return nil, fmt.Errorf("explain groups: feature %d name %q: want <segment>.<detector>.q995|skew|kurtosis|mean, <detector>.max or <extra>.score (SegAD's feature names)", j, name)
		}
		g.segOf[j] = group(&g.segments, segIdx, seg)
		g.detOf[j] = group(&g.detectors, detIdx, det)
	}
	return g, nil
}

// Features returns the feature names, in row order. Do not modify.
func (g *Groups) Features() []string { return g.features }

// Segments returns the per-segment table's group names: the segments, then
// WholeMap and the extra score where the model has them. Do not modify.
func (g *Groups) Segments() []string { return g.segments }

// Detectors returns the per-detector table's group names: the detectors,
// then the extra score where the model has one. Do not modify.
func (g *Groups) Detectors() []string { return g.detectors }

func (g *Groups) sum(dst, contribs []float64, of []int32, n int) []float64 {
	dst = slices.Grow(dst[:0], n)[:n]
	clear(dst)
	for j, v := range contribs[:len(of)] {
		dst[of[j]] += v
	}
	return dst
}

// SumBySegment sums per-feature contributions (a Contribs output, with or
// without the bias at the end) per Segments() group into dst, grown as
// needed, and returns it. It allocates nothing when dst has room.
func (g *Groups) SumBySegment(dst, contribs []float64) []float64 {
	return g.sum(dst, contribs, g.segOf, len(g.segments))
}

// SumByDetector is SumBySegment per Detectors() group.
func (g *Groups) SumByDetector(dst, contribs []float64) []float64 {
	return g.sum(dst, contribs, g.detOf, len(g.detectors))
}

// Ranked pairs names with values into dst (reused) and sorts it largest
// absolute value first; ties keep their order. Take the first three for a
// result's "top three".
func Ranked(dst []Contribution, names []string, values []float64) []Contribution {
	dst = dst[:0]
	for i, n := range names {
		dst = append(dst, Contribution{Name: n, Value: values[i]})
	}
	slices.SortStableFunc(dst, func(a, b Contribution) int {
		return cmp.Compare(math.Abs(b.Value), math.Abs(a.Value))
	})
	return dst
}

// Explanation is one row's margin split three ways, each table sorted
// largest absolute value first. In every table the values plus Bias add up
// to the margin.
type Explanation struct {
	Method    string         `json:"method"` // "path" or "exact"
	Bias      float64        `json:"bias"`
	Segments  []Contribution `json:"segments"`
	Detectors []Contribution `json:"detectors"`
	Features  []Contribution `json:"features"`
}

// Explain builds the tables from contribs, a Contribs output for these
// features (len(Features())+1 values, the bias last) computed by method m.
func (g *Groups) Explain(m Method, contribs []float64) (Explanation, error) {
	n := len(g.features)
	if len(contribs) != n+1 {
		return Explanation{}, fmt.Errorf("explain: %d contributions for %d features: want one per feature plus the bias (the model and the feature names disagree?)", len(contribs), n)
	}
	return Explanation{
		Method:    m.String(),
		Bias:      contribs[n],
		Segments:  Ranked(nil, g.segments, g.SumBySegment(nil, contribs)),
		Detectors: Ranked(nil, g.detectors, g.SumByDetector(nil, contribs)),
		Features:  Ranked(nil, g.features, contribs[:n]),
	}, nil
}

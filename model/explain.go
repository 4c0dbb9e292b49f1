package model

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/result"
)

// explainer is what a model needs to explain every scored frame: the
// forest's explainer (the same value as Model.Scorer, loaded once), the
// feature groups, and buffers reused frame after frame under scoreMu.
type explainer struct {
	e        *brf.Explainer
	groups   *brf.Groups
	contribs []float64 // per feature, then the bias
	seg, det []float64 // per-segment and per-detector sums
}

// newExplainer prepares explanations for scorer sc over the feature names,
// or returns nil with the reason when sc cannot be explained (not an XGBoost
// JSON forest, or names that are not SegAD's).
func newExplainer(sc Scorer, names []string) (*explainer, error) {
	e, ok := sc.(*brf.Explainer)
	if !ok || e == nil {
		return nil, brf.ErrNotExplainable
	}
	if e.NumFeatures() != len(names) {
		return nil, fmt.Errorf("explain: the forest has %d features, the model %d", e.NumFeatures(), len(names))
	}
	g, err := brf.NewGroups(names)
	if err != nil {
		return nil, err
	}
	return &explainer{e: e, groups: g, contribs: make([]float64, len(names)+1),
		seg: make([]float64, len(g.Segments())), det: make([]float64, len(g.Detectors()))}, nil
}

// setScorer installs the forest and, when it can be explained, what every
// frame's explanation needs.
func (m *Model) setScorer(sc Scorer) error {
	m.Scorer = sc
	m.explain = nil
	if sc == nil {
		return nil
	}
	x, err := newExplainer(sc, m.Extractor.Names())
	if err != nil {
		return err
	}
	m.explain = x
	return nil
}

// explainerInForce is the explainer of the forest in m.Scorer, nil when it
// cannot be explained (or Scorer was replaced by hand since).
func (m *Model) explainerInForce() *explainer {
	if x := m.explain; x != nil && m.Scorer == Scorer(x.e) {
		return x
	}
	return nil
}

// Explainable reports whether results of this model carry an explanation
// and ExplainRow works: the forest is XGBoost JSON with node covers.
func (m *Model) Explainable() bool { return m.explainerInForce() != nil }

// pathExplain is the explanation every scored frame carries: path
// attribution of row (m.row, under scoreMu) summed per segment and detector.
// The buffers are the model's; what it allocates is the result's own
// tables (one array for the three) and the Explanation.
func (x *explainer) pathExplain(row []float32) *result.Explanation {
	if err := x.e.PathContribs(row, x.contribs); err != nil {
		return nil // the row length was checked at load; never happens
	}
	n := len(x.contribs) - 1
	seg := x.groups.SumBySegment(x.seg, x.contribs)
	det := x.groups.SumByDetector(x.det, x.contribs)
	tables := make([]result.Contribution, len(seg)+len(det)+n)
	out := &result.Explanation{Method: brf.Path.String(), Bias: x.contribs[n],
		Segments:  ranked(tables[:len(seg):len(seg)], x.groups.Segments(), seg),
		Detectors: ranked(tables[len(seg):len(seg)+len(det):len(seg)+len(det)], x.groups.Detectors(), det),
		Features:  ranked(tables[len(seg)+len(det):], x.groups.Features(), x.contribs[:n]),
	}
	return out
}

// ranked fills dst (len(names) long) with names and values and sorts it
// largest absolute value first, ties in their order (as brf.Ranked).
func ranked(dst []result.Contribution, names []string, values []float64) []result.Contribution {
	for i, n := range names {
		dst[i] = result.Contribution{Name: n, Value: values[i]}
	}
	slices.SortStableFunc(dst, byAbs)
	return dst
}

func byAbs(a, b result.Contribution) int { return cmp.Compare(math.Abs(b.Value), math.Abs(a.Value)) }

// Explain splits the margin of row (features in the order of names, NaN
// missing) into a bias and contributions per segment, detector and feature
// by method ("path" or "exact"; see brf.ParseMethod), with explainer e. It
// serves `segad score --explain` and, through Model.ExplainRow, the HTTP
// API; it allocates its buffers per call.
func Explain(e *brf.Explainer, names []string, row []float32, method string) (*result.Explanation, error) {
	if e == nil {
		return nil, brf.ErrNotExplainable
	}
	g, err := brf.NewGroups(names)
	if err != nil {
		return nil, err
	}
	return explainWith(e, g, row, method)
}

func explainWith(e *brf.Explainer, g *brf.Groups, row []float32, method string) (*result.Explanation, error) {
	meth, err := brf.ParseMethod(method)
	if err != nil {
		return nil, err
	}
	if len(row) != len(g.Features()) || e.NumFeatures() != len(row) {
		return nil, fmt.Errorf("explain: a row of %d features for a forest of %d and %d feature names", len(row), e.NumFeatures(), len(g.Features()))
	}
	contribs := make([]float64, len(row)+1)
	if err := e.Contribs(meth, row, contribs); err != nil {
		return nil, err
	}
	bx, err := g.Explain(meth, contribs)
	if err != nil {
		return nil, err
	}
	return &result.Explanation{Method: bx.Method, Bias: bx.Bias,
		Segments: fromBRF(bx.Segments), Detectors: fromBRF(bx.Detectors), Features: fromBRF(bx.Features)}, nil
}

func fromBRF(t []brf.Contribution) []result.Contribution {
	out := make([]result.Contribution, len(t))
	for i, c := range t {
		out[i] = result.Contribution(c)
	}
	return out
}

// ErrFeatureMismatch is wrapped by ExplainRow's error for a recorded row
// whose feature names are not the model's (another mask, detector set or
// classifier): its values would be read as the wrong columns.
var ErrFeatureMismatch = errors.New("the recorded feature row does not match the model in force")

// ExplainRow explains a recorded feature row (a result's Features, as the
// history keeps them) with the model in force, by method "path" or "exact"
// (TreeSHAP; the default for an empty method): the HTTP API's GET
// /api/results/{id}/explain. The names must be the model's, in its order
// (else an error wrapping ErrFeatureMismatch that names the first
// difference); NaN values (null in JSON) are missing features and follow
// each split's default branch, as on the line. A forest that cannot be
// explained (LightGBM) gives an error wrapping brf.ErrNotExplainable. Safe
// for concurrent use with the line.
func (m *Model) ExplainRow(features []result.Feature, method string) (*result.Explanation, error) {
	x := m.explainerInForce()
	if x == nil {
		return nil, fmt.Errorf("explain: %w (the forest in force is not an XGBoost JSON model with node covers)", brf.ErrNotExplainable)
	}
	if method == "" {
		method = brf.Exact.String()
	}
	names := x.groups.Features()
	if len(features) == 0 {
		return nil, fmt.Errorf("explain: %w: the result has no feature row (an error verdict, or recorded without features)", ErrFeatureMismatch)
	}
	if len(features) != len(names) {
		return nil, fmt.Errorf("explain: %w: it has %d features, the model %d (recorded with another mask, detector set or classifier?)", ErrFeatureMismatch, len(features), len(names))
	}
	row := make([]float32, len(names))
	for i, f := range features {
		if f.Name != names[i] {
			return nil, fmt.Errorf("explain: %w: feature %d is %q in the row, %q in the model (recorded with another mask, detector set or classifier?)", ErrFeatureMismatch, i, f.Name, names[i])
		}
		row[i] = float32(f.Value) // NaN stays NaN: missing
	}
	return explainWith(x.e, x.groups, row, method)
}

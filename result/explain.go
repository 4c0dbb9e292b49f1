package result

import (
	"encoding/json"
	"math"
)

// Contribution is one named share of a score, in the score's logit units:
// positive pushes the part toward "bad" (fail), negative toward "good".
type Contribution struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Explanation splits a result's score (the forest's margin) into a bias and
// per-group contributions: Bias plus the values of any one table add up to
// the score. Each table is sorted largest absolute value first, so
// Segments[0] is the segment that moved the score most.
//
// Segments groups the features of one mask segment (all detectors), plus
// "(whole map)" for the per-detector map maxima and the extra classifier
// score as its own entry when the model has one; Detectors groups the
// features of one detector (all segments and its map maximum). Features is
// the per-feature table; the daemon keeps it for the history and the audit
// JSON, and the MQTT result carries only the top three segments and
// detectors.
type Explanation struct {
	// Method is "path" (path attribution, every frame) or "exact"
	// (TreeSHAP, on demand).
	Method    string         `json:"method"`
	Bias      float64        `json:"bias"`
	Segments  []Contribution `json:"segments"`
	Detectors []Contribution `json:"detectors"`
	Features  []Contribution `json:"features,omitempty"`
}

// Top returns the first n entries of a table (all of them when it is
// shorter), sharing its array.
func Top(table []Contribution, n int) []Contribution {
	if len(table) > n {
		return table[:n:n]
	}
	return table
}

// UnmarshalJSON reads a null value back as NaN.
func (c *Contribution) UnmarshalJSON(b []byte) error {
	var w wireFeature
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	c.Name, c.Value = w.Name, math.NaN()
	if w.Value != nil {
		c.Value = *w.Value
	}
	return nil
}

// MarshalJSON writes non-finite values as null, as Result does (a
// finite explanation, the normal case, is encoded as it is).
func (x Explanation) MarshalJSON() ([]byte, error) {
	type plain Explanation
	if x.finite() {
		return json.Marshal(plain(x))
	}
	type wire struct {
		Method    string        `json:"method"`
		Bias      *float64      `json:"bias"`
		Segments  []wireFeature `json:"segments"`
		Detectors []wireFeature `json:"detectors"`
		Features  []wireFeature `json:"features,omitempty"`
	}
	return json.Marshal(wire{x.Method, finite(x.Bias), wireTable(x.Segments), wireTable(x.Detectors), wireTable(x.Features)})
}

func (x *Explanation) finite() bool {
	if math.IsNaN(x.Bias) || math.IsInf(x.Bias, 0) {
		return false
	}
	for _, t := range [][]Contribution{x.Segments, x.Detectors, x.Features} {
		for _, c := range t {
			if math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
				return false
			}
		}
	}
	return true
}

func wireTable(t []Contribution) []wireFeature {
	if t == nil {
		return nil
	}
	out := make([]wireFeature, len(t))
	for i, c := range t {
		out[i] = wireFeature{c.Name, finite(c.Value)}
	}
	return out
}

// UnmarshalJSON reads a null bias back as NaN.
func (x *Explanation) UnmarshalJSON(b []byte) error {
	type plain Explanation
	type wire struct {
		*plain
		Bias *float64 `json:"bias"`
	}
	w := wire{plain: (*plain)(x)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	x.Bias = math.NaN()
	if w.Bias != nil {
		x.Bias = *w.Bias
	}
	return nil
}

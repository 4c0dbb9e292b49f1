package brf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The subset of XGBoost's JSON model schema (doc/model.schema in XGBoost) that
// prediction needs; other fields (loss_changes, sum_hessian, ...) are skipped.
type xgbFile struct {
	Learner *struct {
		GradientBooster   json.RawMessage `json:"gradient_booster"`
		LearnerModelParam struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
			NumTarget  string `json:"num_target"`
		} `json:"learner_model_param"`
		Objective struct {
			Name string `json:"name"`
		} `json:"objective"`
	} `json:"learner"`
}

type xgbBooster struct {
	Name       string          `json:"name"`
	Model      *xgbTreeModel   `json:"model"`       // gbtree
	GBTree     *xgbBooster     `json:"gbtree"`      // dart wraps a gbtree
	WeightDrop []float32String `json:"weight_drop"` // dart's per-tree weights
}

type xgbTreeModel struct {
	Trees    []xgbTree `json:"trees"`
	TreeInfo []int64   `json:"tree_info"`
}

type xgbTree struct {
	LeftChildren    []int64           `json:"left_children"`
	RightChildren   []int64           `json:"right_children"`
	SplitIndices    []int64           `json:"split_indices"`
	SplitConditions []float32String   `json:"split_conditions"`
	DefaultLeft     []flag            `json:"default_left"`
	SplitType       []int64           `json:"split_type"`
	Categories      []json.RawMessage `json:"categories"`
	BaseWeights     json.RawMessage   `json:"base_weights"`
}

// float32String parses a JSON number straight to float32: XGBoost writes
// float32 values with enough digits to round-trip, and parsing through float64
// first could round twice.
type float32String float32

func (f *float32String) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseFloat(string(b), 32)
	if err != nil {
		return fmt.Errorf("number %.40q: %w", b, err)
	}
	*f = float32String(v)
	return nil
}

// flag accepts 0/1 (XGBoost >= 1.6) and false/true (older writers).
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "0", "false":
		*f = false
	case "1", "true":
		*f = true
	default:
		return fmt.Errorf("default_left value %.40q: want 0, 1, true or false", b)
	}
	return nil
}

const (
	objLogitRaw = "binary:logitraw"
	objLogistic = "binary:logistic"
)

// loadXGBoostJSON validates an XGBoost JSON model and lays it out for Margin.
func loadXGBoostJSON(data []byte) (Model, error) {
	b, err := loadXGBoostJSONBuilder(data)
	if err != nil {
		return nil, err
	}
	return b.build(), nil
}

// loadXGBoostJSONBuilder parses and validates; the layout is chosen later.
func loadXGBoostJSONBuilder(data []byte) (*builder, error) {
	var f xgbFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse XGBoost JSON model: %w", err)
	}
	if f.Learner == nil {
		return nil, errors.New("JSON file has no \"learner\" object: not an XGBoost model saved with save_model(\"model.json\")")
	}
	l := f.Learner
	p := l.LearnerModelParam

	nFeat, err := parseCount("learner_model_param.num_feature", p.NumFeature)
	if err != nil {
		return nil, err
	}
	for _, c := range []struct{ name, v string }{{"num_class", p.NumClass}, {"num_target", p.NumTarget}} {
		if c.v == "" {
			continue
		}
		n, err := parseCount("learner_model_param."+c.name, c.v)
		if err != nil {
			return nil, err
		}
		if n > 1 {
			return nil, fmt.Errorf("model has %s=%d: only single-output binary models are supported (SegAD scores one margin per image)", c.name, n)
		}
	}

	base, err := parseBaseScore(p.BaseScore)
	if err != nil {
		return nil, err
	}
	obj := l.Objective.Name
	var baseMargin float32
	switch obj {
	case objLogitRaw:
		baseMargin = base
	case objLogistic:
		if !(base > 0 && base < 1) {
			return nil, fmt.Errorf("base_score %v is not a probability in (0,1), which %s requires", base, obj)
		}
		// XGBoost's ProbToMargin, in float32 like XGBoost.
		baseMargin = float32(-math.Log(float64(1/base - 1)))
	case "":
		return nil, errors.New("model has no objective name (learner.objective.name)")
	default:
		return nil, fmt.Errorf("objective %q is not supported: want %s (the paper's) or %s", obj, objLogitRaw, objLogistic)
	}

	if len(l.GradientBooster) == 0 {
		return nil, errors.New("model has no learner.gradient_booster")
	}
	var gb xgbBooster
	if err := json.Unmarshal(l.GradientBooster, &gb); err != nil {
		return nil, fmt.Errorf("parse learner.gradient_booster: %w", err)
	}
	var weights []float32String
	switch gb.Name {
	case "gbtree":
	case "dart":
		// dart predicts with its stored per-tree weights; folding them into
		// the leaves makes it an ordinary forest at inference time.
		if gb.GBTree == nil {
			return nil, errors.New("dart booster has no \"gbtree\" object")
		}
		weights = gb.WeightDrop
		gb = *gb.GBTree
		if gb.Name != "" && gb.Name != "gbtree" {
			return nil, fmt.Errorf("dart booster wraps %q, want gbtree", gb.Name)
		}
	case "gblinear":
		return nil, errors.New("booster gblinear (a linear model) is not supported: SegAD needs a tree booster (gbtree), as the paper's BRF")
	case "":
		return nil, errors.New("learner.gradient_booster has no name")
	default:
		return nil, fmt.Errorf("booster %q is not supported: want gbtree (or dart)", gb.Name)
	}
	if gb.Model == nil {
		return nil, errors.New("gradient_booster has no \"model\" object")
	}
	trees := gb.Model.Trees
	if len(trees) == 0 {
		return nil, errors.New("model has no trees")
	}
	for i, g := range gb.Model.TreeInfo {
		if g != 0 {
			return nil, fmt.Errorf("tree %d belongs to output group %d: only single-output binary models are supported", i, g)
		}
	}
	if weights != nil && len(weights) != len(trees) {
		return nil, fmt.Errorf("dart weight_drop has %d weights for %d trees", len(weights), len(trees))
	}

	b := newBuilder(nFeat, baseMargin)
	for i := range trees {
		w := float32(1)
		if weights != nil {
			w = float32(weights[i])
		}
		if err := b.addXGBTree(&trees[i], w); err != nil {
			return nil, fmt.Errorf("tree %d: %w", i, err)
		}
	}
	b.kind = "xgboost-json " + gb.Name + " " + obj
	if weights != nil {
		b.kind = "xgboost-json dart " + obj
	}
	return b, nil
}

func parseCount(name, s string) (int, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q is not a non-negative integer", name, s)
	}
	return int(n), nil
}

// parseBaseScore reads both forms XGBoost writes: "5E-1" (1.x) and
// "[4.775E-1]" (a one-element vector, 3.x).
func parseBaseScore(s string) (float32, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
		t = strings.TrimSpace(t[1 : len(t)-1])
		if strings.Contains(t, ",") {
			return 0, fmt.Errorf("base_score %q has several values: only single-output models are supported", s)
		}
	}
	v, err := strconv.ParseFloat(t, 32)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("learner_model_param.base_score %q is not a finite number", s)
	}
	return float32(v), nil
}

// addXGBTree validates one tree (every index in range, no node reached twice,
// numerical splits only) and appends it to the builder.
func (b *builder) addXGBTree(t *xgbTree, weight float32) error {
	n := len(t.LeftChildren)
	if n == 0 {
		return errors.New("tree has no nodes")
	}
	for _, c := range []struct {
		name string
		got  int
	}{
		{"right_children", len(t.RightChildren)},
		{"split_indices", len(t.SplitIndices)},
		{"split_conditions", len(t.SplitConditions)},
		{"default_left", len(t.DefaultLeft)},
	} {
		if c.got != n {
			return fmt.Errorf("%s has %d entries, left_children has %d", c.name, c.got, n)
		}
	}
	if len(t.SplitType) != 0 && len(t.SplitType) != n {
		return fmt.Errorf("split_type has %d entries, left_children has %d", len(t.SplitType), n)
	}
	for i, st := range t.SplitType {
		if st != 0 && t.LeftChildren[i] != -1 {
			return fmt.Errorf("node %d is a categorical split (split_type %d): categorical features are not supported; SegAD features are numerical", i, st)
		}
	}
	if len(t.Categories) != 0 {
		return errors.New("tree has categorical splits (categories): not supported; SegAD features are numerical")
	}
	tr := tree{nodes: make([]rawNode, n)}
	for i := 0; i < n; i++ {
		l, r := t.LeftChildren[i], t.RightChildren[i]
		v := float32(t.SplitConditions[i])
		if l == -1 {
			leaf := v * weight
			if math.IsNaN(float64(leaf)) || math.IsInf(float64(leaf), 0) {
				return fmt.Errorf("leaf %d has non-finite value %v", i, leaf)
			}
			tr.nodes[i] = rawNode{leaf: true, value: leaf}
			continue
		}
		if l < 0 || l >= int64(n) || r < 0 || r >= int64(n) {
			return fmt.Errorf("node %d has children %d and %d, outside 0..%d", i, l, r, n-1)
		}
		f := t.SplitIndices[i]
		if f < 0 || f >= int64(b.nFeat) {
			return fmt.Errorf("node %d splits on feature %d, but the model has num_feature=%d", i, f, b.nFeat)
		}
		if math.IsNaN(float64(v)) {
			return fmt.Errorf("node %d has a NaN split condition", i)
		}
		tr.nodes[i] = rawNode{feature: uint32(f), threshold: v, defaultLeft: bool(t.DefaultLeft[i]), left: int32(l), right: int32(r)}
	}
	return b.add(tr)
}

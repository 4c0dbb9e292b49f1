package brf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/dmitryikh/leaves"
)

// maxLightGBMLeaves bounds one tree; LightGBM's default is 31 leaves.
const maxLightGBMLeaves = 1 << 20

// lightGBMModel wraps a leaves ensemble loaded without its transformation, so
// PredictSingle returns the raw score (LightGBM folds the initial score into
// the first tree, so the raw score is the margin).
type lightGBMModel struct {
	ens    *leaves.Ensemble
	nFeat  int
	nTrees int
	kind   string
	// leaves wants float64 rows; pooled buffers keep Margin allocation-free
	// and safe for concurrent use.
	bufs sync.Pool
}

// loadLightGBM validates a LightGBM text model before leaves parses it:
// leaves indexes its arrays without bounds checks and allocates from declared
// sizes, so a malformed file would panic it or exhaust memory.
func loadLightGBM(data []byte) (m Model, err error) {
	nFeat, nTrees, err := validateLightGBM(data)
	if err != nil {
		return nil, fmt.Errorf("LightGBM text model: %w", err)
	}
	defer func() {
		// Belt and braces: validation mirrors what leaves reads, but a bug
		// in a third-party parser must not take the daemon down.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("LightGBM text model: parser failed: %v", r)
		}
	}()
	ens, err := leaves.LGEnsembleFromReader(bufio.NewReader(bytes.NewReader(data)), false)
	if err != nil {
		return nil, fmt.Errorf("LightGBM text model: %w", err)
	}
	if ens.NFeatures() != nFeat || ens.NEstimators() != nTrees || ens.NOutputGroups() != 1 {
		return nil, fmt.Errorf("LightGBM text model: parsed %d features, %d trees and %d outputs, validated %d, %d and 1", ens.NFeatures(), ens.NEstimators(), ens.NOutputGroups(), nFeat, nTrees)
	}
	lm := &lightGBMModel{ens: ens, nFeat: nFeat, nTrees: nTrees, kind: "lightgbm-text " + ens.Name()}
	lm.bufs.New = func() any { return &lgBuf{in: make([]float64, nFeat), out: make([]float64, 1)} }
	return lm, nil
}

// NumFeatures implements Model.
func (m *lightGBMModel) NumFeatures() int { return m.nFeat }

// NumTrees implements Model.
func (m *lightGBMModel) NumTrees() int { return m.nTrees }

// Kind implements Model.
func (m *lightGBMModel) Kind() string { return m.kind }

// Margin implements Model.
func (m *lightGBMModel) Margin(row []float32) float64 {
	if len(row) < m.nFeat {
		return math.NaN()
	}
	b := m.bufs.Get().(*lgBuf)
	for i := range b.in {
		b.in[i] = float64(row[i])
	}
	// Predict, not PredictSingle: PredictSingle's result array escapes
	// through leaves' interface and costs an allocation per call.
	v := math.NaN()
	if err := m.ens.Predict(b.in, 0, b.out); err == nil {
		v = b.out[0]
	}
	m.bufs.Put(b)
	return v
}

// lgBuf holds one Margin call's float64 input row and output.
type lgBuf struct{ in, out []float64 }

// lgBlock mirrors leaves' util.ReadParamsUntilBlank, so that validation sees
// exactly the key=value blocks leaves will see.
func lgBlock(r *bufio.Reader) (map[string]string, error) {
	params := map[string]string{}
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSpace(line)
	for {
		tok := strings.Split(line, "=")
		switch len(tok) {
		case 1:
			params[tok[0]] = ""
		case 2:
			params[tok[0]] = tok[1]
		default:
			return nil, fmt.Errorf("line %.60q is not key=value", line)
		}
		line, err = r.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return params, nil
		}
	}
}

func lgInts(p map[string]string, key string, want int) ([]int64, error) {
	s, ok := p[key]
	if !ok {
		return nil, fmt.Errorf("no %s", key)
	}
	f := strings.Split(s, " ")
	if len(f) != want {
		return nil, fmt.Errorf("%s has %d values, want %d", key, len(f), want)
	}
	out := make([]int64, len(f))
	for i, t := range f {
		v, err := strconv.ParseInt(t, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s value %d %.30q: not an integer", key, i, t)
		}
		out[i] = v
	}
	return out, nil
}

func lgInt(p map[string]string, key string) (int, error) {
	v, err := strconv.Atoi(p[key])
	if err != nil {
		return 0, fmt.Errorf("%s %.30q is not an integer", key, p[key])
	}
	return v, nil
}

// validateLightGBM checks the header and every tree and returns the feature
// and tree counts.
func validateLightGBM(data []byte) (nFeat, nTrees int, err error) {
	r := bufio.NewReader(bytes.NewReader(data))
	h, err := lgBlock(r)
	if err != nil {
		return 0, 0, fmt.Errorf("header: %w", err)
	}
	if v := h["version"]; v != "v2" && v != "v3" {
		return 0, 0, fmt.Errorf("version %.20q: want v2 or v3 (LightGBM >= 2.0 text format)", v)
	}
	for _, k := range []string{"num_class", "num_tree_per_iteration"} {
		n, err := lgInt(h, k)
		if err != nil {
			return 0, 0, err
		}
		if n != 1 {
			return 0, 0, fmt.Errorf("%s=%d: only single-output binary models are supported", k, n)
		}
	}
	maxIdx, err := lgInt(h, "max_feature_idx")
	if err != nil {
		return 0, 0, err
	}
	if maxIdx < 0 || maxIdx >= 1<<20 {
		return 0, 0, fmt.Errorf("max_feature_idx %d out of range", maxIdx)
	}
	nFeat = maxIdx + 1
	sizes, ok := h["tree_sizes"]
	if !ok {
		return 0, 0, errors.New("header has no tree_sizes")
	}
	nTrees = len(strings.Split(sizes, " "))
	for t := 0; t < nTrees; t++ {
		if err := validateLGTree(r, nFeat); err != nil {
			return 0, 0, fmt.Errorf("tree %d: %w", t, err)
		}
	}
	return nFeat, nTrees, nil
}

func validateLGTree(r *bufio.Reader, nFeat int) error {
	p, err := lgBlock(r)
	if err != nil {
		if err == io.EOF {
			return errors.New("file ends before this tree (tree_sizes lists more trees than the file holds)")
		}
		return err
	}
	nLeaves, err := lgInt(p, "num_leaves")
	if err != nil {
		return err
	}
	if nLeaves < 1 || nLeaves > maxLightGBMLeaves {
		return fmt.Errorf("num_leaves %d outside 1..%d", nLeaves, maxLightGBMLeaves)
	}
	if nCat, err := lgInt(p, "num_cat"); err != nil {
		return err
	} else if nCat != 0 {
		return errors.New("categorical splits (num_cat > 0) are not supported; SegAD features are numerical")
	}
	leafVals := strings.Split(p["leaf_value"], " ")
	if len(leafVals) != nLeaves {
		return fmt.Errorf("leaf_value has %d values for num_leaves=%d", len(leafVals), nLeaves)
	}
	for i, s := range leafVals {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("leaf_value %d %.30q is not a number", i, s)
		}
		// A non-finite leaf would fail every part that reaches it (NaN
		// score): refuse the file now rather than on the line.
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("leaf_value %d is %v: the model is broken (retrain it)", i, v)
		}
	}
	if nLeaves == 1 {
		return nil
	}
	nNodes := nLeaves - 1
	var arr [5][]int64
	for i, k := range []string{"left_child", "right_child", "decision_type", "split_feature"} {
		if arr[i], err = lgInts(p, k, nNodes); err != nil {
			return err
		}
	}
	if th := strings.Split(p["threshold"], " "); len(th) != nNodes {
		return fmt.Errorf("threshold has %d values, want %d", len(th), nNodes)
	}
	left, right, dt, feat := arr[0], arr[1], arr[2], arr[3]
	seen := make([]bool, nNodes)
	for i := 0; i < nNodes; i++ {
		if dt[i] < 0 || dt[i]&1 != 0 {
			return fmt.Errorf("node %d: decision_type %d is categorical or invalid; only numerical splits are supported", i, dt[i])
		}
		if (dt[i]>>2)&3 == 3 {
			return fmt.Errorf("node %d: decision_type %d has an unknown missing-value type", i, dt[i])
		}
		if feat[i] < 0 || feat[i] >= int64(nFeat) {
			return fmt.Errorf("node %d splits on feature %d, outside 0..%d (max_feature_idx)", i, feat[i], nFeat-1)
		}
		for _, c := range [2]int64{left[i], right[i]} {
			switch {
			case c >= 0 && c < int64(nNodes):
				if c == 0 || seen[c] {
					return fmt.Errorf("node %d: child %d is reached twice, not a tree", i, c)
				}
				seen[c] = true
			case c < 0 && ^c < int64(nLeaves):
			default:
				return fmt.Errorf("node %d: child %d out of range for %d leaves", i, c, nLeaves)
			}
		}
	}
	// One parent each does not rule out a detached cycle: walk from the root.
	reached, stack := 0, []int64{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		reached++
		for _, c := range [2]int64{left[i], right[i]} {
			if c > 0 {
				stack = append(stack, c)
			}
		}
		if reached > nNodes {
			return errors.New("splits form a cycle, not a tree")
		}
	}
	if reached != nNodes {
		return fmt.Errorf("%d of %d splits are not reachable from the root", nNodes-reached, nNodes)
	}
	return nil
}

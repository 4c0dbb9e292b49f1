package brf

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// explainGolden is what scripts/golden/explain.py writes: xgboost's
// pred_contribs (exact) and approx_contribs (path) per committed model, on
// a subset of golden_rows.json, plus the same for the paper's 2000-tree
// forest (rebuilt by explain_paper_test.go).
type explainGolden struct {
	XGBoostVersion string `json:"xgboost_version"`
	RowIndices     []int  `json:"row_indices"`
	Models         map[string]struct {
		Exact  [][]float64 `json:"exact"`
		Approx [][]float64 `json:"approx"`
	} `json:"models"`
}

func loadExplainGolden(t *testing.T) explainGolden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "explain_golden.json"))
	if err != nil {
		t.Fatalf("read golden contributions (regenerate with /usr/bin/python3 scripts/golden/explain.py): %v", err)
	}
	var g explainGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("parse golden contributions: %v", err)
	}
	return g
}

// explainTol is the parity tolerance: 1e-4 relative to the larger of 1 and
// the value, which covers XGBoost's float32 accumulation over many trees.
func explainTol(want float64) float64 { return 1e-4 * math.Max(1, math.Abs(want)) }

// explainerLayouts returns the explainer as loaded and forced onto the
// linked Path walk, so both walks are held to the goldens.
func explainerLayouts(t *testing.T, data []byte) map[string]*Explainer {
	t.Helper()
	e, err := NewExplainer(data)
	if err != nil {
		t.Fatalf("NewExplainer: %v", err)
	}
	linked, err := NewExplainer(data)
	if err != nil {
		t.Fatal(err)
	}
	linked.comp = nil
	return map[string]*Explainer{"auto": e, "linked": linked}
}

func TestExplainGolden(t *testing.T) {
	g := loadExplainGolden(t)
	_, rows := loadGolden(t)
	nanRows := 0
	for _, i := range g.RowIndices {
		for _, v := range rows[i] {
			if v != v {
				nanRows++
				break
			}
		}
	}
	if nanRows < 2 {
		t.Fatalf("golden contributions cover %d rows with NaN: the default-branch rule would go untested", nanRows)
	}
	for _, file := range []string{"xgb_logitraw.json", "xgb_logistic.json", "xgb_dart.json"} {
		t.Run(file, func(t *testing.T) {
			want, ok := g.Models[file]
			if !ok || len(want.Exact) != len(g.RowIndices) || len(want.Approx) != len(g.RowIndices) {
				t.Fatalf("golden file lacks %d rows of contributions for %s", len(g.RowIndices), file)
			}
			data, err := os.ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			layouts := explainerLayouts(t, data)
			if file == "xgb_logitraw.json" && layouts["auto"].comp == nil {
				t.Error("the depth-5 model did not get the complete Path layout")
			}
			for name, e := range layouts {
				out := make([]float64, e.NumFeatures()+1)
				for _, m := range []struct {
					method Method
					want   [][]float64
				}{{Path, want.Approx}, {Exact, want.Exact}} {
					worst, worstSum := 0.0, 0.0
					for k, ri := range g.RowIndices {
						row := rows[ri]
						if err := e.Contribs(m.method, row, out); err != nil {
							t.Fatal(err)
						}
						if len(m.want[k]) != len(out) {
							t.Fatalf("golden row %d has %d values, want %d", ri, len(m.want[k]), len(out))
						}
						sum := 0.0
						for j, v := range out {
							d := math.Abs(v - m.want[k][j])
							if !(d <= explainTol(m.want[k][j])) {
								t.Errorf("%s %s row %d feature %d: Go %.7g, xgboost %.7g", name, m.method, ri, j, v, m.want[k][j])
							}
							worst = math.Max(worst, d)
							sum += v
						}
						margin := e.Margin(row)
						ds := math.Abs(sum - margin)
						if !(ds <= explainTol(margin)) {
							t.Errorf("%s %s row %d: contributions + bias = %.7g, margin %.7g", name, m.method, ri, sum, margin)
						}
						worstSum = math.Max(worstSum, ds)
					}
					t.Logf("%s %s: %d rows (%d with NaN), worst |Go - xgboost %s| = %.2g, worst |sum - margin| = %.2g",
						name, m.method, len(g.RowIndices), nanRows, g.XGBoostVersion, worst, worstSum)
				}
			}
		})
	}
}

func TestExplainErrors(t *testing.T) {
	xgb, err := os.ReadFile(filepath.Join("testdata", "xgb_logitraw.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExplainer(xgb)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, e.NumFeatures()+1)
	row := make([]float32, e.NumFeatures())
	if err := e.PathContribs(row[:3], out); err == nil || !strings.Contains(err.Error(), "row has 3 features") {
		t.Errorf("short row: %v", err)
	}
	if err := e.ExactContribs(row, out[:5]); err == nil || !strings.Contains(err.Error(), "room for 5") {
		t.Errorf("short output: %v", err)
	}
	if err := e.Contribs(Method(7), row, out); err == nil {
		t.Error("unknown method: no error")
	}

	noCover := strings.ReplaceAll(string(xgb), "\"sum_hessian\"", "\"sum_hessian_gone\"")
	if _, err := NewExplainer([]byte(noCover)); err == nil || !strings.Contains(err.Error(), "node covers") {
		t.Errorf("model without sum_hessian: %v", err)
	}
	if _, err := NewExplainer([]byte("binf\x00\x00")); !errors.Is(err, ErrXGBoostBinary) {
		t.Errorf("binary model: %v", err)
	}
}

func TestExplainLightGBMRefused(t *testing.T) {
	_, err := NewExplainer([]byte(lgModel))
	if !errors.Is(err, ErrNotExplainable) || !strings.Contains(err.Error(), "explanations need an XGBoost JSON model") {
		t.Fatalf("LightGBM model: got %v, want ErrNotExplainable", err)
	}
	if _, err := LoadBytes([]byte(lgModel)); err != nil {
		t.Fatalf("the same LightGBM model must still load for scoring: %v", err)
	}
}

func TestParseMethod(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Method
		ok   bool
	}{{"path", Path, true}, {"approx", Path, true}, {" Exact ", Exact, true}, {"shap", Exact, true}, {"fast", 0, false}} {
		got, err := ParseMethod(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseMethod(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != strings.ToLower(tc.want.String()) {
			t.Errorf("String of %v", got)
		}
	}
}

// handTree is one depth-3 tree over 3 features with hand-set covers that
// splits twice on feature 0, so TreeSHAP must unwind a feature already on
// the path. Covers add up (parent = left + right), as XGBoost's do.
const handTree = `{"learner":{"gradient_booster":{"model":{"tree_info":[0],"trees":[{
"left_children":[1,3,5,-1,7,-1,-1,-1,-1],"right_children":[2,4,6,-1,8,-1,-1,-1,-1],
"split_indices":[0,1,0,0,2,0,0,0,0],"split_conditions":[0.5,0.5,0.8,1.0,0.5,-1.0,3.0,0.5,2.0],
"default_left":[1,0,0,0,1,0,0,0,0],"sum_hessian":[10,6,4,2,4,1,3,1,3]}]},"name":"gbtree"},
"learner_model_param":{"base_score":"5E-1","num_class":"0","num_feature":"3","num_target":"1"},
"objective":{"name":"binary:logitraw"}},"version":[1,7,4]}`

// handNodes mirrors handTree for the brute-force Shapley values below.
var handNodes = []struct {
	leaf        bool
	f           int
	thr, value  float64
	l, r        int
	defaultLeft bool
	cover       float64
}{
	{f: 0, thr: 0.5, l: 1, r: 2, defaultLeft: true, cover: 10},
	{f: 1, thr: 0.5, l: 3, r: 4, cover: 6},
	{f: 0, thr: 0.8, l: 5, r: 6, cover: 4},
	{leaf: true, value: 1, cover: 2},
	{f: 2, thr: 0.5, l: 7, r: 8, defaultLeft: true, cover: 4},
	{leaf: true, value: -1, cover: 1},
	{leaf: true, value: 3, cover: 3},
	{leaf: true, value: 0.5, cover: 1},
	{leaf: true, value: 2, cover: 3},
}

// handExpect is the tree's expected value given the features in set s are
// known (x) and the others follow the covers: TreeSHAP's value function.
func handExpect(i int, x []float32, s int) float64 {
	n := handNodes[i]
	if n.leaf {
		return n.value
	}
	if s&(1<<n.f) == 0 {
		return (handExpect(n.l, x, s)*handNodes[n.l].cover + handExpect(n.r, x, s)*handNodes[n.r].cover) / n.cover
	}
	v := x[n.f]
	left := float64(v) < n.thr
	if v != v {
		left = n.defaultLeft
	}
	if left {
		return handExpect(n.l, x, s)
	}
	return handExpect(n.r, x, s)
}

// TestExplainHandTree checks both methods against definitions computed
// independently of XGBoost: Path against the expected values along the
// path, Exact against brute-force Shapley values over all 2^3 subsets.
func TestExplainHandTree(t *testing.T) {
	e, err := NewExplainer([]byte(handTree))
	if err != nil {
		t.Fatal(err)
	}
	// Expected values: node 4 = (0.5*1+2*3)/4 = 1.625; node 1 = (1*2+1.625*4)/6;
	// node 2 = (-1*1+3*3)/4 = 2; root = (node1*6 + 2*4)/10.
	n4 := 1.625
	n1 := (2 + n4*4) / 6
	root := (n1*6 + 2*4) / 10
	if d := math.Abs(e.Bias() - (0.5 + root)); d > 1e-6 {
		t.Fatalf("bias %v, want base 0.5 + root expected value %v", e.Bias(), root)
	}
	nan := float32(math.NaN())
	out := make([]float64, 4)
	for _, tc := range []struct {
		row  []float32
		path []float64 // hand-computed per-feature path attribution
	}{
		{[]float32{0.2, 0.9, 0.7}, []float64{n1 - root, n4 - n1, 2 - n4}},
		{[]float32{0.9, 0.1, 0.1}, []float64{(2 - root) + (3 - 2), 0, 0}},
		{[]float32{0.6, 0.1, 0.1}, []float64{(2 - root) + (-1 - 2), 0, 0}},
		{[]float32{nan, 0.1, nan}, []float64{n1 - root, 1 - n1, 0}}, // NaN f0 defaults left
		{[]float32{0.1, 0.7, nan}, []float64{n1 - root, n4 - n1, 0.5 - n4}},
	} {
		if err := e.PathContribs(tc.row, out); err != nil {
			t.Fatal(err)
		}
		for j, w := range tc.path {
			if math.Abs(out[j]-w) > 1e-6 {
				t.Errorf("path %v feature %d: %v, want %v", tc.row, j, out[j], w)
			}
		}
		if err := e.ExactContribs(tc.row, out); err != nil {
			t.Fatal(err)
		}
		// phi_j = sum over S without j of |S|!(M-|S|-1)!/M! (v(S+j) - v(S)).
		fact := []float64{1, 1, 2, 6}
		for j := 0; j < 3; j++ {
			phi := 0.0
			for s := 0; s < 8; s++ {
				if s&(1<<j) != 0 {
					continue
				}
				k := bitsSet(s)
				phi += fact[k] * fact[3-k-1] / fact[3] * (handExpect(0, tc.row, s|1<<j) - handExpect(0, tc.row, s))
			}
			if math.Abs(out[j]-phi) > 1e-6 {
				t.Errorf("exact %v feature %d: %v, brute-force Shapley %v", tc.row, j, out[j], phi)
			}
		}
		sum := out[0] + out[1] + out[2] + out[3]
		if m := e.Margin(tc.row); math.Abs(sum-m) > 1e-6 {
			t.Errorf("exact %v: sum %v, margin %v", tc.row, sum, m)
		}
	}
}

func bitsSet(s int) int {
	n := 0
	for ; s != 0; s &= s - 1 {
		n++
	}
	return n
}

// FuzzNewExplainer feeds malformed models to the explainer: it must return
// an error or an explainer whose contributions add up to the margin, never
// panic.
//
//	go test ./brf -run '^$' -fuzz FuzzNewExplainer -fuzztime 60s
func FuzzNewExplainer(f *testing.F) {
	f.Add([]byte(handTree))
	f.Add([]byte(strings.ReplaceAll(handTree, "[10,6,4,2,4,1,3,1,3]", "[0,0,0,0,0,0,0,0,0]")))
	f.Add([]byte(lgModel))
	for _, name := range []string{"xgb_dart.json", "xgb_logistic.json"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := NewExplainer(data)
		if err != nil {
			if e != nil {
				t.Fatal("explainer and error both returned")
			}
			return
		}
		n := e.NumFeatures()
		if n > 1<<16 {
			return
		}
		row := make([]float32, n)
		out := make([]float64, n+1)
		for _, fill := range []float32{0, float32(math.NaN())} {
			for i := range row {
				row[i] = fill
			}
			for _, m := range []Method{Path, Exact} {
				if err := e.Contribs(m, row, out); err != nil {
					continue // e.g. too deep for Exact
				}
				sum := 0.0
				for _, v := range out {
					sum += v
				}
				margin := e.Margin(row)
				if math.Abs(sum-margin) > 1e-3*math.Max(1, math.Abs(margin)) && !math.IsInf(margin, 0) {
					t.Fatalf("%s: contributions + bias %v, margin %v", m, sum, margin)
				}
			}
		}
	})
}

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

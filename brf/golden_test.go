package brf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// golden is what scripts/golden/brf.py writes: held-out rows (null = NaN) and
// xgboost's output_margin for each committed model.
type golden struct {
	XGBoostVersion string               `json:"xgboost_version"`
	NumFeatures    int                  `json:"num_features"`
	Rows           [][]*float64         `json:"rows"`
	Margins        map[string][]float64 `json:"margins"`
}

func loadGolden(t testing.TB) (golden, [][]float32) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden_rows.json"))
	if err != nil {
		t.Fatalf("read golden rows (regenerate with /usr/bin/python3 scripts/golden/brf.py): %v", err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("parse golden rows: %v", err)
	}
	rows := make([][]float32, len(g.Rows))
	for i, r := range g.Rows {
		rows[i] = make([]float32, len(r))
		for j, v := range r {
			if v == nil {
				rows[i][j] = float32(math.NaN())
			} else {
				rows[i][j] = float32(*v)
			}
		}
	}
	return g, rows
}

// layouts rebuilds a model file in each layout, so both evaluators are held
// to the golden margins whatever build picks for the file.
func layouts(t *testing.T, data []byte) map[string]Model {
	t.Helper()
	m, err := LoadBytes(data)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	out := map[string]Model{"auto": m}
	b := builderOf(t, data)
	out["complete"] = b.buildComplete(m.Kind())
	out["linked"] = b.buildLinked(m.Kind())
	return out
}

func TestGoldenMargins(t *testing.T) {
	g, rows := loadGolden(t)
	nanRows := 0
	for _, r := range rows {
		for _, v := range r {
			if v != v {
				nanRows++
				break
			}
		}
	}
	if nanRows == 0 {
		t.Fatal("golden rows hold no NaN: the default-branch rule would go untested")
	}
	tests := []struct {
		file     string
		kind     string
		numTrees int
	}{
		{"xgb_logitraw.json", "xgboost-json gbtree binary:logitraw", 200},
		{"xgb_logistic.json", "xgboost-json gbtree binary:logistic", 20},
		{"xgb_dart.json", "xgboost-json dart binary:logitraw", 8},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			want, ok := g.Margins[tc.file]
			if !ok || len(want) != len(rows) {
				t.Fatalf("golden file has %d margins for %s, want %d", len(want), tc.file, len(rows))
			}
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			for name, m := range layouts(t, data) {
				if m.Kind() != tc.kind || m.NumTrees() != tc.numTrees || m.NumFeatures() != g.NumFeatures {
					t.Errorf("%s: kind %q, %d trees, %d features; want %q, %d, %d", name, m.Kind(), m.NumTrees(), m.NumFeatures(), tc.kind, tc.numTrees, g.NumFeatures)
				}
				worst := 0.0
				for i, r := range rows {
					got := m.Margin(r)
					d := math.Abs(got - want[i])
					if !(d <= 1e-5) {
						t.Errorf("%s row %d: margin %.9g, xgboost %.9g (diff %.3g)", name, i, got, want[i], d)
					}
					worst = math.Max(worst, d)
				}
				t.Logf("%s: %d rows, worst |Go - xgboost %s| = %.3g", name, len(rows), g.XGBoostVersion, worst)
			}
		})
	}
}

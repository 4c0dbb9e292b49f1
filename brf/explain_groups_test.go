package brf

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNewGroups(t *testing.T) {
	tests := []struct {
		name      string
		features  []string
		segments  []string
		detectors []string
		err       string
	}{
		{
			name: "two segments, two detectors, extra score",
			features: []string{
				"wires.pc.q995", "wires.pc.skew", "wires.pc.kurtosis", "wires.pc.mean",
				"wires.var.q995", "wires.var.skew", "wires.var.kurtosis", "wires.var.mean",
				"pins.pc.q995", "pins.pc.skew", "pins.pc.kurtosis", "pins.pc.mean",
				"pins.var.q995", "pins.var.skew", "pins.var.kurtosis", "pins.var.mean",
				"pc.max", "var.max", "wrn.score",
			},
			segments:  []string{"wires", "pins", WholeMap, "wrn.score"},
			detectors: []string{"pc", "var", "wrn.score"},
		},
		{
			name:      "no extra score",
			features:  []string{"a.d.q995", "a.d.skew", "a.d.kurtosis", "a.d.mean", "d.max"},
			segments:  []string{"a", WholeMap},
			detectors: []string{"d"},
		},
		{name: "empty", features: nil, err: "no feature names"},
		{name: "duplicate", features: []string{"a.d.mean", "a.d.mean"}, err: "appears twice"},
		{name: "unknown statistic", features: []string{"a.d.median"}, err: `"a.d.median"`},
		{name: "plain column names", features: []string{"f0", "f1"}, err: `"f0"`},
		{name: "empty part", features: []string{".max"}, err: `".max"`},
		{name: "too many parts", features: []string{"a.b.c.mean"}, err: `"a.b.c.mean"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := NewGroups(tc.features)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(g.Segments(), tc.segments) || !slices.Equal(g.Detectors(), tc.detectors) {
				t.Errorf("segments %q, detectors %q; want %q, %q", g.Segments(), g.Detectors(), tc.segments, tc.detectors)
			}
			// One unit per column: each group sums its column count.
			ones := make([]float64, len(tc.features)+1)
			for i := range ones {
				ones[i] = 1
			}
			total := 0.0
			for _, v := range g.SumBySegment(nil, ones) {
				total += v
			}
			if total != float64(len(tc.features)) {
				t.Errorf("per-segment sums add to %v, want %d (the bias must not be counted)", total, len(tc.features))
			}
		})
	}
}

func TestRanked(t *testing.T) {
	got := Ranked(nil, []string{"a", "b", "c", "d"}, []float64{0.1, -2, 0.5, 2})
	want := []Contribution{{"b", -2}, {"d", 2}, {"c", 0.5}, {"a", 0.1}}
	if !slices.Equal(got, want) {
		t.Errorf("Ranked = %v, want %v (largest |value| first, ties in order)", got, want)
	}
}

// goldenFeatureNames names the committed golden models' 29 columns as SegAD
// does for 7 segments and one detector.
func goldenFeatureNames() []string {
	var names []string
	for _, s := range []string{"background", "outer", "border", "solder", "wires", "pins", "middle"} {
		for _, st := range statNames {
			names = append(names, s+".pc."+st)
		}
	}
	return append(names, "pc.max")
}

// TestExplainTables explains the committed golden rows (NaN included) with
// the 200-tree model and checks that every table adds up to the margin.
func TestExplainTables(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "xgb_logitraw.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExplainer(data)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGroups(goldenFeatureNames())
	if err != nil {
		t.Fatal(err)
	}
	_, rows := loadGolden(t)
	out := make([]float64, e.NumFeatures()+1)
	for i, row := range rows {
		for _, m := range []Method{Path, Exact} {
			if err := e.Contribs(m, row, out); err != nil {
				t.Fatal(err)
			}
			x, err := g.Explain(m, out)
			if err != nil {
				t.Fatal(err)
			}
			margin := e.Margin(row)
			for name, table := range map[string][]Contribution{"segments": x.Segments, "detectors": x.Detectors, "features": x.Features} {
				sum := x.Bias
				for k, c := range table {
					sum += c.Value
					if k > 0 && math.Abs(c.Value) > math.Abs(table[k-1].Value) {
						t.Errorf("row %d %s %s: not sorted at %d: %v", i, m, name, k, table)
					}
				}
				if math.Abs(sum-margin) > 1e-4*math.Max(1, math.Abs(margin)) {
					t.Errorf("row %d %s %s: bias + table = %.7g, margin %.7g", i, m, name, sum, margin)
				}
			}
			if len(x.Segments) != 8 || len(x.Detectors) != 1 || len(x.Features) != 29 || x.Method != m.String() {
				t.Errorf("row %d: tables of %d, %d, %d entries, method %q", i, len(x.Segments), len(x.Detectors), len(x.Features), x.Method)
			}
		}
	}
	if _, err := g.Explain(Path, out[:10]); err == nil {
		t.Error("Explain with too few contributions: no error")
	}
	var dst []float64
	if a := testing.AllocsPerRun(100, func() { dst = g.SumBySegment(dst, out) }); a != 0 {
		t.Errorf("SumBySegment allocates %v times with a reused buffer", a)
	}
}

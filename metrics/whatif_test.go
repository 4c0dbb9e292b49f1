package metrics

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
)

// TestWhatIfGolden holds ComputeWhatIf to numpy and scipy
// (scripts/golden/whatif.py): counts, rates and Clopper-Pearson intervals
// on 365 parts, ties at the threshold and unscored parts included.
func TestWhatIfGolden(t *testing.T) {
	var g struct {
		Scores []*float64
		Labels []string
		Cases  []struct {
			Threshold, Confidence float64
			N, Rejected, Unscored int
			Bad, Good             int
			Recall                [3]float64
			FalseReject           [3]float64 `json:"false_reject"`
		}
		Histograms []struct {
			Bins   int
			Edges  []float64
			Counts []int
		}
	}
	readGolden(t, "testdata/whatif.json", &g)
	if len(g.Cases) < 10 || len(g.Scores) < 300 {
		t.Fatalf("golden file too small: %d cases, %d scores", len(g.Cases), len(g.Scores))
	}
	parts := make([]Part, len(g.Scores))
	finite := make([]float64, 0, len(g.Scores))
	for i, s := range g.Scores {
		parts[i] = Part{Score: math.NaN(), Label: g.Labels[i]}
		if s != nil {
			parts[i].Score = *s
			finite = append(finite, *s)
		}
	}
	const tol = 1e-9
	for _, c := range g.Cases {
		w := ComputeWhatIf(parts, c.Threshold, c.Confidence)
		if w.N != c.N || w.Rejected != c.Rejected || w.Unscored != c.Unscored || w.Defects != c.Bad || w.Good != c.Good {
			t.Errorf("threshold %v: n=%d rejected=%d unscored=%d defects=%d good=%d, numpy %d %d %d %d %d",
				c.Threshold, w.N, w.Rejected, w.Unscored, w.Defects, w.Good, c.N, c.Rejected, c.Unscored, c.Bad, c.Good)
		}
		for _, m := range []struct {
			name string
			got  [3]float64
			want [3]float64
		}{
			{"recall", [3]float64{w.Recall, w.RecallLo, w.RecallHi}, c.Recall},
			{"false reject", [3]float64{w.FalseReject, w.FalseRejectLo, w.FalseRejectHi}, c.FalseReject},
		} {
			for i := range m.got {
				if math.Abs(m.got[i]-m.want[i]) > tol {
					t.Errorf("threshold %v conf %v %s: got %v, scipy %v", c.Threshold, c.Confidence, m.name, m.got, m.want)
					break
				}
			}
		}
	}
	for _, h := range g.Histograms {
		edges, counts := Histogram(finite, h.Bins)
		if len(edges) != len(h.Edges) || len(counts) != len(h.Counts) {
			t.Fatalf("bins %d: %d edges %d counts, numpy %d %d", h.Bins, len(edges), len(counts), len(h.Edges), len(h.Counts))
		}
		for i := range edges {
			if math.Abs(edges[i]-h.Edges[i]) > 1e-12 {
				t.Errorf("bins %d edge %d: %v, numpy %v", h.Bins, i, edges[i], h.Edges[i])
			}
		}
		for i := range counts {
			if counts[i] != h.Counts[i] {
				t.Errorf("bins %d: counts %v, numpy %v", h.Bins, counts, h.Counts)
				break
			}
		}
	}
}

// TestClopperPearsonGolden checks the interval against scipy's
// binomtest(k, n).proportion_ci(conf, "exact") on fit's golden cases
// (scripts/golden/intervals.py; fit.ClopperPearson calls this one).
func TestClopperPearsonGolden(t *testing.T) {
	var g struct {
		Cases []struct {
			K, N           int
			Confidence     float64
			ClopperPearson [2]float64 `json:"clopper_pearson"`
		}
	}
	readGolden(t, "../fit/testdata/intervals.json", &g)
	if len(g.Cases) < 100 {
		t.Fatalf("%d golden cases", len(g.Cases))
	}
	for _, c := range g.Cases {
		lo, hi := ClopperPearson(c.K, c.N, c.Confidence)
		if math.Abs(lo-c.ClopperPearson[0]) > 1e-9 || math.Abs(hi-c.ClopperPearson[1]) > 1e-9 {
			t.Errorf("k=%d n=%d conf=%v: [%.12g, %.12g], scipy %v", c.K, c.N, c.Confidence, lo, hi, c.ClopperPearson)
		}
	}
}

// TestWhatIfEdges: the rule is result.Decide's (>= rejects, unjudgeable
// fails closed), and a class without labels has no rate (null in JSON,
// never NaN, which encoding/json refuses).
func TestWhatIfEdges(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	parts := []Part{{1, LabelBad}, {2, LabelGood}, {0.5, ""}, {nan, ""}, {-inf, LabelGood}}
	for _, tc := range []struct {
		name              string
		parts             []Part
		threshold         float64
		rejected, d, g    int
		recall, falseRej  float64
		nullRecall, nullF bool
	}{
		{"tie rejects", parts, 1, 4, 1, 2, 1, 1, false, false},
		{"just above passes the tie", parts, math.Nextafter(1, 2), 3, 1, 2, 0, 1, false, false},
		{"NaN threshold fails all closed", parts, nan, 5, 1, 2, 1, 1, false, false},
		{"+Inf threshold fails all closed", parts, inf, 5, 1, 2, 1, 1, false, false},
		{"low threshold", parts, -100, 5, 1, 2, 1, 1, false, false},
		{"unlabelled only", []Part{{1, ""}, {3, ""}}, 2, 1, 0, 0, 0, 0, true, true},
		{"no parts", nil, 0, 0, 0, 0, 0, 0, true, true},
		{"defects only", []Part{{1, LabelBad}, {3, LabelBad}}, 2, 1, 2, 0, 0.5, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := ComputeWhatIf(tc.parts, tc.threshold, 0.95)
			if w.Rejected != tc.rejected || w.Defects != tc.d || w.Good != tc.g {
				t.Fatalf("rejected %d defects %d good %d, want %d %d %d", w.Rejected, w.Defects, w.Good, tc.rejected, tc.d, tc.g)
			}
			if !tc.nullRecall && w.Recall != tc.recall {
				t.Errorf("recall %v, want %v", w.Recall, tc.recall)
			}
			if !tc.nullF && w.FalseReject != tc.falseRej {
				t.Errorf("false reject %v, want %v", w.FalseReject, tc.falseRej)
			}
			b, err := json.Marshal(w)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for key, null := range map[string]bool{"recall": tc.nullRecall, "recall_lo": tc.nullRecall, "recall_hi": tc.nullRecall,
				"false_reject": tc.nullF, "false_reject_lo": tc.nullF, "false_reject_hi": tc.nullF} {
				v, ok := m[key]
				if !ok {
					t.Errorf("%s missing from %s", key, b)
				} else if (v == nil) != null {
					t.Errorf("%s = %v, want null %v (%s)", key, v, null, b)
				}
			}
			if strings.Contains(string(b), "NaN") {
				t.Errorf("NaN in %s", b)
			}
		})
	}
	if w := ComputeWhatIf(parts, 1, 7); w.Confidence != DefaultConfidence {
		t.Errorf("confidence 7 kept as %v", w.Confidence)
	}
}

// TestHistogramEdges: degenerate inputs give no bins or numpy's ±0.5 range.
func TestHistogramEdges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scores []float64
		bins   int
		edges  []float64
		counts []int
	}{
		{"empty", nil, 5, nil, nil},
		{"only NaN", []float64{math.NaN()}, 5, nil, nil},
		{"zero bins", []float64{1, 2}, 0, nil, nil},
		{"all equal", []float64{2, 2, 2}, 2, []float64{1.5, 2, 2.5}, []int{0, 3}},
		{"max in last bin", []float64{0, 1, 2, 3, 4}, 4, []float64{0, 1, 2, 3, 4}, []int{1, 1, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, c := Histogram(tc.scores, tc.bins)
			if len(e) != len(tc.edges) || len(c) != len(tc.counts) {
				t.Fatalf("edges %v counts %v, want %v %v", e, c, tc.edges, tc.counts)
			}
			for i := range e {
				if e[i] != tc.edges[i] {
					t.Errorf("edges %v, want %v", e, tc.edges)
				}
			}
			for i := range c {
				if c[i] != tc.counts[i] {
					t.Errorf("counts %v, want %v", c, tc.counts)
				}
			}
		})
	}
}

func readGolden(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file (regenerate with make golden): %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

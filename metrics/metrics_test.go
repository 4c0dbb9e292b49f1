package metrics

import (
	"math"
	"testing"
)

func TestAUROC(t *testing.T) {
	tests := []struct {
		name   string
		scores []float64
		bad    []bool
		want   float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []bool{false, false, true, true}, 1},
		{"inverted", []float64{0.9, 0.8, 0.2, 0.1}, []bool{false, false, true, true}, 0},
		// One good above one bad of 2x2 pairs: 3 of 4 pairs ordered.
		{"one swap", []float64{0.1, 0.5, 0.4, 0.9}, []bool{false, false, true, true}, 0.75},
		// All tied: every pair counts half.
		{"all ties", []float64{1, 1, 1, 1}, []bool{false, true, false, true}, 0.5},
		// Bad 0.5 ties with good 0.5: pairs (0.5b,0.1g)=1 (0.5b,0.5g)=0.5 (0.7b,*)=2 -> 3.5/4.
		{"partial tie", []float64{0.1, 0.5, 0.5, 0.7}, []bool{false, false, true, true}, 0.875},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AUROC(tc.scores, tc.bad)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("AUROC = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAUROCErrors(t *testing.T) {
	if _, err := AUROC([]float64{1, 2}, []bool{true, true}); err == nil {
		t.Fatal("one class only: want an error")
	}
	if _, err := AUROC([]float64{math.NaN(), 2}, []bool{false, true}); err == nil {
		t.Fatal("NaN score: want an error")
	}
	if _, err := AUROC([]float64{1}, []bool{false, true}); err == nil {
		t.Fatal("length mismatch: want an error")
	}
}

func TestQuantileMatchesNumpyLinear(t *testing.T) {
	xs := []float64{3, 1, 4, 1, 5, 9, 2, 6}
	// numpy.quantile(xs, q): sorted 1 1 2 3 4 5 6 9; h = 7q.
	cases := map[float64]float64{0: 1, 1: 9, 0.5: 3.5, 0.05: 1, 0.25: 1.75, 0.995: 9 - 0.035*3}
	for q, want := range cases {
		if got := Quantile(xs, q); math.Abs(got-want) > 1e-12 {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

func TestFPRAt95TPR(t *testing.T) {
	// 21 bad scores 0..20: 5% quantile: h = 20*0.05 = 1 -> threshold 1.
	var scores []float64
	var bad []bool
	for i := 0; i <= 20; i++ {
		scores = append(scores, float64(i))
		bad = append(bad, true)
	}
	// Goods: 0, 1 (counts: >=), 3, 0.9 -> 2 of 4 at or above.
	for _, g := range []float64{0, 1, 3, 0.9} {
		scores = append(scores, g)
		bad = append(bad, false)
	}
	fpr, thr, err := FPRAt95TPR(scores, bad)
	if err != nil {
		t.Fatal(err)
	}
	if thr != 1 || fpr != 0.5 {
		t.Fatalf("FPRAt95TPR = %v at %v, want 0.5 at 1", fpr, thr)
	}
}

func TestRecallAtFPR(t *testing.T) {
	// Goods 0..19: the 95% quantile is 18.05; bads above it: 19.5, 30 of 4.
	var scores []float64
	var bad []bool
	for i := 0; i < 20; i++ {
		scores = append(scores, float64(i))
		bad = append(bad, false)
	}
	for _, b := range []float64{19.5, 30, 5, 18} {
		scores = append(scores, b)
		bad = append(bad, true)
	}
	if got := RecallAtFPR(scores, bad, 0.05); got != 0.5 {
		t.Fatalf("RecallAtFPR = %v, want 0.5", got)
	}
	if got := RecallAtFPR([]float64{1}, []bool{true}, 0.05); !math.IsNaN(got) {
		t.Fatalf("no good parts: %v, want NaN", got)
	}
}

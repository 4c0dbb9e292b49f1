package brf

import (
	"math"
	"os"
	"strings"
	"testing"
)

// lgModel is a LightGBM v3 text model written by hand (Debian has no
// LightGBM package to produce a golden one). Tree 0 uses missing type NaN with
// both default sides; tree 1 uses missing type None, where LightGBM reads NaN
// as 0.
// It lives in testdata so the model package's tests load the same file.
var lgModel = func() string {
	b, err := os.ReadFile("testdata/lightgbm_small.txt")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// lgHand traverses lgModel by LightGBM's rules: left when x <= threshold;
// missing type NaN sends NaN to the default side; missing type None reads
// NaN as 0.
func lgHand(x []float64) float64 {
	var s float64
	switch {
	case math.IsNaN(x[0]): // decision_type 8: NaN missing, default right
		s += -0.2
	case x[0] <= 0.5:
		if math.IsNaN(x[2]) || x[2] <= 1.25 { // decision_type 10: default left
			s += 0.1
		} else {
			s += 0.3
		}
	default:
		s += -0.2
	}
	x1 := x[1]
	if math.IsNaN(x1) {
		x1 = 0
	}
	if x1 <= -0.75 {
		s += 0.05
	} else {
		s += -0.05
	}
	return s
}

func TestLightGBMMatchesHandTraversal(t *testing.T) {
	m, err := LoadBytes([]byte(lgModel))
	if err != nil {
		t.Fatal(err)
	}
	if m.NumFeatures() != 3 || m.NumTrees() != 2 || !strings.HasPrefix(m.Kind(), "lightgbm-text") {
		t.Fatalf("%s: %d features, %d trees", m.Kind(), m.NumFeatures(), m.NumTrees())
	}
	nan := math.NaN()
	rows := [][]float64{
		{0.2, -1, 1}, {0.2, -1, 2}, {0.5, -0.75, 1.25}, {0.7, 0, 0},
		{nan, -1, 0}, {0.1, nan, nan}, {0.1, 0.3, 1.3}, {-5, -0.7500001, nan},
	}
	for _, r := range rows {
		row := []float32{float32(r[0]), float32(r[1]), float32(r[2])}
		// LightGBM compares in float64; our rows are float32 widened.
		want := lgHand([]float64{float64(row[0]), float64(row[1]), float64(row[2])})
		if got := m.Margin(row); math.Abs(got-want) > 1e-12 {
			t.Errorf("row %v: leaves %v, hand %v", r, got, want)
		}
	}
	if got := m.Margin([]float32{1}); !math.IsNaN(got) {
		t.Errorf("short row: %v, want NaN", got)
	}
	row := []float32{0.2, -1, 1}
	if n := testing.AllocsPerRun(100, func() { m.Margin(row) }); n != 0 {
		t.Errorf("%v allocations per Margin", n)
	}
}

func TestLightGBMRejects(t *testing.T) {
	tests := []struct {
		name, old, new, want string
	}{
		{"child out of range", "left_child=1 -1", "left_child=5 -1", "out of range"},
		{"leaf out of range", "right_child=-2 -3", "right_child=-2 -9", "out of range"},
		{"cycle", "left_child=1 -1", "left_child=1 1", "reached twice"},
		{"categorical", "decision_type=8 10", "decision_type=9 10", "categorical"},
		{"num_cat", "num_cat=0\nsplit_feature=0 2", "num_cat=1\nsplit_feature=0 2", "categorical"},
		{"feature", "split_feature=0 2", "split_feature=0 3", "feature 3"},
		{"huge num_leaves", "num_leaves=3", "num_leaves=999999999999", "num_leaves"},
		{"leaf count", "leaf_value=0.1 -0.2 0.3", "leaf_value=0.1 -0.2", "leaf_value has 2"},
		{"nan leaf", "leaf_value=0.1 -0.2 0.3", "leaf_value=0.1 nan 0.3", "leaf_value 1 is NaN"},
		{"inf leaf", "leaf_value=0.1 -0.2 0.3", "leaf_value=0.1 -0.2 inf", "leaf_value 2 is +Inf"},
		{"missing trees", "tree_sizes=300 200", "tree_sizes=300 200 100", "tree 2"},
		{"multiclass", "num_class=1", "num_class=3", "num_class=3"},
		{"version", "version=v3", "version=v9", "version"},
		{"bad number", "threshold=0.5 1.25", "threshold=0.5", "threshold has 1"},
		{"array length", "decision_type=8 10", "decision_type=8", "decision_type has 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(lgModel, tc.old) {
				t.Fatalf("fixture lacks %q", tc.old)
			}
			_, err := LoadBytes([]byte(strings.Replace(lgModel, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

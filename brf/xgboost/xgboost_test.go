package xgboost

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// rows returns n synthetic rows of c features with a learnable label and some
// NaN, as SegAD's near-constant segments produce.
func rows(seed uint64, n, c int) ([]float32, []float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*c)
	y := make([]float32, n)
	for i := 0; i < n; i++ {
		bad := r.Float64() < 0.3
		for j := 0; j < c; j++ {
			v := r.NormFloat64()
			if bad && j%3 == 0 {
				v += 1.5
			}
			if r.Float64() < 0.05 {
				v = math.NaN()
			}
			x[i*c+j] = float32(v)
		}
		if bad {
			y[i] = 1
		}
	}
	return x, y
}

func TestVersion(t *testing.T) {
	v, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "1.") && !strings.HasPrefix(v, "2.") && !strings.HasPrefix(v, "3.") {
		t.Fatalf("version %q", v)
	}
	t.Logf("libxgboost %s", v)
}

func TestOpenMissingLibraryNamesFix(t *testing.T) {
	err := openLib([]string{"/nonexistent/libxgboost-test.so"})
	if err == nil {
		t.Fatal("loading a missing library succeeded")
	}
	for _, want := range []string{"/nonexistent/libxgboost-test.so", "apt-get install libxgboost0", EnvLib} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	const n, c = 300, 12
	x, y := rows(7, n, c)
	p := DefaultParams()
	p.NumParallelTree = 10
	var err error
	if p.ScalePosWeight, err = ScalePosWeight(y); err != nil {
		t.Fatal(err)
	}
	a, err := Train(x, n, c, y, p, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Train(x, n, c, y, p, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("same data, params and seed gave different model bytes")
	}
	if !bytes.Contains(a, []byte(`"num_parallel_tree":"10"`)) || !bytes.Contains(a, []byte(`"binary:logitraw"`)) {
		t.Fatalf("model JSON lacks the requested forest/objective: %.300s", a)
	}
	p.Seed = 1
	d, err := Train(x, n, c, y, p, 3)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, d) {
		t.Fatal("another seed gave the same model: subsampling is not seeded")
	}
}

func TestPredictMarginShapes(t *testing.T) {
	const n, c = 200, 6
	x, y := rows(3, n, c)
	p := DefaultParams()
	p.NumParallelTree = 4
	m, err := Train(x, n, c, y, p, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBooster(m, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	all, err := b.PredictMargin(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d margins for %d rows", len(all), n)
	}
	// Row by row must equal the batch (the single-row path is the benchmark baseline).
	var one []float32
	for i := 0; i < n; i += 37 {
		one, err = b.PredictMargin(x[i*c:(i+1)*c], one)
		if err != nil {
			t.Fatal(err)
		}
		if one[0] != all[i] {
			t.Errorf("row %d alone %v, in batch %v", i, one[0], all[i])
		}
	}
	if _, err := b.PredictMargin(x[:c+1], nil); err == nil {
		t.Error("a partial row was accepted")
	}
	b.Close()
	if _, err := b.PredictMargin(x[:c], nil); err == nil {
		t.Error("predict after Close succeeded")
	}
}

func TestTrainRejectsBadInput(t *testing.T) {
	x, y := rows(1, 10, 3)
	p := DefaultParams()
	tests := []struct {
		name         string
		x, y         []float32
		rows, cols   int
		rounds       int
		params       func(*Params)
		wantContains string
	}{
		{"shape", x, y, 10, 4, 1, nil, "feature values"},
		{"labels", x, y[:9], 10, 3, 1, nil, "labels"},
		{"rounds", x, y, 10, 3, 0, nil, "rounds"},
		{"empty", nil, nil, 0, 3, 1, nil, "rows"},
		{"bad param", x, y, 10, 3, 1, func(p *Params) { p.Objective = "no:such" }, "objective"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := p
			if tc.params != nil {
				tc.params(&q)
			}
			_, err := Train(tc.x, tc.rows, tc.cols, tc.y, q, tc.rounds)
			if err == nil || !strings.Contains(err.Error(), tc.wantContains) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.wantContains)
			}
		})
	}
	if _, err := NewBooster([]byte("not a model"), 3, 1); err == nil {
		t.Error("garbage model bytes loaded")
	}
}

func TestScalePosWeight(t *testing.T) {
	tests := []struct {
		labels []float32
		want   float64
		ok     bool
	}{
		{[]float32{0, 0, 0, 1}, 3, true},
		{[]float32{0, 1, 1, 1}, 1.0 / 3, true},
		{[]float32{0, 0}, 0, false},
		{[]float32{0, 2}, 0, false},
	}
	for _, tc := range tests {
		got, err := ScalePosWeight(tc.labels)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ScalePosWeight(%v) = %v, %v; want %v, ok=%v", tc.labels, got, err, tc.want, tc.ok)
		}
	}
}

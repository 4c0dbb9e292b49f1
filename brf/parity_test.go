package brf_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
)

const (
	segments = 7
	nFeat    = segments*4 + 1 // 7 segments x (q995, skew, kurtosis, mean) + max
)

// segadRows returns n synthetic feature rows shaped like SegAD's, with a
// defect lifting one segment's tail, and NaN skew/kurtosis for 5% of the
// segments (scipy's rule for near-constant segments).
func segadRows(seed uint64, n int) (x, y []float32) {
	r := rand.New(rand.NewPCG(seed, 2))
	x = make([]float32, n*nFeat)
	y = make([]float32, n)
	for i := 0; i < n; i++ {
		bad := r.Float64() < 0.3
		hit := r.IntN(segments)
		row := x[i*nFeat : (i+1)*nFeat]
		mx := math.Inf(-1)
		for j := 0; j < segments; j++ {
			mean := 0.2 + 0.05*float64(j) + 0.03*r.NormFloat64()
			q := mean + math.Abs(0.15+0.05*r.NormFloat64())
			sk := 1 + 0.5*r.NormFloat64()
			ku := 3 * r.ExpFloat64()
			if bad && j == hit {
				q += 0.1 + 0.5*r.Float64()
				sk += 0.5 + 2.5*r.Float64()
				ku *= 1.5 + 3.5*r.Float64()
			}
			if r.Float64() < 0.05 {
				sk, ku = math.NaN(), math.NaN()
			}
			row[4*j], row[4*j+1], row[4*j+2], row[4*j+3] = float32(q), float32(sk), float32(ku), float32(mean)
			mx = math.Max(mx, q)
		}
		row[nFeat-1] = float32(mx + 0.01*r.NormFloat64())
		if bad {
			y[i] = 1
		}
	}
	return x, y
}

// paperModel is the paper's 2000-tree BRF (200 parallel trees x 10 rounds,
// depth 5) trained once per test binary through the real libxgboost.
var paperModel = sync.OnceValues(func() ([]byte, error) {
	x, y := segadRows(42, 2000)
	p := xgboost.DefaultParams()
	w, err := xgboost.ScalePosWeight(y)
	if err != nil {
		return nil, err
	}
	p.ScalePosWeight = w
	return xgboost.Train(x, 2000, nFeat, y, p, xgboost.DefaultRounds)
})

func loadPaperModel(tb testing.TB) ([]byte, brf.Model, *xgboost.Booster) {
	tb.Helper()
	data, err := paperModel()
	if err != nil {
		tb.Fatalf("train the 2000-tree BRF with libxgboost: %v", err)
	}
	m, err := brf.LoadBytes(data)
	if err != nil {
		tb.Fatalf("load trained model: %v", err)
	}
	if m.NumTrees() != 2000 || m.NumFeatures() != nFeat {
		tb.Fatalf("model has %d trees, %d features; want 2000, %d", m.NumTrees(), m.NumFeatures(), nFeat)
	}
	b, err := xgboost.NewBooster(data, nFeat, 1)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return data, m, b
}

// TestPaperModelParity trains the full 2000-tree model and holds the native
// evaluator to XGBoost's own predictor on held-out rows, NaN included.
func TestPaperModelParity(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a 2000-tree model (seconds)")
	}
	_, m, b := loadPaperModel(t)
	x, _ := segadRows(99, 500)
	// Add rows of all-NaN and of extreme values.
	extra := make([]float32, 2*nFeat)
	for j := 0; j < nFeat; j++ {
		extra[j] = float32(math.NaN())
		extra[nFeat+j] = 1e30
	}
	x = append(x, extra...)
	want, err := b.PredictMargin(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	worst, withNaN := 0.0, 0
	for i := range want {
		row := x[i*nFeat : (i+1)*nFeat]
		for _, v := range row {
			if v != v {
				withNaN++
				break
			}
		}
		d := math.Abs(m.Margin(row) - float64(want[i]))
		if !(d <= 1e-5) {
			t.Errorf("row %d: Go %.9g, xgboost %.9g", i, m.Margin(row), want[i])
		}
		worst = math.Max(worst, d)
	}
	if withNaN < 50 {
		t.Fatalf("only %d held-out rows have NaN", withNaN)
	}
	t.Logf("%d rows (%d with NaN): worst |Go - xgboost| = %.3g", len(want), withNaN, worst)
}

// naiveNode is the pointer-chasing evaluator the flat layout replaced: the
// second baseline of BenchmarkMargin.
type naiveNode struct {
	leaf        bool
	value       float32
	feature     int
	threshold   float32
	defaultLeft bool
	left, right *naiveNode
}

type naiveModel struct {
	base  float32
	trees []*naiveNode
}

func newNaive(tb testing.TB, data []byte) *naiveModel {
	var f struct {
		Learner struct {
			GradientBooster struct {
				Model struct {
					Trees []struct {
						Left  []int     `json:"left_children"`
						Right []int     `json:"right_children"`
						Feat  []int     `json:"split_indices"`
						Cond  []float32 `json:"split_conditions"`
						DefL  []int     `json:"default_left"`
					} `json:"trees"`
				} `json:"model"`
			} `json:"gradient_booster"`
		} `json:"learner"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		tb.Fatal(err)
	}
	m := &naiveModel{base: 0.5}
	for _, t := range f.Learner.GradientBooster.Model.Trees {
		var build func(i int) *naiveNode
		build = func(i int) *naiveNode {
			if t.Left[i] == -1 {
				return &naiveNode{leaf: true, value: t.Cond[i]}
			}
			return &naiveNode{feature: t.Feat[i], threshold: t.Cond[i], defaultLeft: t.DefL[i] == 1,
				left: build(t.Left[i]), right: build(t.Right[i])}
		}
		m.trees = append(m.trees, build(0))
	}
	return m
}

func (m *naiveModel) Margin(row []float32) float64 {
	sum := m.base
	for _, n := range m.trees {
		for !n.leaf {
			x := row[n.feature]
			switch {
			case x != x:
				if n.defaultLeft {
					n = n.left
				} else {
					n = n.right
				}
			case x < n.threshold:
				n = n.left
			default:
				n = n.right
			}
		}
		sum += n.value
	}
	return float64(sum)
}

// BenchmarkMargin scores one row with the paper's 2000-tree BRF: the native
// flat evaluator against XGBoost's own predictor (C API, in-place dense
// prediction, nthread=1) and a naive pointer-chasing Go evaluator, side by
// side in one run, on rows without NaN and on rows with some NaN (SegAD's
// near-constant segments). Run with -cpu 1:
//
//	go test ./brf -run '^$' -bench Margin -cpu 1
func BenchmarkMargin(b *testing.B) {
	data, m, bst := loadPaperModel(b)
	naive := newNaive(b, data)
	x, _ := segadRows(7, 1024)
	var clean, withNaN []float32
	for i := 0; i < len(x)/nFeat; i++ {
		row := x[i*nFeat : (i+1)*nFeat]
		hasNaN := false
		for _, v := range row {
			hasNaN = hasNaN || v != v
		}
		if hasNaN {
			withNaN = append(withNaN, row...)
		} else {
			clean = append(clean, row...)
		}
		if d := math.Abs(naive.Margin(row) - m.Margin(row)); d > 1e-5 {
			b.Fatalf("naive baseline disagrees on row %d by %g", i, d)
		}
	}
	var sink float64
	for _, set := range []struct {
		name string
		x    []float32
	}{{"clean", clean}, {"nan", withNaN}} {
		n := len(set.x) / nFeat
		row := func(i int) []float32 { i %= n; return set.x[i*nFeat : (i+1)*nFeat] }
		b.Run("rows="+set.name+"/impl=native-flat", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink += m.Margin(row(i))
			}
		})
		b.Run("rows="+set.name+"/baseline=xgboost-c-api", func(b *testing.B) {
			b.ReportAllocs()
			out := make([]float32, 1)
			var err error
			for i := 0; b.Loop(); i++ {
				if out, err = bst.PredictMargin(row(i), out); err != nil {
					b.Fatal(err)
				}
				sink += float64(out[0])
			}
		})
		b.Run("rows="+set.name+"/baseline=naive-pointer-go", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink += naive.Margin(row(i))
			}
		})
	}
	_ = sink
}

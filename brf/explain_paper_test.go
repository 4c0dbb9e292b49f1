package brf_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
)

// splitmix64 and the generator below are scripts/golden/explain.py's
// paper_rows, bit for bit: integer hashing, then one float32 IEEE operation
// per step, so Go and numpy produce the same rows.
func splitmix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}

func k24(i, k int) uint64 { return splitmix64(uint64(i)<<16|uint64(k)) >> 40 }

func u24(i, k int) float32 { return float32(k24(i, k)) * float32(1.0/(1<<24)) }

func paperRows(n int) (x, y []float32) {
	x = make([]float32, n*nFeat)
	y = make([]float32, n)
	nan := float32(math.NaN())
	for i := 0; i < n; i++ {
		bad := k24(i, 0) < 5033165
		hit := int((k24(i, 1) * segments) >> 24)
		mx := float32(-1)
		for j := 0; j < segments; j++ {
			q := float32(u24(i, 2+8*j)*0.25) + 0.25
			sk := u24(i, 3+8*j) * 2
			ku := u24(i, 4+8*j) * 4
			mean := float32(u24(i, 5+8*j)*0.25) + 0.1
			if bad && j == hit {
				q = q + (float32(u24(i, 6+8*j)*0.5) + 0.25)
				sk = sk + float32(u24(i, 7+8*j)*2)
				ku = ku * (u24(i, 8+8*j) + 1.5)
			}
			if k24(i, 9+8*j) < 838861 {
				sk, ku = nan, nan
			}
			copy(x[i*nFeat+4*j:], []float32{q, sk, ku, mean})
			mx = max(mx, q)
		}
		x[i*nFeat+nFeat-1] = mx
		if bad {
			y[i] = 1
		}
	}
	return x, y
}

type paperGolden struct {
	XGBoostVersion string `json:"xgboost_version"`
	RowIndices     []int  `json:"row_indices"`
	Paper          struct {
		TrainRows int         `json:"train_rows"`
		NumTrees  int         `json:"num_trees"`
		Margins   []float64   `json:"margins"`
		Exact     [][]float64 `json:"exact"`
		Approx    [][]float64 `json:"approx"`
	} `json:"paper"`
}

// goldenRows reads the committed held-out rows (null = NaN).
func goldenRows(t *testing.T) [][]float32 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden_rows.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Rows [][]*float64 `json:"rows"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	rows := make([][]float32, len(g.Rows))
	for i, r := range g.Rows {
		rows[i] = make([]float32, len(r))
		for j, v := range r {
			rows[i][j] = float32(math.NaN())
			if v != nil {
				rows[i][j] = float32(*v)
			}
		}
	}
	return rows
}

// TestExplainPaperGolden rebuilds the paper's 2000-tree BRF the golden script
// trained (same generated rows, parameters and libxgboost; too large to
// commit), checks it is the same forest by its margins, and holds both
// methods to xgboost's pred_contribs / approx_contribs on it.
func TestExplainPaperGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a 2000-tree model (seconds)")
	}
	data, err := os.ReadFile(filepath.Join("testdata", "explain_golden.json"))
	if err != nil {
		t.Fatalf("read golden contributions (regenerate with /usr/bin/python3 scripts/golden/explain.py): %v", err)
	}
	var g paperGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	p := g.Paper
	x, y := paperRows(p.TrainRows)
	params := xgboost.DefaultParams()
	if params.ScalePosWeight, err = xgboost.ScalePosWeight(y); err != nil {
		t.Fatal(err)
	}
	params.NThread = 1
	model, err := xgboost.Train(x, p.TrainRows, nFeat, y, params, xgboost.DefaultRounds)
	if err != nil {
		t.Fatalf("train the 2000-tree BRF with libxgboost: %v", err)
	}
	e, err := brf.NewExplainer(model)
	if err != nil {
		t.Fatal(err)
	}
	if e.NumTrees() != p.NumTrees || p.NumTrees != 2000 {
		t.Fatalf("forest has %d trees, the golden one %d; want 2000", e.NumTrees(), p.NumTrees)
	}
	rows := goldenRows(t)
	for k, ri := range g.RowIndices {
		if d := math.Abs(e.Margin(rows[ri]) - p.Margins[k]); !(d <= 1e-5) {
			t.Fatalf("row %d: margin %.7g, the golden forest's %.7g: Go's training did not rebuild the script's forest (paperRows out of step with explain.py's paper_rows?)", ri, e.Margin(rows[ri]), p.Margins[k])
		}
	}
	out := make([]float64, nFeat+1)
	for _, m := range []struct {
		method brf.Method
		want   [][]float64
	}{{brf.Path, p.Approx}, {brf.Exact, p.Exact}} {
		worst, worstSum := 0.0, 0.0
		for k, ri := range g.RowIndices {
			if err := e.Contribs(m.method, rows[ri], out); err != nil {
				t.Fatal(err)
			}
			sum := 0.0
			for j, v := range out {
				w := m.want[k][j]
				d := math.Abs(v - w)
				if !(d <= 1e-4*math.Max(1, math.Abs(w))) {
					t.Errorf("%s row %d feature %d: Go %.7g, xgboost %.7g", m.method, ri, j, v, w)
				}
				worst = math.Max(worst, d)
				sum += v
			}
			margin := e.Margin(rows[ri])
			ds := math.Abs(sum - margin)
			if !(ds <= 1e-4*math.Max(1, math.Abs(margin))) {
				t.Errorf("%s row %d: contributions + bias = %.7g, margin %.7g", m.method, ri, sum, margin)
			}
			worstSum = math.Max(worstSum, ds)
		}
		t.Logf("2000 trees, %s: %d rows, worst |Go - xgboost %s| = %.2g, worst |sum - margin| = %.2g", m.method, len(g.RowIndices), g.XGBoostVersion, worst, worstSum)
	}
}

// TestExplainPaperSums holds both methods' sums to the margin on 500
// held-out rows (about a third with NaN) of the benchmark's 2000-tree BRF,
// and checks Path allocates nothing.
func TestExplainPaperSums(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a 2000-tree model (seconds)")
	}
	data, m, _ := loadPaperModel(t)
	e, err := brf.NewExplainer(data)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := segadRows(99, 500)
	out := make([]float64, nFeat+1)
	worst := map[brf.Method]float64{}
	for i := 0; i < 500; i++ {
		row := x[i*nFeat : (i+1)*nFeat]
		margin := m.Margin(row)
		if e.Margin(row) != margin {
			t.Fatalf("row %d: the explainer's Margin %v differs from Load's %v", i, e.Margin(row), margin)
		}
		for _, method := range []brf.Method{brf.Path, brf.Exact} {
			if method == brf.Exact && i%5 != 0 {
				continue // exact costs milliseconds a row
			}
			if err := e.Contribs(method, row, out); err != nil {
				t.Fatal(err)
			}
			sum := 0.0
			for _, v := range out {
				sum += v
			}
			d := math.Abs(sum - margin)
			if !(d <= 1e-4*math.Max(1, math.Abs(margin))) {
				t.Errorf("%s row %d: contributions + bias = %.7g, margin %.7g", method, i, sum, margin)
			}
			worst[method] = max(worst[method], d)
		}
	}
	t.Logf("worst |sum - margin|: path %.2g, exact %.2g (bias %.4g)", worst[brf.Path], worst[brf.Exact], e.Bias())
	row := x[:nFeat]
	if a := testing.AllocsPerRun(100, func() { _ = e.PathContribs(row, out) }); a != 0 {
		t.Errorf("PathContribs allocates %v times per row, want 0", a)
	}
}

// BenchmarkExplain costs both methods on one row of the paper's 2000-tree
// BRF, with the margin on the same rows side by side as the ratio's
// baseline. Run with -cpu 1:
//
//	go test ./brf -run '^$' -bench Explain -cpu 1
func BenchmarkExplain(b *testing.B) {
	data, m, _ := loadPaperModel(b)
	e, err := brf.NewExplainer(data)
	if err != nil {
		b.Fatal(err)
	}
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
	}
	out := make([]float64, nFeat+1)
	var sink float64
	for _, set := range []struct {
		name string
		x    []float32
	}{{"clean", clean}, {"nan", withNaN}} {
		n := len(set.x) / nFeat
		row := func(i int) []float32 { i %= n; return set.x[i*nFeat : (i+1)*nFeat] }
		b.Run("rows="+set.name+"/baseline=margin", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink += m.Margin(row(i))
			}
		})
		for _, method := range []brf.Method{brf.Path, brf.Exact} {
			b.Run("rows="+set.name+"/method="+method.String(), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if err := e.Contribs(method, row(i), out); err != nil {
						b.Fatal(err)
					}
					sink += out[0]
				}
			})
		}
	}
	_ = sink
}

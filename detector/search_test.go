package detector

import (
	"fmt"
	"github.com/advancedclimatesystems/gonnx/onnx"
	"math"
	"math/rand"
	"path/filepath"
	"sort"
	"testing"
)

func TestSmallestMatchesStableSort(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals []float32
		k    int
	}{
		{"fewer values than k", []float32{3, 1}, 4},
		{"ties keep the lower position", []float32{2, 1, 2, 1, 0, 2}, 3},
		{"k equals n", []float32{5, 4, 3, 2, 1}, 5},
		{"k 1", []float32{4, -1, 7, -1}, 1},
		{"random", randomValues(200, 9), 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := make([]int, tc.k)
			val := make([]float32, tc.k)
			n := smallest(len(tc.vals), tc.k, func(i int) float32 { return tc.vals[i] }, idx, val)
			want := make([]int, len(tc.vals))
			for i := range want {
				want[i] = i
			}
			sort.SliceStable(want, func(a, b int) bool { return tc.vals[want[a]] < tc.vals[want[b]] })
			want = want[:min(tc.k, len(want))]
			if n != len(want) {
				t.Fatalf("kept %d, want %d", n, len(want))
			}
			for i := range want {
				if idx[i] != want[i] || val[i] != tc.vals[want[i]] {
					t.Fatalf("kept %v (%v), want %v", idx[:n], val[:n], want)
				}
			}
		})
	}
}

func randomValues(n int, seed int64) []float32 {
	rng := rand.New(rand.NewSource(seed))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// The graph folds nearest upsampling and the reflect-border blur into
// Uh G Uw^T; it must equal the Go reference (upsample, then gaussianBlur).
func TestUpBlurMatrixEqualsUpsampleThenBlur(t *testing.T) {
	for _, tc := range []struct {
		s, gh, gw int
		sigma     float64
	}{
		{256, 32, 32, 4},
		{256, 16, 32, 2},
		{64, 8, 16, 4},
	} {
		grid := randomValues(tc.gh*tc.gw, 3)
		up := make([]float32, tc.s*tc.s)
		for y := 0; y < tc.s; y++ {
			for x := 0; x < tc.s; x++ {
				up[y*tc.s+x] = grid[(y*tc.gh/tc.s)*tc.gw+x*tc.gw/tc.s]
			}
		}
		want := gaussianBlur(up, tc.s, tc.s, tc.sigma)
		uh, uw := upBlurMatrix(tc.s, tc.gh, tc.sigma), upBlurMatrix(tc.s, tc.gw, tc.sigma)
		got := make([]float32, tc.s*tc.s)
		for y := 0; y < tc.s; y++ {
			for x := 0; x < tc.s; x++ {
				var v float64
				for i := 0; i < tc.gh; i++ {
					for j := 0; j < tc.gw; j++ {
						v += float64(uh[y*tc.gh+i]) * float64(grid[i*tc.gw+j]) * float64(uw[x*tc.gw+j])
					}
				}
				got[y*tc.s+x] = float32(v)
			}
		}
		if r := relDiff(t, got, want); r > 1e-5 {
			t.Errorf("%+v: folded upsample+blur differs by %.2g relative", tc, r)
		}
	}
}

// The stage-1 basis must be orthonormal (so subspace distances are lower
// bounds of true ones) and ordered by decreasing variance.
func TestPCABasisOrthonormalByVariance(t *testing.T) {
	const n, d, r = 500, 12, 5
	rng := rand.New(rand.NewSource(7))
	x := make([]float32, n*d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			x[i*d+j] = float32(rng.NormFloat64() * float64(d-j)) // variance falls with j
		}
	}
	basis, err := pcaBasis(x, d, r)
	if err != nil {
		t.Fatal(err)
	}
	for a := 0; a < r; a++ {
		for b := 0; b < r; b++ {
			want := 0.0
			if a == b {
				want = 1
			}
			if got := float64(dot(basis[a*d:(a+1)*d], basis[b*d:(b+1)*d])); math.Abs(got-want) > 1e-5 {
				t.Errorf("basis rows %d.%d = %v, want %v", a, b, got, want)
			}
		}
	}
	proj := projectRows(basis, r, x, d)
	prev := math.Inf(1)
	for i := 0; i < r; i++ {
		var m, v float64
		for s := 0; s < n; s++ {
			m += float64(proj[s*r+i]) / n
		}
		for s := 0; s < n; s++ {
			v += (float64(proj[s*r+i]) - m) * (float64(proj[s*r+i]) - m) / n
		}
		if v > prev*1.0001 {
			t.Errorf("variance along direction %d (%v) exceeds direction %d's (%v)", i, v, i-1, prev)
		}
		prev = v
	}
	if _, err := pcaBasis(x[:d], d, r); err == nil {
		t.Error("PCA of one row: no error")
	}
}

// TestTwoStageSearchMatchesExact checks the two-stage search against the
// exact one on good and defective test images, with a bank of the size a
// full fit gives (2151 rows): per patch in Go (it never under-estimates,
// and differs only on a small share of patches), and as written graphs run
// through infer (the two-stage map equals the exact map except near those
// patches).
func TestTwoStageSearchMatchesExact(t *testing.T) {
	p := fitSmallPatchCore(t, PatchCoreConfig{Seed: 1, CoresetRatio: 2151.0 / (40 * 1024)})
	if p.searchMode() != SearchTwoStage {
		t.Fatalf("default search %q, want %q", p.searchMode(), SearchTwoStage)
	}
	exact, err := p.withSearch(SearchExact, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := newExtractor(p.bb, p.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.r.close()
	twoModel, err := p.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	two := openWritten(t, "patchcore_two_stage", twoModel)
	var paths []string
	for _, c := range []string{"good", "cut", "hole", "combined", "contamination"} {
		ps, err := ListImages(filepath.Join(tireDir(t), "test", c, "rgb"), 2)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, ps[:2]...)
	}
	var patches, differ, pixels, pixDiffer int
	worst := 0.0
	for _, path := range paths {
		in, err := LoadInput(path, 256)
		if err != nil {
			t.Fatal(err)
		}
		feats, err := ex.features(in)
		if err != nil {
			t.Fatal(err)
		}
		e, d, gh, gw := embed(feats)
		n := gh * gw
		x := make([]float32, d)
		se, st := exact.newScratch(), p.newScratch()
		for c := 0; c < n; c++ {
			for j := 0; j < d; j++ {
				x[j] = e[j*n+c]
			}
			want, got := exact.nearest(x, se), p.nearest(x, st)
			patches++
			if got < want {
				t.Fatalf("%s patch %d: two-stage distance %v below the exact minimum %v", path, c, got, want)
			}
			if got != want {
				differ++
				worst = max(worst, math.Sqrt(float64(got/want))-1)
			}
		}
		// Graph: the two-stage map through infer against the exact Go map.
		got, want := runThroughInfer(t, two, path), exact.Map(feats)
		peak := float64(maxOf(want))
		for i := range got {
			diff := float64(got[i]-want[i]) / peak
			if diff < -1e-3 {
				t.Fatalf("%s pixel %d: two-stage map %v below the exact map %v", path, i, got[i], want[i])
			}
			pixels++
			if diff > 1e-3 {
				pixDiffer++
			}
		}
	}
	share, pixShare := float64(differ)/float64(patches), float64(pixDiffer)/float64(pixels)
	t.Logf("two-stage (PCA %d, %d candidates) vs exact: %d of %d patches differ (%.3f%%, worst distance +%.1f%%); "+
		"graph map vs exact map: %.3f%% of pixels differ by more than 1e-3 of the peak",
		p.search.dim, p.search.k, differ, patches, 100*share, 100*worst, 100*pixShare)
	if share > 0.01 {
		t.Errorf("%.2f%% of patches differ from the exact search, want at most 1%%", 100*share)
	}
	if pixShare > 0.05 {
		t.Errorf("%.2f%% of map pixels differ from the exact search's map, want at most 5%%", 100*pixShare)
	}
}

// Bias digits must reconstruct every bias exactly (127 x high digits + low
// digit) with every digit inside the int8 range the uint8 bank matrix holds,
// also when one high digit is not enough.
func TestBiasDigitsReconstruct(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bias   []int32
		wantNH int
	}{
		{"small", []int32{0, 1, -1, 63, -63, 64, -64, 126, 127, -127}, 1},
		{"one high digit", []int32{127 * 127, -127 * 127, 127*127 + 63, 5000, -5000}, 1},
		{"two high digits", []int32{127*127 + 64, -(127*127 + 64), 20000, -30000, 127*254 + 63}, 2},
		{"three high digits", []int32{127*254 + 64, 40000, -45000, 1}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			digits, nh := biasDigits(tc.bias)
			if nh != tc.wantNH {
				t.Errorf("%d high digits, want %d", nh, tc.wantNH)
			}
			kb := len(tc.bias)
			for j, b := range tc.bias {
				var got int32
				for t2 := 0; t2 < nh; t2++ {
					got += 127 * digits[t2*kb+j]
				}
				lo := digits[nh*kb+j]
				got += lo
				if got != b {
					t.Errorf("bias %d reconstructs as %d", b, got)
				}
				for t2 := 0; t2 <= nh; t2++ {
					if v := digits[t2*kb+j]; v < -127 || v > 127 {
						t.Errorf("bias %d: digit %d = %d outside [-127,127]", b, t2, v)
					}
				}
				if lo < -63 || lo > 63 {
					t.Errorf("bias %d: low digit %d outside [-63,63]", b, lo)
				}
			}
		})
	}
}

// The int8 first stage as ONNX Runtime runs it (Gemm, QuantizeLinear,
// MatMulInteger with the bias folded in as extra columns) must give the
// Go reference's integer scores: exactly, except for a patch value that
// float rounding puts on the other side of a quantisation boundary (then
// one patch coordinate differs by one step). Some biases are widened so
// that they need more than one high digit.
func TestInt8Stage1MatchesGo(t *testing.T) {
	initORT(t)
	const d, kb, n, r = 40, 700, 256, 16
	rng := rand.New(rand.NewSource(5))
	bank := make([]float32, kb*d)
	for j := 0; j < kb; j++ {
		scale := 1.0
		if j%50 == 0 {
			scale = 8 // a few far rows
		}
		for i := 0; i < d; i++ {
			bank[j*d+i] = float32(rng.NormFloat64() * scale * float64(d-i) / d)
		}
	}
	p := &PatchCore{FeatDim: d, Bank: bank, BankSize: kb,
		Config: PatchCoreConfig{Search: SearchTwoStage, SearchDim: r, SearchK: 4}}
	if err := p.prepareSearch(); err != nil {
		t.Fatal(err)
	}
	// Real biases span what the data gives; widen a few so the graph's
	// bias columns need several high digits (ranking is irrelevant here).
	for j := 0; j < kb; j += 7 {
		p.search.bias[j] = int32(rng.Intn(90001) - 45000)
	}
	if _, nh := biasDigits(p.search.bias); nh < 2 {
		t.Fatalf("test bank needs %d high bias digits, want >= 2 to exercise them", nh)
	}
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 1.5)
	}
	var b graphBuilder
	score := p.addInt8Stage1(&b, "x", transpose(p.search.basis, r, d), n, kb)
	b.nodeTo("Cast", []string{score}, "scores", attrInt("to", int64(onnx.TensorProto_FLOAT)))
	m := b.model("int8_stage1", []*onnx.ValueInfoProto{floatValueInfo("x", n, d)}, []*onnx.ValueInfoProto{floatValueInfo("scores", n, kb)}, nil, nil)
	data, err := marshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	rn, err := newRunner("int8 stage 1", data, "x", []int64{n, d}, []string{"scores"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rn.close()
	out, _, err := rn.run(x)
	if err != nil {
		t.Fatal(err)
	}
	s := p.search
	sc := p.newScratch()
	exact, maxStep := 0, 0
	for c := 0; c < n; c++ {
		xc := x[c*d : (c+1)*d]
		for i := 0; i < r; i++ {
			sc.xp[i] = dot(s.basis[i*d:(i+1)*d], xc)
		}
		s.quantizePatch(sc.xp, sc.xq)
		same := true
		for j := 0; j < kb; j++ {
			want := s.bias[j]
			for i, q := range s.bankQ[j*r : (j+1)*r] {
				want += sc.xq[i] * q
			}
			got := int32(out[0][c*kb+j])
			if got != want {
				same = false
				// One coordinate off by one step moves a score by at most
				// one bank value (|q| <= 127).
				diff := got - want
				if diff > 127 || diff < -127 {
					t.Fatalf("patch %d row %d: graph score %d, Go %d", c, j, got, want)
				}
				maxStep = max(maxStep, int(max(diff, -diff)))
			}
		}
		if same {
			exact++
		}
	}
	t.Logf("%d of %d patches: identical int32 scores (others within %d)", exact, n, maxStep)
	if exact < n*98/100 {
		t.Errorf("only %d of %d patches have identical scores", exact, n)
	}
}

// The grouped TopK (group minima, TopK over groups, TopK inside the chosen
// groups) must return the same k rows as one TopK over all scores.
func TestTopKGroupedMatchesSmallest(t *testing.T) {
	initORT(t)
	for _, tc := range []struct{ n, kb, k int }{{64, 2151, 6}, {32, 700, 8}, {16, 50, 3}, {8, 40, 1}} {
		t.Run(fmt.Sprint(tc.kb, "rows k", tc.k), func(t *testing.T) {
			g, size := groupLayout(tc.kb, tc.k)
			cols := g * size
			rng := rand.New(rand.NewSource(int64(tc.kb)))
			x := make([]float32, tc.n*cols)
			for c := 0; c < tc.n; c++ {
				for j, v := range rng.Perm(cols) { // distinct: no ties
					x[c*cols+j] = float32(v - cols/2)
				}
			}
			var b graphBuilder
			s := b.node("Cast", []string{"x"}, attrInt("to", int64(onnx.TensorProto_INT32)))
			idx := b.topKGrouped(s, tc.k, int64(tc.n), g, size)
			b.nodeTo("Cast", []string{idx}, "idx", attrInt("to", int64(onnx.TensorProto_FLOAT)))
			m := b.model("topk_grouped", []*onnx.ValueInfoProto{floatValueInfo("x", int64(tc.n), int64(cols))},
				[]*onnx.ValueInfoProto{floatValueInfo("idx", int64(tc.n), int64(tc.k))}, nil, nil)
			data, err := marshalModel(m)
			if err != nil {
				t.Fatal(err)
			}
			rn, err := newRunner("grouped TopK", data, "x", []int64{int64(tc.n), int64(cols)}, []string{"idx"}, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer rn.close()
			out, _, err := rn.run(x)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]int, tc.k)
			val := make([]float32, tc.k)
			for c := 0; c < tc.n; c++ {
				row := x[c*cols : (c+1)*cols]
				smallest(cols, tc.k, func(j int) float32 { return row[j] }, want, val)
				got := map[int]bool{}
				for _, v := range out[0][c*tc.k : (c+1)*tc.k] {
					got[int(v)] = true
				}
				for _, w := range want {
					if !got[w] {
						t.Fatalf("row %d: grouped TopK %v misses %d of the k smallest %v", c, out[0][c*tc.k:(c+1)*tc.k], w, want)
					}
				}
			}
		})
	}
}

package detector

import (
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"sort"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
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
// Go reference's integer scores. Two checks, so that a kernel fault is not
// mistaken for rounding: (1) MatMulInteger's int32 output equals the exact
// product of its own operands (the graph's quantised patches and the bank
// matrix) in every entry, padding columns included, with no tolerance;
// (2) the graph's quantised patch equals Go's except where float rounding
// puts a value on the other side of a quantisation boundary (then that
// coordinate differs by one step), and on the real columns the scores then
// equal Go's scores of the graph's own quantised patch. 256 patches (so
// the rows 31, 63, ... that ONNX Runtime's AMX kernel got wrong are there)
// and a bank of 700 rows (not a multiple of mmiColumnAlign, so padding
// columns are needed), some biases widened to need several high digits.
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
	score, cols := p.addInt8Stage1(&b, "x", transpose(p.search.basis, r, d), n, kb)
	if cols%mmiColumnAlign != 0 || cols < kb {
		t.Fatalf("MatMulInteger has %d columns for %d bank rows, want a multiple of %d", cols, kb, mmiColumnAlign)
	}
	// The MatMulInteger's operands: A (quantised patches + bias columns)
	// from the graph, B (bank matrix) from its initializer.
	var aName string
	var bm []byte
	var rows int
	for _, nd := range b.nodes {
		if nd.OpType == "MatMulInteger" {
			aName = nd.Input[0]
			for _, in := range b.inits {
				if in.Name == nd.Input[1] {
					bm, rows = in.RawData, int(in.Dims[0])
				}
			}
		}
	}
	if bm == nil || rows*cols != len(bm) {
		t.Fatal("no MatMulInteger with a constant bank matrix in the stage-1 graph")
	}
	b.nodeTo("Cast", []string{score}, "scores", attrInt("to", int64(onnx.TensorProto_FLOAT)))
	b.nodeTo("Cast", []string{aName}, "a", attrInt("to", int64(onnx.TensorProto_FLOAT)))
	m := b.model("int8_stage1", []*onnx.ValueInfoProto{floatValueInfo("x", n, d)},
		[]*onnx.ValueInfoProto{floatValueInfo("scores", n, int64(cols)), floatValueInfo("a", n, int64(rows))}, nil, nil)
	data, err := marshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	rn, err := newRunner("int8 stage 1", data, "x", []int64{n, d}, []string{"scores", "a"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rn.close()
	out, _, err := rn.run(x)
	if err != nil {
		t.Fatal(err)
	}
	got, a := out[0], out[1]
	s := p.search
	sc := p.newScratch()
	same := 0
	for c := 0; c < n; c++ {
		// (1) the kernel: exact int32 product of its own operands.
		for j := 0; j < cols; j++ {
			var want int32
			for i := 0; i < rows; i++ {
				want += (int32(a[c*rows+i]) - 128) * (int32(bm[i*cols+j]) - 128)
			}
			if int32(got[c*cols+j]) != want {
				t.Fatalf("patch %d column %d: MatMulInteger gives %d, its operands' exact product is %d (kernel fault, see TestMatMulIntegerKernelProbe)",
					c, j, int32(got[c*cols+j]), want)
			}
		}
		// (2) the graph's quantised patch against Go's.
		xc := x[c*d : (c+1)*d]
		for i := 0; i < r; i++ {
			sc.xp[i] = dot(s.basis[i*d:(i+1)*d], xc)
		}
		s.quantizePatch(sc.xp, sc.xq)
		identical := true
		for i := 0; i < r; i++ {
			gq := int32(a[c*rows+i]) - 128
			if diff := gq - sc.xq[i]; diff != 0 {
				identical = false
				if diff > 1 || diff < -1 {
					t.Fatalf("patch %d coordinate %d: graph quantises to %d, Go to %d (more than float rounding)", c, i, gq, sc.xq[i])
				}
				sc.xq[i] = gq
			}
		}
		if identical {
			same++
		}
		var maxReal int32 = math.MinInt32
		for j := 0; j < kb; j++ {
			want := s.bias[j]
			for i, q := range s.bankQ[j*r : (j+1)*r] {
				want += sc.xq[i] * q
			}
			if g := int32(got[c*cols+j]); g != want {
				t.Fatalf("patch %d row %d: graph score %d, Go %d", c, j, g, want)
			}
			maxReal = max(maxReal, int32(got[c*cols+j]))
		}
		for j := kb; j < cols; j++ {
			if g := int32(got[c*cols+j]); g <= maxReal {
				t.Fatalf("patch %d padding column %d: score %d not above every real row's (%d)", c, j, g, maxReal)
			}
		}
	}
	t.Logf("%d columns (%d bank rows); %d of %d patches quantised identically (others within one step)", cols, kb, same, n)
	if same < n*98/100 {
		t.Errorf("only %d of %d patches quantised identically", same, n)
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

// mmiRun runs one MatMulInteger as the int8 stage writes it (uint8 x
// uint8, zero points 128, B a constant initializer so that ONNX Runtime
// prepacks it) on A [m,k] and B [k,n] given as values minus the zero
// point, on the given number of intra-op threads, and returns the
// positions (row*n+col) whose int32 result differs from the exact product.
func mmiRun(t *testing.T, m, k, n int, a, bv []int, threads int) []int {
	t.Helper()
	x := make([]float32, m*k)
	for i, v := range a {
		x[i] = float32(v + 128)
	}
	raw := make([]byte, k*n)
	for i, v := range bv {
		raw[i] = byte(v + 128)
	}
	var b graphBuilder
	zp := b.rawInit("zp", onnx.TensorProto_UINT8, nil, []byte{128})
	aq := b.node("Cast", []string{"x"}, attrInt("to", int64(onnx.TensorProto_UINT8)))
	y := b.node("MatMulInteger", []string{aq, b.rawInit("b", onnx.TensorProto_UINT8, []int64{int64(k), int64(n)}, raw), zp, zp})
	b.nodeTo("Cast", []string{y}, "y", attrInt("to", int64(onnx.TensorProto_FLOAT)))
	model := b.model("mmi_probe", []*onnx.ValueInfoProto{floatValueInfo("x", int64(m), int64(k))},
		[]*onnx.ValueInfoProto{floatValueInfo("y", int64(m), int64(n))}, nil, nil)
	data, err := marshalModel(model)
	if err != nil {
		t.Fatal(err)
	}
	rn, err := newRunner("MatMulInteger probe", data, "x", []int64{int64(m), int64(k)}, []string{"y"}, threads)
	if err != nil {
		t.Fatal(err)
	}
	defer rn.close()
	out, _, err := rn.run(x)
	if err != nil {
		t.Fatal(err)
	}
	var wrong []int
	want := make([]int32, n)
	for i := 0; i < m; i++ {
		clear(want)
		for l := 0; l < k; l++ {
			av := int32(a[i*k+l])
			for j, bw := range bv[l*n : (l+1)*n] {
				want[j] += av * int32(bw)
			}
		}
		for j, w := range want {
			if int32(out[0][i*n+j]) != w { // |w| <= 67*128*128 < 2^24: exact in float32
				wrong = append(wrong, i*n+j)
			}
		}
	}
	return wrong
}

// TestMatMulIntegerKernelProbe documents what the int8 stage relies on in
// ONNX Runtime's MatMulInteger (uint8 x uint8, zero points 128) on the CPU
// it runs on, so that an ONNX Runtime or CPU change that breaks it fails
// here rather than as a wrong shortlist:
//
//   - With a column count that is a multiple of mmiColumnAlign (what the
//     graph writes), results are exact for all 8-bit values: random and
//     extreme ones (A -128/127 with B -127/127, and the bias-digit bytes
//     255 and 129), so no kernel sums pairs in saturating int16; every
//     shape, 1 and 2 threads.
//   - With other column counts, ONNX Runtime 1.24.1's AMX kernel (Intel
//     CPUs with AMX-INT8) is wrong, whatever the values, in one place only:
//     the last row of every full 32-row block (rows 31, 63, ...) for the
//     last N%32-16 columns when N%32 is 17..31 (another block's zero-point
//     correction, or uninitialised memory for N < 32). Logged, and a fault
//     anywhere else fails: the alignment would no longer be known to avoid it.
func TestMatMulIntegerKernelProbe(t *testing.T) {
	initORT(t)
	rng := rand.New(rand.NewSource(11))
	fill := func(v []int, lo, hi int, extremes bool) []int {
		for i := range v {
			if extremes {
				v[i] = []int{lo, hi}[rng.Intn(2)]
			} else {
				v[i] = lo + rng.Intn(hi-lo+1)
			}
		}
		return v
	}
	for _, tc := range []struct {
		m, k, n, threads int
	}{
		{1, 20, 32, 1}, {33, 4, 64, 1}, {64, 20, 704, 1}, {256, 67, 704, 1}, {100, 67, 2176, 1},
		{1024, 67, 2176, 1}, {1024, 67, 2176, 2}, {1024, 130, 96, 2},
	} {
		if tc.n%mmiColumnAlign != 0 {
			t.Fatalf("aligned case with %d columns", tc.n)
		}
		for _, extremes := range []bool{false, true} {
			a := fill(make([]int, tc.m*tc.k), -128, 127, extremes)
			b := fill(make([]int, tc.k*tc.n), -127, 127, extremes)
			if w := mmiRun(t, tc.m, tc.k, tc.n, a, b, tc.threads); len(w) > 0 {
				t.Errorf("M %d K %d N %d (%d threads, extreme values %v): %d of %d results inexact, first at row %d column %d",
					tc.m, tc.k, tc.n, tc.threads, extremes, len(w), tc.m*tc.n, w[0]/tc.n, w[0]%tc.n)
			}
		}
	}
	// Unaligned column counts: which entries are wrong here.
	faulty := 0
	for _, tc := range []struct{ m, k, n int }{{64, 20, 17}, {64, 20, 44}, {64, 20, 700}, {1024, 67, 2166}, {33, 67, 2166}} {
		a := fill(make([]int, tc.m*tc.k), -128, 127, false)
		b := fill(make([]int, tc.k*tc.n), -127, 127, false)
		w := mmiRun(t, tc.m, tc.k, tc.n, a, b, 1)
		for _, pos := range w {
			row, col := pos/tc.n, pos%tc.n
			known := row%32 == 31 && row < tc.m/32*32 && tc.n%32 > 16 && col >= tc.n/32*32+16
			if !known {
				t.Errorf("M %d K %d N %d: row %d column %d inexact, outside the known AMX fault (rows 31 mod 32, last N%%32-16 columns)", tc.m, tc.k, tc.n, row, col)
			}
		}
		if len(w) > 0 {
			faulty++
			t.Logf("M %d K %d N %d (N%%32 = %d): %d of %d results inexact (the known AMX fault)", tc.m, tc.k, tc.n, tc.n%32, len(w), tc.m*tc.n)
		}
	}
	if faulty == 0 {
		t.Logf("unaligned column counts exact too on this CPU")
	}
}

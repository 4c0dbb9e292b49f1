package detector

import (
	"fmt"
	"math"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"gonum.org/v1/gonum/mat"
)

// Memory-bank search modes of the PatchCore graph (PatchCoreConfig.Search).
const (
	// SearchExact compares every patch with every bank row in full
	// dimension: one MatMul of bank size x dim x patches, then ReduceMin.
	SearchExact = "exact"
	// SearchTwoStage ranks the bank in a low-dimensional PCA subspace of the
	// bank with 8-bit integers (QuantizeLinear + MatMulInteger), keeps the
	// SearchK best rows per patch (a grouped TopK on the int32 scores, see
	// topKGrouped) and computes
	// exact full-dimension float distances for those only. It equals the
	// exact search whenever the true nearest row is among the candidates.
	SearchTwoStage = "two-stage"
	// SearchTwoStageFloat is the same two-stage search with a float32 first
	// stage (MatMul + one TopK on float scores): measured ~1.2 ms slower
	// per frame on x86 than the default, with a higher miss rate (PCA 32, 8
	// candidates); kept for comparison and for runtimes without a fast
	// integer GEMM.
	SearchTwoStageFloat = "two-stage-float"
)

// Defaults of the two-stage search. Measured on the tire data
// (docs/detector.md): with int8 scores in the 64 leading PCA dimensions and 6
// candidates the true nearest row is missed for ~0.07% of patches; ranking
// costs ~2 ms per 1024 patches against a 2151-row bank.
const (
	defaultSearchDim = 64
	defaultSearchK   = 6
)

// search is the prepared two-stage search: the PCA basis and the bank in
// that basis (stage 1).
type search struct {
	dim, k int
	quant  bool // int8 first stage (SearchTwoStage) rather than float
	// basis is dim x Dim() (row-major): the leading principal directions of
	// the bank, unit length, so stage-1 distances never exceed true ones.
	basis []float32

	// Float first stage. stage1 is (dim+1) x BankSize, row-major: -2 * the
	// projected bank, transposed, with a last row of its squared norms.
	// [x' 1] times it gives ||m'||^2 - 2 m'.x', which ranks bank rows like
	// ||x'-m'||^2 (the missing ||x'||^2 is the same for every row of one
	// patch).
	stage1 []float32

	// Int8 first stage. Projections are centred on the bank's mean in the
	// subspace (distances do not change; the values shrink, so the 8-bit
	// step is finer) and quantised with one step for patches and bank:
	// q(v) = round(v/step) clamped to [-127,127] for the bank, [-128,127]
	// for patches (QuantizeLinear to uint8 with zero point 128). A row's
	// score is bias_j - sum_i q(x'_i) q(m'_ji) with bias_j =
	// ||m'_j||^2/(2 step^2) rounded (shifted by a constant), i.e.
	// ||x'-m'_j||^2 up to a per-patch constant, in units of step^2, all in
	// exact int32 arithmetic.
	center []float32 // dim: bank mean in the subspace
	step   float32
	bankQ  []int32 // BankSize x dim, row-major: -q(m'_j)
	bias   []int32 // BankSize
}

// searchMode returns the search the graph will use: two-stage only when it
// is requested and actually smaller than the exact search.
func (p *PatchCore) searchMode() string {
	if p.search == nil {
		return SearchExact
	}
	if p.search.quant {
		return SearchTwoStage
	}
	return SearchTwoStageFloat
}

// validSearch reports whether mode is a known memory-bank search.
func validSearch(mode string) error {
	switch mode {
	case SearchExact, SearchTwoStage, SearchTwoStageFloat:
		return nil
	}
	return fmt.Errorf("memory-bank search %q: want %q, %q or %q", mode, SearchTwoStage, SearchTwoStageFloat, SearchExact)
}

// prepareSearch computes the two-stage search for the current bank and
// configuration. With Search "exact", or a subspace or candidate count
// that is not smaller than the bank's dimension or size, it leaves the
// exact search in place.
func (p *PatchCore) prepareSearch() error {
	c := p.Config
	p.search = nil
	if err := validSearch(c.Search); err != nil {
		return err
	}
	if c.Search == SearchExact {
		return nil
	}
	if c.SearchDim <= 0 || c.SearchK <= 0 {
		return fmt.Errorf("two-stage search needs a positive subspace dimension and candidate count, have %d and %d", c.SearchDim, c.SearchK)
	}
	d := p.Dim()
	if c.SearchDim >= d || c.SearchK >= p.BankSize {
		return nil // nothing to save: the exact search is as cheap
	}
	basis, err := pcaBasis(p.Bank, d, c.SearchDim)
	if err != nil {
		return fmt.Errorf("two-stage search: %w", err)
	}
	r := c.SearchDim
	proj := projectRows(basis, r, p.Bank, d) // [bank][r]
	kb := p.BankSize
	s := &search{dim: r, k: c.SearchK, basis: basis, quant: c.Search == SearchTwoStage}
	if s.quant {
		s.quantizeBank(proj, kb)
	} else {
		s.stage1 = make([]float32, (r+1)*kb)
		for j := 0; j < kb; j++ {
			row := proj[j*r : (j+1)*r]
			for i, v := range row {
				s.stage1[i*kb+j] = -2 * v
			}
			s.stage1[r*kb+j] = dot(row, row)
		}
	}
	p.search = s
	return nil
}

// quantizeBank prepares the int8 first stage from the projected bank
// ([kb][dim]): centre, step = max |value| / 127 (no bank value saturates;
// a smaller step measured more misses), quantised rows and biases.
func (s *search) quantizeBank(proj []float32, kb int) {
	r := s.dim
	mean := make([]float64, r)
	for j := 0; j < kb; j++ {
		for i, v := range proj[j*r : (j+1)*r] {
			mean[i] += float64(v)
		}
	}
	s.center = make([]float32, r)
	for i := range mean {
		s.center[i] = float32(mean[i] / float64(kb))
	}
	var peak float64
	cent := make([]float64, len(proj))
	for j := 0; j < kb; j++ {
		for i := 0; i < r; i++ {
			v := float64(proj[j*r+i] - s.center[i])
			cent[j*r+i] = v
			peak = max(peak, math.Abs(v))
		}
	}
	s.step = float32(peak / 127)
	if s.step == 0 {
		s.step = 1 // every bank row equal: any ranking is right
	}
	st := float64(s.step)
	s.bankQ = make([]int32, kb*r)
	s.bias = make([]int32, kb)
	raw := make([]float64, kb)
	lo, hi := math.Inf(1), math.Inf(-1)
	for j := 0; j < kb; j++ {
		var n2 float64
		for i := 0; i < r; i++ {
			v := cent[j*r+i]
			n2 += v * v
			s.bankQ[j*r+i] = -int32(max(-127, min(127, math.RoundToEven(v/st))))
		}
		raw[j] = n2 / (2 * st * st)
		lo, hi = min(lo, raw[j]), max(hi, raw[j])
	}
	// Shift by a constant (ranking per patch is unchanged) so the biases
	// are small and centred: they travel as base-127 digits (biasDigits).
	off := math.Round((lo + hi) / 2)
	for j := range raw {
		s.bias[j] = int32(math.Round(raw[j] - off))
	}
}

// quantizePatch is QuantizeLinear(x, step, 128) - 128 on the centred
// projection: round half to even, saturate to [-128, 127].
func (s *search) quantizePatch(xp []float32, out []int32) {
	for i, v := range xp {
		q := math.RoundToEven(float64((v - s.center[i]) / s.step))
		out[i] = int32(max(-128, min(127, q)))
	}
}

// biasDigits writes each row's bias as nh digits of weight 127 and one of
// weight 1, every digit in [-127,127]: extra rows of the uint8 bank
// matrix, matched by constant patch columns of effective value 127 and 1,
// so that MatMulInteger adds the bias itself (no [patches x bank] Add).
// Returns the digits as (nh+1) x kb, row-major.
func biasDigits(bias []int32) ([]int32, int) {
	var peak int32
	for _, b := range bias {
		peak = max(peak, b, -b)
	}
	hiMax := (peak + 63) / 127
	nh := max(1, int((hiMax+126)/127))
	kb := len(bias)
	out := make([]int32, (nh+1)*kb)
	for j, b := range bias {
		h := b / 127
		l := b - 127*h
		if l > 63 {
			h, l = h+1, l-127
		} else if l < -63 {
			h, l = h-1, l+127
		}
		for t := 0; t < nh; t++ {
			v := max(-127, min(127, h))
			out[t*kb+j] = v
			h -= v
		}
		out[nh*kb+j] = l
	}
	return out, nh
}

// pcaBasis returns the r leading principal directions (rows, r x d) of the
// rows of x ([n][d]). Accumulates the covariance in float64; gonum's
// symmetric eigen-decomposition is deterministic, so a fit gives the same
// file twice.
func pcaBasis(x []float32, d, r int) ([]float32, error) {
	n := len(x) / d
	if n < 2 {
		return nil, fmt.Errorf("PCA of the memory bank needs at least 2 rows, have %d", n)
	}
	mean := make([]float64, d)
	for i := 0; i < n; i++ {
		for j, v := range x[i*d : (i+1)*d] {
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	cov := make([]float64, d*d)
	parallelFor(d, func(lo, hi int) {
		c := make([]float64, d)
		for a := lo; a < hi; a++ {
			clear(c)
			for i := 0; i < n; i++ {
				row := x[i*d : (i+1)*d]
				va := float64(row[a]) - mean[a]
				for b := a; b < d; b++ {
					c[b] += va * (float64(row[b]) - mean[b])
				}
			}
			for b := a; b < d; b++ {
				cov[a*d+b] = c[b] / float64(n)
				cov[b*d+a] = c[b] / float64(n)
			}
		}
	})
	var es mat.EigenSym
	if !es.Factorize(mat.NewSymDense(d, cov), true) {
		return nil, fmt.Errorf("eigen-decomposition of the %dx%d bank covariance did not converge", d, d)
	}
	var vec mat.Dense
	es.VectorsTo(&vec) // columns, eigenvalues ascending
	out := make([]float32, r*d)
	for i := 0; i < r; i++ {
		col := d - 1 - i
		for j := 0; j < d; j++ {
			out[i*d+j] = float32(vec.At(j, col))
		}
	}
	return out, nil
}

// scratch holds one worker's buffers for nearest.
type scratch struct {
	xp, best []float32
	xq       []int32
	cand     []int
}

func (p *PatchCore) newScratch() *scratch {
	s := p.search
	if s == nil {
		return &scratch{}
	}
	return &scratch{xp: make([]float32, s.dim), xq: make([]int32, s.dim), best: make([]float32, s.k), cand: make([]int, s.k)}
}

// smallest keeps in idx/val the k smallest of the values produced for
// positions 0..n-1, ascending; ties go to the lower position (a stable
// sort's order). Returns how many it kept.
func smallest(n, k int, value func(int) float32, idx []int, val []float32) int {
	m := 0
	for b := 0; b < n; b++ {
		v := value(b)
		if m == k && v >= val[m-1] {
			continue
		}
		j := min(m, k-1)
		for j > 0 && val[j-1] > v {
			val[j], idx[j] = val[j-1], idx[j-1]
			j--
		}
		val[j], idx[j] = v, b
		m = min(m+1, k)
	}
	return m
}

// nearest returns the squared distance from patch x (Dim() values) to the
// memory bank as the written graph computes it. Exact: the minimum over all
// rows. Two-stage: stage-1 scores of every row in the PCA subspace (float,
// or int8 as the graph's MatMulInteger computes them), the k lowest (ties
// to the lower row, as ONNX Runtime's TopK), exact distances to those,
// minimum.
func (p *PatchCore) nearest(x []float32, sc *scratch) float32 {
	d := p.Dim()
	best := float32(math.Inf(1))
	s := p.search
	if p.searchMode() == SearchExact {
		for b := 0; b < p.BankSize; b++ {
			best = min(best, sqDist(x, p.Bank[b*d:(b+1)*d]))
		}
		return best
	}
	r, kb := s.dim, p.BankSize
	for i := 0; i < r; i++ {
		sc.xp[i] = dot(s.basis[i*d:(i+1)*d], x)
	}
	score := func(j int) float32 {
		v := s.stage1[r*kb+j]
		for i := 0; i < r; i++ {
			v += sc.xp[i] * s.stage1[i*kb+j]
		}
		return v
	}
	if s.quant {
		s.quantizePatch(sc.xp, sc.xq)
		score = func(j int) float32 {
			v := s.bias[j]
			for i, m := range s.bankQ[j*r : (j+1)*r] {
				v += sc.xq[i] * m
			}
			return float32(v) // exact: |v| <= dim*128*127 + |bias|, far below 2^24
		}
	}
	n := smallest(kb, s.k, score, sc.cand, sc.best)
	for _, b := range sc.cand[:n] {
		best = min(best, sqDist(x, p.Bank[b*d:(b+1)*d]))
	}
	return best
}

// addSearch appends the memory-bank search to the graph: e is the patch
// embedding [d, N]; the result is the squared distance per patch.
func (p *PatchCore) addSearch(b *graphBuilder, e string, n int64) string {
	d := p.Dim()
	if p.searchMode() == SearchExact {
		return p.addExactSearch(b, e, n)
	}
	s := p.search
	r, kb := int64(s.dim), int64(p.BankSize)
	xt := b.node("Transpose", []string{e}, attrInts("perm", 1, 0)) // [N,d]
	basisT := transpose(s.basis, s.dim, d)                         // d x r, so that xt @ basisT = x'
	var score, cand string
	if s.quant {
		g, size := groupLayout(p.BankSize, s.k) // g*size is a multiple of mmiColumnAlign
		score, _ = p.addInt8Stage1(b, xt, basisT, n, g*size)
		cand = b.topKGrouped(score, s.k, n, g, size)
	} else {
		// Stage 1: [x'  1] @ [[-2 M'^T]; [||m'||^2]] -> [N, bank] scores.
		xp := b.node("MatMul", []string{xt, b.floatInit("search_basis", []int64{int64(d), r}, basisT)})
		ones := make([]float32, n)
		for i := range ones {
			ones[i] = 1
		}
		xp1 := b.node("Concat", []string{xp, b.floatInit("search_ones", []int64{n, 1}, ones)}, attrInt("axis", 1))
		score = b.node("MatMul", []string{xp1, b.floatInit("search_stage1", []int64{r + 1, kb}, s.stage1)})
		cand = b.topKSmallest(score, s.k, 1) // [N,k]
	}
	// Stage 2: exact squared distances to the k candidates, by differences
	// (no cancellation, unlike the expanded form), then the minimum.
	bank := b.floatInit("bank", []int64{kb, int64(d)}, p.Bank)
	g := b.node("Gather", []string{bank, cand}, attrInt("axis", 0)) // [N,k,d]
	x3 := b.node("Reshape", []string{xt, b.int64Init("search_x_shape", []int64{n, 1, int64(d)})})
	diff := b.node("Sub", []string{g, x3})
	sq := b.node("ReduceSum", []string{b.node("Mul", []string{diff, diff})}, attrInts("axes", 2), attrInt("keepdims", 0))
	return b.node("ReduceMin", []string{sq}, attrInts("axes", 1), attrInt("keepdims", 0)) // [N]
}

// mmiColumnAlign is the multiple of which the int8 stage's MatMulInteger
// has columns (bank rows plus padding). ONNX Runtime 1.24.1's AMX kernel
// (MLAS QGEMM on CPUs with AMX-INT8, e.g. Sapphire Rapids) computes C in
// blocks of 32 rows x 32 columns; when the last column block is partial
// with 17-31 columns, the last row of every full 32-row block (patches 31,
// 63, ...) gets the zero-point correction of another block, or
// uninitialised memory, for those last columns: wrong by arbitrary
// amounts, whatever the values (TestMatMulIntegerKernelProbe; upstream
// microsoft/onnxruntime#27670, fixed after 1.24). Whole 32-column blocks
// never reach that path. No other kernel is known to need it (an AMD
// EPYC with AVX-512 VNNI ran unaligned counts exactly); on CPUs not tried
// (AVX-VNNI only, ARM) the probe test is the check.
const mmiColumnAlign = 32

// addInt8Stage1 appends the int8 first stage and returns its int32 scores
// [N, cols'] with cols' = cols rounded up to mmiColumnAlign (columns past
// the bank are padding that never wins): Gemm (projection minus the
// centre) -> QuantizeLinear (uint8, zero point 128) -> Concat with the
// constant bias columns -> MatMulInteger with the uint8 bank matrix (zero
// point 128). uint8 x uint8 rather than uint8 x int8: ONNX Runtime's AVX2
// u8s8 kernel sums pairs in saturating int16 (VPMADDUBSW); its u8u8
// kernels never sum byte products in int16, so every 8-bit value is exact
// (probed with all values at the extremes, TestMatMulIntegerKernelProbe),
// and on AVX-512 VNNI both measured the same. All opset 10-11 operators,
// so the opset 12 import stays.
func (p *PatchCore) addInt8Stage1(b *graphBuilder, xt string, basisT []float32, n int64, cols int) (string, int) {
	s := p.search
	d, r, kb := int64(p.Dim()), s.dim, p.BankSize
	cols = alignUp(max(cols, kb), mmiColumnAlign)
	neg := make([]float32, r)
	for i, c := range s.center {
		neg[i] = -c
	}
	xp := b.node("Gemm", []string{xt, b.floatInit("search_basis", []int64{d, int64(r)}, basisT), b.floatInit("search_center", []int64{int64(r)}, neg)})
	zp := b.rawInit("search_zero_point", onnx.TensorProto_UINT8, nil, []byte{128})
	xq := b.node("QuantizeLinear", []string{xp, b.floatInit("search_step", nil, []float32{s.step}), zp})
	// Padding columns (cols > kb, so that the grouped TopK sees equal
	// groups) have a zero bank row and a bias above any real row's
	// largest possible score: they are never candidates.
	bias := append([]int32(nil), s.bias...)
	var pad int32
	for j := 0; j < kb; j++ {
		v := s.bias[j]
		for _, q := range s.bankQ[j*r : (j+1)*r] {
			v += 128 * max(q, -q)
		}
		pad = max(pad, v+1)
	}
	for len(bias) < cols {
		bias = append(bias, pad)
	}
	digits, nh := biasDigits(bias)
	unit := make([]byte, int(n)*(nh+1)) // effective (value-128): 127 x nh, then 1
	for i := 0; i < int(n); i++ {
		for t := 0; t <= nh; t++ {
			unit[i*(nh+1)+t] = 255
		}
		unit[i*(nh+1)+nh] = 129
	}
	a := b.node("Concat", []string{xq, b.rawInit("search_bias_cols", onnx.TensorProto_UINT8, []int64{n, int64(nh + 1)}, unit)}, attrInt("axis", 1))
	rows := r + nh + 1
	bm := make([]byte, rows*cols)
	for i := range bm[:r*cols] {
		bm[i] = 128
	}
	for j := 0; j < kb; j++ {
		for i := 0; i < r; i++ {
			bm[i*cols+j] = byte(s.bankQ[j*r+i] + 128)
		}
	}
	for t := 0; t <= nh; t++ {
		for j := 0; j < cols; j++ {
			bm[(r+t)*cols+j] = byte(digits[t*cols+j] + 128)
		}
	}
	return b.node("MatMulInteger", []string{a, b.rawInit("search_bank_q", onnx.TensorProto_UINT8, []int64{int64(rows), int64(cols)}, bm), zp, zp}), cols
}

// alignUp rounds v up to a multiple of a.
func alignUp(v, a int) int {
	return (v + a - 1) / a * a
}

// groupLayout splits kb bank rows into g groups of size rows (the last
// ones padded) for topKGrouped, with g*size a multiple of mmiColumnAlign
// (the int8 stage's MatMulInteger has exactly g*size columns) and g >= k.
// Among the sizes around sqrt(kb/k) (where the two TopKs see about as many
// values each) it takes the one of least estimated cost per patch, in
// units of one stage-1 column (MatMulInteger + ReduceMin, ~0.8 ns): cols,
// 5 per group minimum (TopK, ~3.9 ns a value at these lengths) and 7 per
// value of the chosen groups (GatherElements ~1.7 ns + TopK), from ONNX
// Runtime's profile at 2151 rows, k 6. There: 136 groups of 16 (2176
// columns); 128 x 17 and the earlier unaligned 114 x 19 (2166) measured the
// same per frame, half or twice 19 rows slower.
func groupLayout(kb, k int) (g, size int) {
	s0 := max(1, int(math.Round(math.Sqrt(float64(kb)/float64(k)))))
	best := math.MaxInt
	for sz := max(1, s0/2); sz <= 2*s0; sz++ {
		step := mmiColumnAlign / gcd(sz, mmiColumnAlign) // g multiple of step: g*sz aligned
		gg := alignUp(max((kb+sz-1)/sz, k), step)
		if cost := gg*sz + 5*gg + 7*k*sz; cost < best {
			best, g, size = cost, gg, sz
		}
	}
	return g, size
}

// gcd is the greatest common divisor of a and b.
func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// topKGrouped returns the indices [N,k] of the k smallest scores per row of
// scores [N, g*size], like one TopK, but with two small TopKs: ONNX
// Runtime's TopK costs ~0.7 ns per value and this one runs on ~1024 x 2151
// values. The minimum of each group of size consecutive values (ReduceMin,
// cheap), the k groups with the lowest minima (TopK over g), the scores of
// those groups' rows (GatherElements), the k lowest of them (TopK over
// k*size). The k smallest values lie in at most k groups, each of which has
// one of the k lowest minima, so the result is the same set (up to ties).
func (b *graphBuilder) topKGrouped(scores string, k int, n int64, g, size int) string {
	gs := b.node("Reshape", []string{scores, b.int64Init("search_groups", []int64{n, int64(g), int64(size)})})
	mins := b.node("ReduceMin", []string{gs}, attrInts("axes", 2), attrInt("keepdims", 0)) // [N,g]
	grp := b.topKSmallest(mins, k, 1)                                                      // [N,k] int64
	first := b.node("Mul", []string{grp, b.int64Init("search_group_size", []int64{int64(size)})})
	first = b.node("Reshape", []string{first, b.int64Init("search_first_shape", []int64{n, int64(k), 1})})
	offs := make([]int64, size)
	for i := range offs {
		offs[i] = int64(i)
	}
	rows := b.node("Add", []string{first, b.int64Init("search_offsets", offs)}) // [N,k,size]
	rows = b.node("Reshape", []string{rows, b.int64Init("search_rows_shape", []int64{n, int64(k * size)})})
	sub := b.node("GatherElements", []string{scores, rows}, attrInt("axis", 1)) // [N,k*size]
	local := b.topKSmallest(sub, k, 1)
	return b.node("GatherElements", []string{rows, local}, attrInt("axis", 1)) // [N,k] bank rows
}

// topKSmallest appends a TopK (opset 11+: K as an input, largest=0) and
// returns the indices of the k smallest values along axis.
func (b *graphBuilder) topKSmallest(x string, k int, axis int64) string {
	vals, idx := b.name("TopK"), b.name("TopK_indices")
	b.nodes = append(b.nodes, &onnx.NodeProto{
		OpType: "TopK", Input: []string{x, b.int64Init("topk_k", []int64{int64(k)})},
		Output: []string{vals, idx}, Name: vals + "_node",
		Attribute: []*onnx.AttributeProto{attrInt("axis", axis), attrInt("largest", 0), attrInt("sorted", 0)},
	})
	return idx
}

// addExactSearch is the exact search: squared distances are ||x||^2 +
// (||m||^2 - 2 m.x); the bracket comes from one MatMul of [-2M | ||m||^2]
// (K x d+1) with [x; 1] (d+1 x N), so the KxN product needs no broadcast
// Adds; ||x||^2 is added after the ReduceMin, on N values instead of K*N.
// Rounding can make the sum slightly negative for a patch equal to a bank
// row: it is clamped at 0.
func (p *PatchCore) addExactSearch(b *graphBuilder, e string, n int64) string {
	d := p.Dim()
	aug := make([]float32, p.BankSize*(d+1))
	for i := 0; i < p.BankSize; i++ {
		row := p.Bank[i*d : (i+1)*d]
		for j, v := range row {
			aug[i*(d+1)+j] = -2 * v
		}
		aug[i*(d+1)+d] = dot(row, row)
	}
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	ex := b.node("Concat", []string{e, b.floatInit("ones", []int64{1, n}, ones)}, attrInt("axis", 0))
	xm := b.node("MatMul", []string{b.floatInit("bank_aug", []int64{int64(p.BankSize), int64(d + 1)}, aug), ex}) // [K,N]
	x2 := b.node("ReduceSum", []string{b.node("Mul", []string{e, e})}, attrInts("axes", 0), attrInt("keepdims", 1))
	mn := b.node("Add", []string{b.node("ReduceMin", []string{xm}, attrInts("axes", 0), attrInt("keepdims", 1)), x2})
	return b.node("Max", []string{mn, b.floatInit("zero", []int64{1}, []float32{0})})
}

// withSearch returns a copy of p (sharing the bank) that writes the given
// search, for comparing searches on one fitted bank.
func (p *PatchCore) withSearch(mode string, dim, k int) (*PatchCore, error) {
	q := *p
	q.Config.Search, q.Config.SearchDim, q.Config.SearchK = mode, dim, k
	if err := q.prepareSearch(); err != nil {
		return nil, err
	}
	return &q, nil
}

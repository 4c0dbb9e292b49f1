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
	// bank, keeps the SearchK best rows per patch (TopK) and computes exact
	// full-dimension distances for those only. It equals the exact search
	// whenever the true nearest row is among the SearchK candidates.
	SearchTwoStage = "two-stage"
)

// Defaults of the two-stage search. Measured on the tire data (docs/detector.md):
// 32 PCA dimensions explain ~91% of the bank's variance, and with 8
// candidates the true nearest row is missed for ~0.1% of patches, where the
// distance is then over-estimated by a few percent at most.
const (
	defaultSearchDim = 32
	defaultSearchK   = 8
)

// search is the prepared two-stage search: the PCA basis and the bank in
// that basis (stage 1).
type search struct {
	dim, k int
	// basis is dim x Dim() (row-major): the leading principal directions of
	// the bank, unit length, so stage-1 distances never exceed true ones.
	basis []float32
	// stage1 is (dim+1) x BankSize, row-major: -2 * the projected bank,
	// transposed, with a last row of its squared norms. [x' 1] times it gives
	// ||m'||^2 - 2 m'.x', which ranks bank rows like ||x'-m'||^2 (the
	// missing ||x'||^2 is the same for every row of one patch).
	stage1 []float32
}

// searchMode returns the search the graph will use: two-stage only when it
// is requested and actually smaller than the exact search.
func (p *PatchCore) searchMode() string {
	if p.Config.Search == SearchTwoStage && p.search != nil {
		return SearchTwoStage
	}
	return SearchExact
}

// prepareSearch computes the two-stage search for the current bank and
// configuration. With Search "exact", or a subspace or candidate count
// that is not smaller than the bank's dimension or size, it leaves the
// exact search in place.
func (p *PatchCore) prepareSearch() error {
	c := p.Config
	p.search = nil
	switch c.Search {
	case SearchExact:
		return nil
	case SearchTwoStage:
	default:
		return fmt.Errorf("memory-bank search %q: want %q or %q", c.Search, SearchTwoStage, SearchExact)
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
	s := &search{dim: r, k: c.SearchK, basis: basis, stage1: make([]float32, (r+1)*kb)}
	for j := 0; j < kb; j++ {
		row := proj[j*r : (j+1)*r]
		for i, v := range row {
			s.stage1[i*kb+j] = -2 * v
		}
		s.stage1[r*kb+j] = dot(row, row)
	}
	p.search = s
	return nil
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
	cand     []int
}

func (p *PatchCore) newScratch() *scratch {
	s := p.search
	if s == nil {
		return &scratch{}
	}
	return &scratch{xp: make([]float32, s.dim), best: make([]float32, s.k), cand: make([]int, s.k)}
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
// rows. Two-stage: stage-1 scores of every row in the PCA subspace, the k
// lowest (ties to the lower row), exact distances to those, minimum.
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
	// Stage 1: [x'  1] @ [[-2 M'^T]; [||m'||^2]] -> [N, bank] scores.
	basisT := transpose(s.basis, s.dim, d) // d x r, so that xt @ basisT = x'
	xp := b.node("MatMul", []string{xt, b.floatInit("search_basis", []int64{int64(d), r}, basisT)})
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	xp1 := b.node("Concat", []string{xp, b.floatInit("search_ones", []int64{n, 1}, ones)}, attrInt("axis", 1))
	score := b.node("MatMul", []string{xp1, b.floatInit("search_stage1", []int64{r + 1, kb}, s.stage1)})
	cand := b.topKSmallest(score, s.k, 1) // [N,k]
	// Stage 2: exact squared distances to the k candidates, by differences
	// (no cancellation, unlike the expanded form), then the minimum.
	bank := b.floatInit("bank", []int64{kb, int64(d)}, p.Bank)
	g := b.node("Gather", []string{bank, cand}, attrInt("axis", 0)) // [N,k,d]
	x3 := b.node("Reshape", []string{xt, b.int64Init("search_x_shape", []int64{n, 1, int64(d)})})
	diff := b.node("Sub", []string{g, x3})
	sq := b.node("ReduceSum", []string{b.node("Mul", []string{diff, diff})}, attrInts("axes", 2), attrInt("keepdims", 0))
	return b.node("ReduceMin", []string{sq}, attrInts("axes", 1), attrInt("keepdims", 0)) // [N]
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

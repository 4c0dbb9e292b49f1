package brf

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"unsafe"
)

// ErrNotExplainable is wrapped by the error for a model whose trees carry no
// node covers (LightGBM text through leaves), so contributions cannot be
// computed; scoring it with Margin still works.
var ErrNotExplainable = errors.New("explanations need an XGBoost JSON model")

// Method names one way of splitting a margin into per-feature contributions.
type Method int

const (
	// Path is path attribution (Saabas; XGBoost's approx_contribs=True): along
	// the row's decision path, each split's change of the expected value is
	// credited to the split's feature. Cheap enough for every frame.
	Path Method = iota
	// Exact is TreeSHAP (Lundberg et al., algorithm 2; XGBoost's
	// pred_contribs=True): exact Shapley values of the trees, on demand.
	Exact
)

// String returns "path" or "exact", the names ParseMethod accepts.
func (m Method) String() string {
	switch m {
	case Path:
		return "path"
	case Exact:
		return "exact"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// ParseMethod reads "path" (also "approx") or "exact" (also "shap").
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "path", "approx":
		return Path, nil
	case "exact", "shap", "treeshap":
		return Exact, nil
	}
	return 0, fmt.Errorf("explanation method %q: want path (every frame) or exact (TreeSHAP, on demand)", s)
}

// maxExactDepth bounds the trees Exact explains: TreeSHAP keeps a path of
// depth+1 elements per level, O(depth²) scratch and recursion depth.
const maxExactDepth = 256

// Explainer splits a forest's margin into per-feature contributions plus a
// bias: contributions[0..n-1] + bias = Margin(row), up to float32 rounding.
// It embeds the native Model built from the same file, so one load serves
// both scoring and explaining. Immutable after loading and safe for
// concurrent use.
type Explainer struct {
	Model
	nFeat int
	bias  float64 // base margin + every tree's root expected value
	// All trees, nodes in file order per tree, for Exact and the general
	// Path walk.
	roots    []int32
	nodes    []xnode
	maxDepth int
	// The complete layout (as the margin's) for Path, nil when the forest is
	// too deep or lopsided for it.
	comp  []pnode
	depth int
}

// xnode is one node of the explainer's linked layout. Children are absolute
// indices into Explainer.nodes; a leaf has left == -1.
type xnode struct {
	threshold   float32
	feature     int32
	left, right int32
	defaultLeft bool
	cover       float32 // XGBoost's sum_hessian
	// value is the node's expected value: the leaf value for a leaf, the
	// cover-weighted mean of its children (XGBoost's mean_values) otherwise.
	value float32
	// delta is value minus the parent's value, what Path credits to the
	// parent's split feature when the row enters this node.
	delta float32
}

// pnode is one split of the complete layout for Path: 16 bytes, with the
// expected-value change of each child next to the split that chooses it.
type pnode struct {
	threshold   float32
	feature     uint16
	defaultLeft uint16
	delta       [2]float32 // left, right
}

// LoadExplainer reads an XGBoost JSON model file for explanations (and
// scoring, through the embedded Model).
func LoadExplainer(path string) (*Explainer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load BRF model for explanations: %w", err)
	}
	if fi.Size() > maxModelBytes {
		return nil, fmt.Errorf("load BRF model %s: %d bytes is larger than any supported model (limit %d)", path, fi.Size(), maxModelBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load BRF model for explanations: %w", err)
	}
	e, err := NewExplainer(data)
	if err != nil {
		return nil, fmt.Errorf("load BRF model %s for explanations: %w", path, err)
	}
	return e, nil
}

// NewExplainer builds an Explainer from an XGBoost JSON model held in
// memory. Node expected values are computed here, once, from the covers
// XGBoost stores per node (sum_hessian). A LightGBM model is refused with an
// error wrapping ErrNotExplainable; other formats with Load's errors.
func NewExplainer(data []byte) (*Explainer, error) {
	switch detect(data) {
	case formatXGBJSON:
	case formatLightGBM:
		return nil, fmt.Errorf("%w (XGBoost's save_model(\"model.json\")); this is a LightGBM text model, which can be scored but not explained", ErrNotExplainable)
	default:
		if _, err := LoadBytes(data); err != nil {
			return nil, err
		}
		return nil, errors.New("unrecognised model format: want XGBoost JSON")
	}
	b, err := loadXGBoostJSONBuilder(data)
	if err != nil {
		return nil, err
	}
	covers, err := parseCovers(data)
	if err != nil {
		return nil, err
	}
	if len(covers) != len(b.trees) {
		return nil, fmt.Errorf("model has sum_hessian for %d trees, and %d trees", len(covers), len(b.trees))
	}
	e := &Explainer{Model: b.build(), nFeat: b.nFeat, maxDepth: b.depth, roots: make([]int32, len(b.trees))}
	bias := float64(b.base)
	for ti, t := range b.trees {
		root, err := e.addTree(t, covers[ti])
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", ti, err)
		}
		e.roots[ti] = root
		bias += float64(e.nodes[root].value)
	}
	e.bias = bias
	if b.depth >= 1 && b.depth <= maxCompleteDepth && b.nFeat <= 1<<16 && len(b.trees)<<b.depth <= 4*b.nodes+1024 {
		e.buildComplete()
	}
	return e, nil
}

// parseCovers reads every tree's sum_hessian, which Load skips.
func parseCovers(data []byte) ([][]float32String, error) {
	type trees struct {
		Trees []struct {
			SumHessian []float32String `json:"sum_hessian"`
		} `json:"trees"`
	}
	type booster struct {
		Model  *trees   `json:"model"`
		GBTree *booster `json:"gbtree"`
	}
	var f struct {
		Learner struct {
			GradientBooster booster `json:"gradient_booster"`
		} `json:"learner"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse XGBoost JSON model for node covers: %w", err)
	}
	gb := &f.Learner.GradientBooster
	if gb.GBTree != nil { // dart
		gb = gb.GBTree
	}
	if gb.Model == nil {
		return nil, errors.New("gradient_booster has no \"model\" object")
	}
	out := make([][]float32String, len(gb.Model.Trees))
	for i, t := range gb.Model.Trees {
		out[i] = t.SumHessian
	}
	return out, nil
}

// addTree appends one validated tree with its covers and expected values,
// and returns its root's index.
func (e *Explainer) addTree(t tree, cover []float32String) (int32, error) {
	n := len(t.nodes)
	if len(cover) != n {
		return 0, fmt.Errorf("sum_hessian has %d entries for %d nodes: the model carries no node covers, which explanations need (re-save it with XGBoost >= 1.0)", len(cover), n)
	}
	off := int32(len(e.nodes))
	for i, nd := range t.nodes {
		c := float32(cover[i])
		if !(c >= 0) || math.IsInf(float64(c), 0) {
			return 0, fmt.Errorf("node %d has sum_hessian %v: want a finite cover >= 0", i, c)
		}
		x := xnode{cover: c, left: -1, right: -1, feature: -1}
		if nd.leaf {
			x.value = nd.value
		} else {
			x.threshold, x.feature, x.defaultLeft = nd.threshold, int32(nd.feature), nd.defaultLeft
			x.left, x.right = off+nd.left, off+nd.right
		}
		e.nodes = append(e.nodes, x)
	}
	// Breadth-first order from the root; reversed, it visits children
	// before parents without recursion (trees may be deep).
	order := make([]int32, 1, n)
	order[0] = off
	for k := 0; k < len(order); k++ {
		if x := &e.nodes[order[k]]; x.left >= 0 {
			order = append(order, x.left, x.right)
		}
	}
	for k := len(order) - 1; k >= 0; k-- {
		x := &e.nodes[order[k]]
		if x.left < 0 {
			continue
		}
		l, r := &e.nodes[x.left], &e.nodes[x.right]
		// XGBoost's FillNodeMeanValues, in float32 and its order; the
		// explicit conversions keep Go from fusing into an FMA.
		v := float32(l.value*l.cover) + float32(r.value*r.cover)
		v = float32(v / x.cover)
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("node %d: expected value %v from sum_hessian %v (children %v and %v): covers must be positive", order[k]-off, v, x.cover, l.cover, r.cover)
		}
		x.value = v
	}
	for _, i := range order {
		if x := &e.nodes[i]; x.left >= 0 {
			e.nodes[x.left].delta = e.nodes[x.left].value - x.value
			e.nodes[x.right].delta = e.nodes[x.right].value - x.value
		}
	}
	return off, nil
}

// buildComplete lays the trees out as the margin's complete layout does
// (node i's children at 2i+1 and 2i+2, leaves above the bottom pushed down
// through don't-care splits whose deltas are 0).
func (e *Explainer) buildComplete() {
	d := e.maxDepth
	nInt := 1<<d - 1
	e.depth = d
	e.comp = make([]pnode, len(e.roots)*nInt)
	for ti, root := range e.roots {
		nodes := e.comp[ti*nInt : (ti+1)*nInt]
		var place func(src int32, pos, level int)
		place = func(src int32, pos, level int) {
			if level == d {
				return
			}
			x := e.nodes[src]
			if x.left < 0 {
				nodes[pos] = pnode{}
				place(src, 2*pos+1, level+1)
				place(src, 2*pos+2, level+1)
				return
			}
			nodes[pos] = pnode{
				threshold: x.threshold, feature: uint16(x.feature), defaultLeft: uint16(b2i(x.defaultLeft)),
				delta: [2]float32{e.nodes[x.left].delta, e.nodes[x.right].delta},
			}
			place(x.left, 2*pos+1, level+1)
			place(x.right, 2*pos+2, level+1)
		}
		place(root, 0, 0)
	}
}

// NumFeatures is the model's row length; contribution buffers hold one more
// (the bias, last, as XGBoost's pred_contribs output).
func (e *Explainer) NumFeatures() int { return e.nFeat }

// Bias is the base margin plus every tree's expected value (cover-weighted
// mean of its leaves): the margin of a row about which nothing is known,
// the same for every row and both methods.
func (e *Explainer) Bias() float64 { return e.bias }

// Contribs fills out with row's per-feature contributions by method m:
// out[j] for feature j (0 for features no split on the row's paths uses),
// out[NumFeatures()] the bias, so that the sum of out equals Margin(row).
// len(out) must be at least NumFeatures()+1; the rest is left alone. NaN
// features are missing and follow each split's default branch, as in Margin.
func (e *Explainer) Contribs(m Method, row []float32, out []float64) error {
	switch m {
	case Path:
		return e.PathContribs(row, out)
	case Exact:
		return e.ExactContribs(row, out)
	}
	return fmt.Errorf("explain: unknown method %v", m)
}

func (e *Explainer) check(row []float32, out []float64) error {
	if len(row) < e.nFeat {
		return fmt.Errorf("explain: row has %d features, the model needs %d", len(row), e.nFeat)
	}
	if len(out) < e.nFeat+1 {
		return fmt.Errorf("explain: output has room for %d values, want %d (features + bias)", len(out), e.nFeat+1)
	}
	return nil
}

// PathContribs is Contribs with Path: along each tree's decision path, the
// change of the expected value at every step is credited to the feature of
// the split taken (XGBoost's approx_contribs=True). It allocates nothing.
func (e *Explainer) PathContribs(row []float32, out []float64) error {
	if err := e.check(row, out); err != nil {
		return err
	}
	out = out[:e.nFeat+1]
	clear(out)
	if e.comp != nil {
		e.pathComplete(row, out)
	} else {
		e.pathLinked(row, out)
	}
	out[e.nFeat] = e.bias
	return nil
}

// pathComplete walks the complete layout: depth branch-free steps per tree,
// each adding the chosen child's delta to the split's feature, four trees
// at a time so the CPU overlaps their independent chains (as the margin's
// walk5). Rows without NaN (the common case) take the one-comparison step.
func (e *Explainer) pathComplete(row []float32, out []float64) {
	// Feature indices were validated against nFeat <= len(row) < len(out)
	// at load, and positions stay inside a tree's splits by construction,
	// so the steps index without bounds checks.
	rp := unsafe.Pointer(unsafe.SliceData(row))
	op := unsafe.Pointer(unsafe.SliceData(out))
	for _, v := range row[:e.nFeat] {
		if v != v {
			e.pathWalkNaN(rp, op)
			return
		}
	}
	e.pathWalkClean(rp, op)
}

// pathWalkClean is pathComplete's loop with pstepClean; pathWalkNaN is the
// same with pstepNaN. They are written out twice rather than sharing a func
// value, which the compiler would not inline.
func (e *Explainer) pathWalkClean(rp, op unsafe.Pointer) {
	d := e.depth
	size := uintptr(1<<d-1) * 16
	np := unsafe.Pointer(unsafe.SliceData(e.comp))
	nTrees := len(e.roots)
	t := 0
	for ; t+3 < nTrees; t += 4 {
		b0 := unsafe.Add(np, uintptr(t)*size)
		b1 := unsafe.Add(b0, size)
		b2 := unsafe.Add(b0, 2*size)
		b3 := unsafe.Add(b0, 3*size)
		var i, j, k, l uintptr
		for range d {
			i, j, k, l = pstepClean(b0, rp, op, i), pstepClean(b1, rp, op, j), pstepClean(b2, rp, op, k), pstepClean(b3, rp, op, l)
		}
	}
	for ; t < nTrees; t++ {
		b0 := unsafe.Add(np, uintptr(t)*size)
		var i uintptr
		for range d {
			i = pstepClean(b0, rp, op, i)
		}
	}
}

// pathWalkNaN is pathWalkClean with pstepNaN.
func (e *Explainer) pathWalkNaN(rp, op unsafe.Pointer) {
	d := e.depth
	size := uintptr(1<<d-1) * 16
	np := unsafe.Pointer(unsafe.SliceData(e.comp))
	nTrees := len(e.roots)
	t := 0
	for ; t+3 < nTrees; t += 4 {
		b0 := unsafe.Add(np, uintptr(t)*size)
		b1 := unsafe.Add(b0, size)
		b2 := unsafe.Add(b0, 2*size)
		b3 := unsafe.Add(b0, 3*size)
		var i, j, k, l uintptr
		for range d {
			i, j, k, l = pstepNaN(b0, rp, op, i), pstepNaN(b1, rp, op, j), pstepNaN(b2, rp, op, k), pstepNaN(b3, rp, op, l)
		}
	}
	for ; t < nTrees; t++ {
		b0 := unsafe.Add(np, uintptr(t)*size)
		var i uintptr
		for range d {
			i = pstepNaN(b0, rp, op, i)
		}
	}
}

// pstepClean is one Path step from position i for a row without NaN: it
// credits the chosen child's delta to the split's feature and returns the
// child's position (2i+1 left, x < threshold; 2i+2 right).
func pstepClean(tree, row, out unsafe.Pointer, i uintptr) uintptr {
	n := (*pnode)(unsafe.Add(tree, i*16))
	x := *(*float32)(unsafe.Add(row, uintptr(n.feature)*4))
	r := uintptr(0)
	if !(x < n.threshold) {
		r = 1
	}
	*(*float64)(unsafe.Add(out, uintptr(n.feature)*8)) += float64(*(*float32)(unsafe.Add(unsafe.Pointer(&n.delta), r*4)))
	return 2*i + 1 + r
}

// pstepNaN is pstepClean for rows with missing values: NaN fails x < t and
// goes right, and XOR-ing in the default-left flag sends it where the split
// says.
func pstepNaN(tree, row, out unsafe.Pointer, i uintptr) uintptr {
	n := (*pnode)(unsafe.Add(tree, i*16))
	x := *(*float32)(unsafe.Add(row, uintptr(n.feature)*4))
	r := uintptr(0)
	if !(x < n.threshold) {
		r = 1
	}
	nan := uintptr(0)
	if x != x {
		nan = 1
	}
	r ^= nan & uintptr(n.defaultLeft)
	*(*float64)(unsafe.Add(out, uintptr(n.feature)*8)) += float64(*(*float32)(unsafe.Add(unsafe.Pointer(&n.delta), r*4)))
	return 2*i + 1 + r
}

// pathLinked is the Path walk for deep or lopsided forests.
func (e *Explainer) pathLinked(row []float32, out []float64) {
	for _, i := range e.roots {
		for {
			n := &e.nodes[i]
			if n.left < 0 {
				break
			}
			next := e.next(n, row)
			out[n.feature] += float64(e.nodes[next].delta)
			i = next
		}
	}
}

// next is the child row goes to from split n: left when x < threshold in
// float32, NaN to the split's default side.
func (e *Explainer) next(n *xnode, row []float32) int32 {
	x := row[n.feature]
	if x != x {
		if n.defaultLeft {
			return n.left
		}
		return n.right
	}
	if x < n.threshold {
		return n.left
	}
	return n.right
}

// pathElement is one feature on TreeSHAP's unique path.
type pathElement struct {
	feature      int32
	zeroFraction float64 // share of the cover that goes this way
	oneFraction  float64 // 1 when the row goes this way, else 0
	pweight      float64 // permutation weight
}

// treeSHAP is one ExactContribs call's state.
type treeSHAP struct {
	e    *Explainer
	row  []float32
	phi  []float64
	path []pathElement // triangular scratch: level k's path starts after k(k+1)/2 elements
}

// ExactContribs is Contribs with Exact: TreeSHAP, the exact Shapley values
// of every tree's prediction with the node covers as the background
// distribution (XGBoost's pred_contribs=True). It costs O(leaves·depth²)
// per tree and allocates one scratch path per call.
func (e *Explainer) ExactContribs(row []float32, out []float64) error {
	if err := e.check(row, out); err != nil {
		return err
	}
	if e.maxDepth > maxExactDepth {
		return fmt.Errorf("explain exact: trees are %d levels deep, more than the %d TreeSHAP supports here; use the path method", e.maxDepth, maxExactDepth)
	}
	out = out[:e.nFeat+1]
	clear(out)
	md := e.maxDepth + 2
	s := treeSHAP{e: e, row: row, phi: out, path: make([]pathElement, md*(md+1)/2)}
	for _, r := range e.roots {
		s.recurse(r, 0, 0, 1, 1, -1)
	}
	out[e.nFeat] = e.bias
	return nil
}

// recurse is XGBoost's RegTree::TreeShap without conditioning: parentPath
// is the path so far (depth+1 elements), extended here by the parent's split
// before descending.
func (s *treeSHAP) recurse(node int32, parentOff, depth int, zeroFraction, oneFraction float64, parentFeature int32) {
	// This level's copy of the path follows the parent's in the scratch,
	// as in XGBoost (the root's starts at 1).
	off := parentOff + depth + 1
	path := s.path[off : off+depth+1]
	copy(path, s.path[parentOff:parentOff+depth+1])
	extendPath(path, depth, zeroFraction, oneFraction, parentFeature)

	n := &s.e.nodes[node]
	if n.left < 0 {
		v := float64(n.value)
		for i := 1; i <= depth; i++ {
			w := unwoundPathSum(path, depth, i)
			el := &path[i]
			s.phi[el.feature] += w * (el.oneFraction - el.zeroFraction) * v
		}
		return
	}
	hot := s.e.next(n, s.row)
	cold := n.left
	if hot == n.left {
		cold = n.right
	}
	w := float64(n.cover)
	hotZero := float64(s.e.nodes[hot].cover) / w
	coldZero := float64(s.e.nodes[cold].cover) / w
	inZero, inOne := 1.0, 1.0
	// A feature already on the path is unwound, to be re-added with this
	// split's fractions multiplied in.
	k := 0
	for ; k <= depth; k++ {
		if path[k].feature == n.feature {
			break
		}
	}
	if k != depth+1 {
		inZero, inOne = path[k].zeroFraction, path[k].oneFraction
		unwindPath(path, depth, k)
		depth--
	}
	s.recurse(hot, off, depth+1, hotZero*inZero, inOne, n.feature)
	s.recurse(cold, off, depth+1, coldZero*inZero, 0, n.feature)
}

// extendPath adds a feature with the given fractions at position depth.
func extendPath(path []pathElement, depth int, zeroFraction, oneFraction float64, feature int32) {
	path[depth] = pathElement{feature: feature, zeroFraction: zeroFraction, oneFraction: oneFraction}
	if depth == 0 {
		path[0].pweight = 1
	}
	d1 := float64(depth + 1)
	for i := depth - 1; i >= 0; i-- {
		path[i+1].pweight += oneFraction * path[i].pweight * float64(i+1) / d1
		path[i].pweight = zeroFraction * path[i].pweight * float64(depth-i) / d1
	}
}

// unwindPath removes the element at index k, undoing its extension.
func unwindPath(path []pathElement, depth, k int) {
	one, zero := path[k].oneFraction, path[k].zeroFraction
	next := path[depth].pweight
	d1 := float64(depth + 1)
	for i := depth - 1; i >= 0; i-- {
		if one != 0 {
			tmp := path[i].pweight
			path[i].pweight = next * d1 / (float64(i+1) * one)
			next = tmp - path[i].pweight*zero*float64(depth-i)/d1
		} else {
			path[i].pweight = path[i].pweight * d1 / (zero * float64(depth-i))
		}
	}
	for i := k; i < depth; i++ {
		path[i].feature = path[i+1].feature
		path[i].zeroFraction = path[i+1].zeroFraction
		path[i].oneFraction = path[i+1].oneFraction
	}
}

// unwoundPathSum is the total permutation weight the path would have with
// element k unwound.
func unwoundPathSum(path []pathElement, depth, k int) float64 {
	one, zero := path[k].oneFraction, path[k].zeroFraction
	next := path[depth].pweight
	d1 := float64(depth + 1)
	total := 0.0
	for i := depth - 1; i >= 0; i-- {
		switch {
		case one != 0:
			tmp := next * d1 / (float64(i+1) * one)
			total += tmp
			next = path[i].pweight - tmp*zero*(float64(depth-i)/d1)
		case zero != 0:
			total += (path[i].pweight / zero) / (float64(depth-i) / d1)
		}
	}
	return total
}

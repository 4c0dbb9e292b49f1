package brf

import (
	"fmt"
	"math"
	"unsafe"
)

// rawNode is one node as read from a model file, before layout.
type rawNode struct {
	feature     uint32
	threshold   float32
	defaultLeft bool
	leaf        bool
	left, right int32
	value       float32 // leaf value, already scaled by a dart weight
}

type tree struct {
	nodes []rawNode // root at 0
	depth int       // edges from the root to the deepest leaf
}

// builder collects validated trees and chooses their layout.
type builder struct {
	kind  string
	nFeat int
	base  float32
	trees []tree
	depth int // deepest tree
	nodes int // nodes reachable from the roots, all trees
}

func newBuilder(nFeat int, base float32) *builder {
	return &builder{nFeat: nFeat, base: base}
}

// add checks that every node is reached exactly once from the root (no
// cycles, no shared children) and records the tree's depth. It walks with an
// explicit stack, so a hostile deep tree cannot overflow the goroutine stack.
func (b *builder) add(t tree) error {
	n := len(t.nodes)
	seen := make([]bool, n)
	type item struct{ idx, depth int32 }
	stack := []item{{0, 0}}
	seen[0] = true
	reached := 0
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		reached++
		nd := t.nodes[it.idx]
		if nd.leaf {
			if int(it.depth) > t.depth {
				t.depth = int(it.depth)
			}
			continue
		}
		for _, c := range [2]int32{nd.left, nd.right} {
			if seen[c] {
				return fmt.Errorf("node %d: child %d is reached twice (a cycle or shared subtree), not a tree", it.idx, c)
			}
			seen[c] = true
			stack = append(stack, item{c, it.depth + 1})
		}
	}
	if t.depth > maxDepth {
		return fmt.Errorf("tree is %d levels deep, more than the %d supported", t.depth, maxDepth)
	}
	b.trees = append(b.trees, t)
	b.nodes += reached
	if t.depth > b.depth {
		b.depth = t.depth
	}
	return nil
}

const (
	// maxDepth bounds tree depth; XGBoost's own limit for depthwise growth is
	// far lower in practice, and deeper trees are surely a corrupt file.
	maxDepth = 1 << 16
	// maxCompleteDepth bounds the complete-tree layout, which stores 2^depth
	// leaves per tree whatever the real tree's shape.
	maxCompleteDepth = 10
	// defaultLeftBit marks, in a packed feature index, a split whose missing
	// values (NaN) go left.
	defaultLeftBit = 1 << 31
	featureMask    = defaultLeftBit - 1
)

// build picks the complete layout for shallow, mostly full trees (the paper's
// depth 5) and the general linked layout otherwise.
func (b *builder) build() Model {
	if b.depth <= maxCompleteDepth && b.nFeat <= 1<<16 && len(b.trees)<<b.depth <= 4*b.nodes+1024 {
		return b.buildComplete(b.kind)
	}
	return b.buildLinked(b.kind)
}

// packFeature stores a split's default side in the feature index's top bit,
// keeping linked nodes at 16 bytes.
func packFeature(n rawNode) uint32 {
	f := n.feature
	if n.defaultLeft {
		f |= defaultLeftBit
	}
	return f
}

// cnode is one split of the complete layout: 8 bytes, so a tree's first
// three levels (7 nodes, 56 bytes) span at most two cache lines.
type cnode struct {
	threshold   float32
	feature     uint16 // the complete layout needs nFeat <= 65536
	defaultLeft uint16 // 1: NaN goes left
}

// completeForest stores every tree as a complete binary tree of the forest's
// depth D: node i has children 2i+1 and 2i+2, and the 2^D leaves follow in
// their own array. A leaf above depth D is pushed down by copying its value to
// every bottom leaf under it (the splits in between are don't-cares), so every
// row takes exactly D steps per tree: no data-dependent loop exit, no leaf test.
type completeForest struct {
	kind      string
	nFeat     int
	nTrees    int
	depth     int
	base      float32
	nInternal int       // 2^D - 1 per tree
	nodes     []cnode   // nTrees * nInternal
	leaves    []float32 // nTrees * 2^D
}

func (b *builder) buildComplete(kind string) *completeForest {
	d := b.depth
	nInt := 1<<d - 1
	f := &completeForest{
		kind: kind, nFeat: b.nFeat, nTrees: len(b.trees), depth: d, base: b.base,
		nInternal: nInt,
		nodes:     make([]cnode, len(b.trees)*nInt),
		leaves:    make([]float32, len(b.trees)<<d),
	}
	for ti, t := range b.trees {
		nodes := f.nodes[ti*nInt : (ti+1)*nInt]
		leaves := f.leaves[ti<<d : (ti+1)<<d]
		var place func(src int32, pos, level int)
		place = func(src int32, pos, level int) {
			nd := t.nodes[src]
			if level == d {
				leaves[pos-nInt] = nd.value
				return
			}
			if nd.leaf {
				// Don't-care split (feature 0, threshold 0, both sides hold the same value).
				nodes[pos] = cnode{}
				place(src, 2*pos+1, level+1)
				place(src, 2*pos+2, level+1)
				return
			}
			nodes[pos] = cnode{threshold: nd.threshold, feature: uint16(nd.feature), defaultLeft: uint16(b2i(nd.defaultLeft))}
			place(nd.left, 2*pos+1, level+1)
			place(nd.right, 2*pos+2, level+1)
		}
		place(0, 0, 0)
	}
	return f
}

// NumFeatures implements Model.
func (f *completeForest) NumFeatures() int { return f.nFeat }

// NumTrees implements Model.
func (f *completeForest) NumTrees() int { return f.nTrees }

// Kind implements Model.
func (f *completeForest) Kind() string { return f.kind }

// Margin implements Model. Leaves are summed in float32 in tree order, as
// XGBoost's CPU predictor does, so margins agree to the last bits.
func (f *completeForest) Margin(row []float32) float64 {
	if len(row) < f.nFeat {
		return math.NaN()
	}
	if f.depth == 5 {
		return float64(f.margin5(row))
	}
	sum := f.base
	nInt, d := f.nInternal, f.depth
	for t := 0; t < f.nTrees; t++ {
		nodes := f.nodes[t*nInt : (t+1)*nInt : (t+1)*nInt]
		i := 0
		for l := 0; l < d; l++ {
			i = 2*i + 1 + step(nodes[i], row)
		}
		sum += f.leaves[t<<d+i-nInt]
	}
	return float64(sum)
}

// margin5 is Margin for the paper's depth 5. Rows without NaN (the common
// case) take a path with one comparison per split.
func (f *completeForest) margin5(row []float32) float32 {
	// Feature indices were validated against nFeat <= len(row) at load, and
	// positions stay inside a tree's 31 nodes and 32 leaves by construction,
	// so the walks index without bounds checks.
	rp := unsafe.Pointer(unsafe.SliceData(row))
	for _, v := range row[:f.nFeat] {
		if v != v {
			return f.walk5NaN(rp)
		}
	}
	return f.walk5(rp)
}

// stepClean is one branch-free step from position i of the tree at node
// array tree, for a row without NaN: to 2i+1 (left, x < threshold) or 2i+2.
func stepClean(tree, row unsafe.Pointer, i uintptr) uintptr {
	n := (*cnode)(unsafe.Add(tree, i*8))
	x := *(*float32)(unsafe.Add(row, uintptr(n.feature)*4))
	r := uintptr(0)
	if !(x < n.threshold) {
		r = 1
	}
	return 2*i + 1 + r
}

// stepNaN is stepClean for rows with missing values. A NaN fails x < t and
// so goes right; XOR-ing in the default-left flag sends it left where the
// split says, still without a branch.
func stepNaN(tree, row unsafe.Pointer, i uintptr) uintptr {
	n := (*cnode)(unsafe.Add(tree, i*8))
	x := *(*float32)(unsafe.Add(row, uintptr(n.feature)*4))
	r := uintptr(0)
	if !(x < n.threshold) {
		r = 1
	}
	nan := uintptr(0)
	if x != x {
		nan = 1
	}
	return 2*i + 1 + (r ^ (nan & uintptr(n.defaultLeft)))
}

// walk5 sums the leaves every depth-5 tree reaches, in float32 and tree
// order, fully unrolled over four trees at a time so the CPU overlaps their
// independent load-compare chains. walk5NaN is the same with stepNaN; the
// two are written out rather than shared through a func value, which the
// compiler would not inline.
func (f *completeForest) walk5(rp unsafe.Pointer) float32 {
	const nInt, nLeaf = 31, 32
	np := unsafe.Pointer(unsafe.SliceData(f.nodes))
	lp := unsafe.Pointer(unsafe.SliceData(f.leaves))
	sum := f.base
	t := 0
	for ; t+3 < f.nTrees; t += 4 {
		b0 := unsafe.Add(np, uintptr(t)*nInt*8)
		b1 := unsafe.Add(b0, nInt*8)
		b2 := unsafe.Add(b0, 2*nInt*8)
		b3 := unsafe.Add(b0, 3*nInt*8)
		i, j, k, l := stepClean(b0, rp, 0), stepClean(b1, rp, 0), stepClean(b2, rp, 0), stepClean(b3, rp, 0)
		i, j, k, l = stepClean(b0, rp, i), stepClean(b1, rp, j), stepClean(b2, rp, k), stepClean(b3, rp, l)
		i, j, k, l = stepClean(b0, rp, i), stepClean(b1, rp, j), stepClean(b2, rp, k), stepClean(b3, rp, l)
		i, j, k, l = stepClean(b0, rp, i), stepClean(b1, rp, j), stepClean(b2, rp, k), stepClean(b3, rp, l)
		i, j, k, l = stepClean(b0, rp, i), stepClean(b1, rp, j), stepClean(b2, rp, k), stepClean(b3, rp, l)
		// After 5 steps i is in 31..62: leaf i-31 of the tree. Every
		// pointer stays inside the leaves array (unsafe.Add below its
		// start, even briefly, is invalid: the GC may see it).
		lb := unsafe.Add(lp, uintptr(t)*nLeaf*4)
		sum += *(*float32)(unsafe.Add(lb, (i-nInt)*4))
		sum += *(*float32)(unsafe.Add(lb, (nLeaf+j-nInt)*4))
		sum += *(*float32)(unsafe.Add(lb, (2*nLeaf+k-nInt)*4))
		sum += *(*float32)(unsafe.Add(lb, (3*nLeaf+l-nInt)*4))
	}
	for ; t < f.nTrees; t++ {
		b0 := unsafe.Add(np, uintptr(t)*nInt*8)
		i := uintptr(0)
		for lv := 0; lv < 5; lv++ {
			i = stepClean(b0, rp, i)
		}
		sum += *(*float32)(unsafe.Add(lp, (uintptr(t)*nLeaf+i-nInt)*4))
	}
	return sum
}

// walk5NaN is walk5 with stepNaN.
func (f *completeForest) walk5NaN(rp unsafe.Pointer) float32 {
	const nInt, nLeaf = 31, 32
	np := unsafe.Pointer(unsafe.SliceData(f.nodes))
	lp := unsafe.Pointer(unsafe.SliceData(f.leaves))
	sum := f.base
	t := 0
	for ; t+3 < f.nTrees; t += 4 {
		b0 := unsafe.Add(np, uintptr(t)*nInt*8)
		b1 := unsafe.Add(b0, nInt*8)
		b2 := unsafe.Add(b0, 2*nInt*8)
		b3 := unsafe.Add(b0, 3*nInt*8)
		i, j, k, l := stepNaN(b0, rp, 0), stepNaN(b1, rp, 0), stepNaN(b2, rp, 0), stepNaN(b3, rp, 0)
		i, j, k, l = stepNaN(b0, rp, i), stepNaN(b1, rp, j), stepNaN(b2, rp, k), stepNaN(b3, rp, l)
		i, j, k, l = stepNaN(b0, rp, i), stepNaN(b1, rp, j), stepNaN(b2, rp, k), stepNaN(b3, rp, l)
		i, j, k, l = stepNaN(b0, rp, i), stepNaN(b1, rp, j), stepNaN(b2, rp, k), stepNaN(b3, rp, l)
		i, j, k, l = stepNaN(b0, rp, i), stepNaN(b1, rp, j), stepNaN(b2, rp, k), stepNaN(b3, rp, l)
		// After 5 steps i is in 31..62: leaf i-31 of the tree. Every
		// pointer stays inside the leaves array (unsafe.Add below its
		// start, even briefly, is invalid: the GC may see it).
		lb := unsafe.Add(lp, uintptr(t)*nLeaf*4)
		sum += *(*float32)(unsafe.Add(lb, (i-nInt)*4))
		sum += *(*float32)(unsafe.Add(lb, (nLeaf+j-nInt)*4))
		sum += *(*float32)(unsafe.Add(lb, (2*nLeaf+k-nInt)*4))
		sum += *(*float32)(unsafe.Add(lb, (3*nLeaf+l-nInt)*4))
	}
	for ; t < f.nTrees; t++ {
		b0 := unsafe.Add(np, uintptr(t)*nInt*8)
		i := uintptr(0)
		for lv := 0; lv < 5; lv++ {
			i = stepNaN(b0, rp, i)
		}
		sum += *(*float32)(unsafe.Add(lp, (uintptr(t)*nLeaf+i-nInt)*4))
	}
	return sum
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lnode is one split of the linked layout; a negative child c is leaf ^c.
type lnode struct {
	threshold   float32
	feature     uint32
	left, right int32
}

// linkedForest is the general layout for deep or lopsided trees: all splits
// of all trees in one slice, leaves folded into the child links.
type linkedForest struct {
	kind   string
	nFeat  int
	base   float32
	roots  []int32 // per tree: node index, or ^leaf when the tree is one leaf
	nodes  []lnode
	leaves []float32
}

func (b *builder) buildLinked(kind string) *linkedForest {
	f := &linkedForest{kind: kind, nFeat: b.nFeat, base: b.base, roots: make([]int32, len(b.trees))}
	for ti, t := range b.trees {
		f.roots[ti] = placeIter(t, f)
	}
	return f
}

// placeIter lays one tree out in pre-order without recursion (trees may be
// deep) and returns its root link.
func placeIter(t tree, f *linkedForest) int32 {
	type item struct {
		src    int32
		parent int  // index into f.nodes, -1 for the root
		right  bool // which link of the parent to set
	}
	var root int32
	stack := []item{{0, -1, false}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		nd := t.nodes[it.src]
		var link int32
		if nd.leaf {
			f.leaves = append(f.leaves, nd.value)
			link = ^int32(len(f.leaves) - 1)
		} else {
			link = int32(len(f.nodes))
			f.nodes = append(f.nodes, lnode{threshold: nd.threshold, feature: packFeature(nd)})
			stack = append(stack, item{nd.right, int(link), true}, item{nd.left, int(link), false})
		}
		switch {
		case it.parent < 0:
			root = link
		case it.right:
			f.nodes[it.parent].right = link
		default:
			f.nodes[it.parent].left = link
		}
	}
	return root
}

// NumFeatures implements Model.
func (f *linkedForest) NumFeatures() int { return f.nFeat }

// NumTrees implements Model.
func (f *linkedForest) NumTrees() int { return len(f.roots) }

// Kind implements Model.
func (f *linkedForest) Kind() string { return f.kind }

// Margin implements Model.
func (f *linkedForest) Margin(row []float32) float64 {
	if len(row) < f.nFeat {
		return math.NaN()
	}
	sum := f.base
	for _, i := range f.roots {
		for i >= 0 {
			n := &f.nodes[i]
			x := row[n.feature&featureMask]
			right := !(x < n.threshold)
			if x != x {
				right = n.feature&defaultLeftBit == 0
			}
			if right {
				i = n.right
			} else {
				i = n.left
			}
		}
		sum += f.leaves[^i]
	}
	return float64(sum)
}

// step returns 0 to go left and 1 to go right: left when x < threshold in
// float32 (XGBoost's rule), NaN to the split's default side. Written as
// conditional moves, not branches, because the direction is unpredictable.
func step(n cnode, row []float32) int {
	x := row[n.feature]
	return b2i(!(x < n.threshold)) ^ (b2i(x != x) & int(n.defaultLeft))
}

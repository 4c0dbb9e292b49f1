package segad

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// SegmentBounds is what a plausible per-frame segmentation looks like for
// one segment: present when Required, and covering a share of the map
// between MinArea and MaxArea (0..1).
type SegmentBounds struct {
	Required         bool
	MinArea, MaxArea float64
}

// ImplausibleError is a per-frame segmentation that cannot be trusted to
// split the maps: a required segment missing, a segment's area out of its
// bounds, a label out of range or a class score that is not a number. The
// part fails closed (segmentation_error) rather than being judged on the
// wrong pixels.
type ImplausibleError struct {
	// Segment is the segment concerned ("" for a label or score problem).
	Segment string
	// Area is its measured share of the map (NaN when not measured).
	Area float64
	// Msg says what is wrong.
	Msg string
}

func (e *ImplausibleError) Error() string { return "implausible segmentation: " + e.Msg }

// FrameMasker turns a segmentation model's output (class scores
// [L,h,w] or a label map [h,w] at the model's resolution) into the frame's
// labels at the anomaly maps' size (nearest neighbour, the rule Mask.Resize
// uses) and checks them against the plausibility bounds. Label 255 is
// Ignore, as in mask files; any other label >= L is out of range. It
// allocates nothing per frame and is not safe for concurrent use.
type FrameMasker struct {
	names         []string
	bounds        []SegmentBounds
	srcW, srcH    int
	dstW, dstH    int
	xs, ys        []int // nearest source column/row per destination column/row
	counts        []int
	src           []uint8   // labels at the model's resolution
	best          []float32 // the running maximum score per model pixel
	identityScale bool      // the model gives labels at the map size: resize is a copy
}

// NewFrameMasker prepares the conversion from a srcW x srcH model output
// to dstW x dstH labels for the named segments (label order) with their
// bounds (nil: none).
func NewFrameMasker(names []string, bounds []SegmentBounds, srcW, srcH, dstW, dstH int) (*FrameMasker, error) {
	if len(names) == 0 || len(names) > MaxSegments {
		return nil, fmt.Errorf("frame masker: %d segments, want 1..%d", len(names), MaxSegments)
	}
	if bounds != nil && len(bounds) != len(names) {
		return nil, fmt.Errorf("frame masker: %d bounds for %d segments", len(bounds), len(names))
	}
	if srcW <= 0 || srcH <= 0 || dstW <= 0 || dstH <= 0 {
		return nil, fmt.Errorf("frame masker: sizes %dx%d -> %dx%d must be positive", srcW, srcH, dstW, dstH)
	}
	for i, n := range names {
		if err := CheckName(n); err != nil {
			return nil, fmt.Errorf("frame masker: segment %d: %w", i, err)
		}
	}
	if bounds == nil {
		bounds = make([]SegmentBounds, len(names))
		for i := range bounds {
			bounds[i].MaxArea = 1
		}
	}
	f := &FrameMasker{names: slices.Clone(names), bounds: slices.Clone(bounds), srcW: srcW, srcH: srcH, dstW: dstW, dstH: dstH,
		xs: make([]int, dstW), ys: make([]int, dstH), counts: make([]int, len(names)),
		src: make([]uint8, srcW*srcH), identityScale: srcW == dstW && srcH == dstH}
	for x := range f.xs {
		f.xs[x] = min(x*srcW/dstW, srcW-1)
	}
	for y := range f.ys {
		f.ys[y] = min(y*srcH/dstH, srcH-1)
	}
	return f, nil
}

// Names returns the segment names in label order.
func (f *FrameMasker) Names() []string { return f.names }

// Size returns the labels' size (the maps').
func (f *FrameMasker) Size() (w, h int) { return f.dstW, f.dstH }

// FromScores writes into dst (dstW*dstH) the argmax over L class-score
// planes (scores: L*srcW*srcH, plane-major), ties to the lower label as
// numpy's argmax, then checks plausibility. A score that is NaN or
// infinite is an error: argmax over garbage would be a guess.
func (f *FrameMasker) FromScores(dst []uint8, scores []float32) error {
	L, plane := len(f.names), f.srcW*f.srcH
	if len(scores) != L*plane {
		return fmt.Errorf("class scores hold %d values, want %d labels x %dx%d", len(scores), L, f.srcW, f.srcH)
	}
	if len(dst) != f.dstW*f.dstH {
		return fmt.Errorf("labels buffer holds %d, want %dx%d", len(dst), f.dstW, f.dstH)
	}
	src := f.src
	// Plane by plane keeps the reads sequential: best[i] is the running
	// maximum, kept in a scratch slice of the first plane's values.
	first := scores[:plane]
	var bad float32
	for i, v := range first {
		src[i] = 0
		bad += v - v // NaN or Inf makes bad NaN
	}
	best := f.bestScratch(plane)
	copy(best, first)
	for j := 1; j < L; j++ {
		p := scores[j*plane : (j+1)*plane]
		p = p[:len(best)]
		for i, v := range p {
			bad += v - v
			if v > best[i] {
				best[i], src[i] = v, uint8(j)
			}
		}
	}
	if bad != 0 || bad != bad {
		for i, v := range scores {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				j, p := i/plane, i%plane
				return &ImplausibleError{Segment: f.names[j], Area: math.NaN(),
					Msg: fmt.Sprintf("class score of label %d %q is %v at model pixel (%d, %d): the segmentation model gives no number there", j, f.names[j], v, p%f.srcW, p/f.srcW)}
			}
		}
	}
	f.resize(dst, src)
	return f.Check(dst)
}

// bestScratch is reused float32 scratch for the running maximum.
func (f *FrameMasker) bestScratch(n int) []float32 {
	if cap(f.best) < n {
		f.best = make([]float32, n)
	}
	return f.best[:n]
}

// FromLabels writes into dst the model's label map (srcW*srcH values)
// resized to the map size, then checks plausibility. A label that is not
// an integer in 0..L-1 or 255 (Ignore) is an error.
func FromLabels[T int64 | int32 | uint8 | float32](f *FrameMasker, dst []uint8, labels []T) error {
	if len(labels) != f.srcW*f.srcH {
		return fmt.Errorf("label map holds %d values, want %dx%d", len(labels), f.srcW, f.srcH)
	}
	if len(dst) != f.dstW*f.dstH {
		return fmt.Errorf("labels buffer holds %d, want %dx%d", len(dst), f.dstW, f.dstH)
	}
	L := T(len(f.names))
	for i, v := range labels {
		if v >= 0 && v < L {
			f.src[i] = uint8(v)
			if T(f.src[i]) == v { // an integer (float32 labels may not be)
				continue
			}
		} else if v == Ignore {
			f.src[i] = Ignore
			continue
		}
		return &ImplausibleError{Area: math.NaN(), Msg: fmt.Sprintf("label %v at model pixel (%d, %d) is not one of 0..%d (%d labels in segad.mask.labels) or 255 (ignore)", v, i%f.srcW, i/f.srcW, len(f.names)-1, len(f.names))}
	}
	f.resize(dst, f.src)
	return f.Check(dst)
}

// resize copies src (srcW x srcH) into dst (dstW x dstH) nearest neighbour.
func (f *FrameMasker) resize(dst, src []uint8) {
	if f.identityScale {
		copy(dst, src)
		return
	}
	for y, sy := range f.ys {
		row := src[sy*f.srcW : (sy+1)*f.srcW]
		out := dst[y*f.dstW : (y+1)*f.dstW]
		for x, sx := range f.xs {
			out[x] = row[sx]
		}
	}
}

// Check measures every segment's share of the labels (dstW*dstH) and
// holds it to the bounds: the first segment that is required and missing,
// or outside its area bounds, is an *ImplausibleError naming it and its
// measured area.
func (f *FrameMasker) Check(labels []uint8) error {
	// A histogram over all 256 values needs no branch per pixel.
	var hist [256]int
	for _, l := range labels {
		hist[l]++
	}
	copy(f.counts, hist[:len(f.names)])
	total := float64(len(labels))
	for j, b := range f.bounds {
		a := float64(f.counts[j]) / total
		switch {
		case b.Required && f.counts[j] == 0:
			return &ImplausibleError{Segment: f.names[j], Area: 0, Msg: fmt.Sprintf("required segment %q is missing (area 0 of %dx%d)", f.names[j], f.dstW, f.dstH)}
		case a < b.MinArea || a > b.MaxArea:
			return &ImplausibleError{Segment: f.names[j], Area: a, Msg: fmt.Sprintf("segment %q covers %.4f of the map, outside its bounds [%g, %g] (segad.mask.area)", f.names[j], a, b.MinArea, b.MaxArea)}
		}
	}
	return nil
}

// Counts returns the pixel count per segment measured by the last Check
// (shared: do not modify).
func (f *FrameMasker) Counts() []int { return f.counts }

// NewFrameExtractor prepares feature extraction for maps of w x h whose
// mask changes every frame (SetLabels): the scratch is sized for the whole
// map once, so per-frame masks allocate nothing after the first frames.
func NewFrameExtractor(w, h int, segments, detectors []string, extra string) (*Extractor, error) {
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("new extractor: map size %dx%d must be positive", w, h)
	}
	// A mask with every pixel in segment 0 passes NewExtractor's checks;
	// its runs are replaced by the first SetLabels.
	m := &Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: segments}
	e, err := NewExtractor(m, detectors, extra)
	if err != nil {
		return nil, err
	}
	e.perFrame = true
	return e, nil
}

// SetLabels replaces the extractor's mask by this frame's labels (w*h,
// label j = segment j, anything >= L belongs to no segment), recomputing
// the label runs in place. An extractor made by NewExtractor keeps its
// static mask: SetLabels is refused on it so a static model never pays
// for (or is changed by) a per-frame mask.
func (e *Extractor) SetLabels(labels []uint8) error {
	if !e.perFrame {
		return errors.New("set labels: this extractor has a static mask (use NewFrameExtractor)")
	}
	if len(labels) != e.width*e.height {
		return fmt.Errorf("set labels: %d labels for a %dx%d map", len(labels), e.width, e.height)
	}
	L, w := len(e.segments), e.width
	clear(e.segN)
	e.segRuns, e.ignoreRuns = e.segRuns[:0], e.ignoreRuns[:0]
	// One pass over the pixels finds the runs (row by row: runs stop at
	// row ends, as NewExtractor's do) and counts the segments; a run's dst
	// holds its label until the offsets are known.
	for y := 0; y < e.height; y++ {
		row := labels[y*w : (y+1)*w]
		for x := 0; x < w; {
			l, x0 := row[x], x
			for x++; x < w && row[x] == l; x++ {
			}
			r := run{start: int32(y*w + x0), n: int32(x - x0)}
			if int(l) < L {
				r.dst = int32(l)
				e.segN[l] += x - x0
				e.segRuns = append(e.segRuns, r)
			} else {
				e.ignoreRuns = append(e.ignoreRuns, r)
			}
		}
	}
	total, largest := 0, 0
	for j, n := range e.segN {
		e.segOff[j] = total
		total += n
		largest = max(largest, n)
	}
	if cap(e.scratch) < total {
		e.scratch = make([]float32, e.width*e.height)
	}
	e.scratch = e.scratch[:total]
	if cap(e.cand) < largest {
		e.cand = make([]float32, e.width*e.height)
	}
	e.cand = e.cand[:largest]
	if cap(e.fill) < L {
		e.fill = make([]int, L)
	}
	fill := e.fill[:L]
	copy(fill, e.segOff)
	for i := range e.segRuns {
		r := &e.segRuns[i]
		l := r.dst
		r.dst = int32(fill[l])
		fill[l] += int(r.n)
	}
	return nil
}

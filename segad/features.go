package segad

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Statistic names, in the order the reference code computes them per
// segment and detector.
var statNames = [4]string{"q995", "skew", "kurtosis", "mean"}

// StatsPerSegment is the number of statistics per segment and detector.
const StatsPerSegment = 4

// quantile is the reference code's np.quantile level.
const quantile = 0.995

// resolution is numpy's finfo(float32).resolution, which scipy uses for its
// "data are nearly identical" rule on float32 maps.
const resolution = 1e-6

// FeatureNames returns the stable feature names SegAD's input row has for the
// given segments, detectors and optional extra score ("" = none):
//
//	<segment>.<detector>.q995|skew|kurtosis|mean   segment-major, then detector
//	<detector>.max                                 one per detector
//	<extra>.score                                  only when extra != ""
//
// This is exactly the reference code's column order (4*L*K + K columns),
// with the optional supervised-classifier score appended last.
func FeatureNames(segments, detectors []string, extra string) []string {
	names := make([]string, 0, StatsPerSegment*len(segments)*len(detectors)+len(detectors)+1)
	for _, s := range segments {
		for _, d := range detectors {
			for _, st := range statNames {
				names = append(names, s+"."+d+"."+st)
			}
		}
	}
	for _, d := range detectors {
		names = append(names, d+".max")
	}
	if extra != "" {
		names = append(names, extra+".score")
	}
	return names
}

// run is a horizontal run of pixels of one label in raster order; dst is its
// position in the extractor's scratch buffer (segments are stored one after
// another, each contiguous).
type run struct {
	start, n, dst int32
}

// Extractor computes SegAD features for one mask and a fixed list of
// detectors. Construction precomputes the mask's label runs, so Extract
// allocates nothing: each map is copied run by run into per-segment
// contiguous scratch (memmove speed), then each segment's moments are two
// streaming passes and its 0.995 quantile a Floyd-Rivest selection.
//
// An Extractor is not safe for concurrent use: Extract reuses one scratch
// buffer. Give each worker goroutine its own (NewExtractor is cheap).
type Extractor struct {
	width, height int
	segments      []string
	detectors     []string
	extra         string
	names         []string

	segRuns    []run // runs of segment pixels, any segment
	ignoreRuns []run // runs of pixels labelled >= L (no segment; still in the global max)
	segOff     []int // start of segment j in scratch
	segN       []int // pixel count of segment j
	scratch    []float32
	sample     []float32 // quantile pre-selection sample (sampleSize)
	cand       []float32 // quantile candidates: the tail above the sample's threshold

	perFrame bool  // the mask changes per frame (SetLabels, maskmodel.go)
	fill     []int // SetLabels' scratch
}

// NewExtractor prepares feature extraction for maps of the mask's size.
// detectors names the maps Extract receives, in that order; extra names the
// optional extra score appended last ("" for none). Names must pass
// CheckName and be unique; the mask must pass Validate.
func NewExtractor(mask *Mask, detectors []string, extra string) (*Extractor, error) {
	if mask == nil {
		return nil, errors.New("new extractor: nil mask")
	}
	if _, err := mask.Validate(); err != nil {
		return nil, fmt.Errorf("new extractor: %w", err)
	}
	if len(detectors) == 0 {
		return nil, errors.New("new extractor: no detectors")
	}
	seen := map[string]bool{}
	for _, d := range detectors {
		if err := CheckName(d); err != nil {
			return nil, fmt.Errorf("new extractor: detector: %w", err)
		}
		if seen[d] {
			return nil, fmt.Errorf("new extractor: detector %q listed twice", d)
		}
		seen[d] = true
	}
	if extra != "" {
		if err := CheckName(extra); err != nil {
			return nil, fmt.Errorf("new extractor: extra score: %w", err)
		}
	}
	L := mask.NumSegments()
	e := &Extractor{
		width: mask.Width, height: mask.Height,
		segments:  append([]string(nil), mask.Names...),
		detectors: append([]string(nil), detectors...),
		extra:     extra,
		segOff:    make([]int, L),
		segN:      mask.Counts(),
	}
	e.names = FeatureNames(e.segments, e.detectors, extra)
	total := 0
	for j, n := range e.segN {
		e.segOff[j] = total
		total += n
	}
	e.scratch = make([]float32, total)
	e.sample = make([]float32, sampleSize)
	e.cand = make([]float32, slices.Max(append([]int{0}, e.segN...)))
	fill := append([]int(nil), e.segOff...)
	lab := mask.Labels
	for i := 0; i < len(lab); {
		l := lab[i]
		j := i + 1
		// Runs stop at row ends too, which keeps them meaningful for
		// debugging; the cost is one run per row at most.
		for j < len(lab) && lab[j] == l && j%e.width != 0 {
			j++
		}
		r := run{start: int32(i), n: int32(j - i)}
		if int(l) < L {
			r.dst = int32(fill[l])
			fill[l] += j - i
			e.segRuns = append(e.segRuns, r)
		} else {
			e.ignoreRuns = append(e.ignoreRuns, r)
		}
		i = j
	}
	return e, nil
}

// Names returns the feature names in row order (see FeatureNames). The
// slice is shared: do not modify it.
func (e *Extractor) Names() []string { return e.names }

// NumFeatures returns the row length, 4*L*K + K (+1 with an extra score).
func (e *Extractor) NumFeatures() int { return len(e.names) }

// Detectors returns the detector names in map order.
func (e *Extractor) Detectors() []string { return e.detectors }

// Size returns the map size the extractor expects.
func (e *Extractor) Size() (width, height int) { return e.width, e.height }

// Extract writes the feature row of one image into dst (len NumFeatures).
// maps[k] is detector k's anomaly map, row-major float32 of the mask's size.
// extra is the extra score, ignored when the extractor has none.
//
// A map of the wrong size or with a NaN/Inf pixel is an error naming the
// detector; the daemon then fails the part closed. On error dst is partly
// written and must not be scored.
func (e *Extractor) Extract(dst []float32, maps [][]float32, extra float32) error {
	K := len(e.detectors)
	if len(dst) != len(e.names) {
		return fmt.Errorf("extract features: dst has %d slots, want %d", len(dst), len(e.names))
	}
	if len(maps) != K {
		return fmt.Errorf("extract features: got %d maps, want %d (detectors %v)", len(maps), K, e.detectors)
	}
	npix := e.width * e.height
	for k, m := range maps {
		if len(m) != npix {
			return fmt.Errorf("extract features: detector %q map has %d pixels, want %dx%d = %d",
				e.detectors[k], len(m), e.width, e.height, npix)
		}
	}
	L := len(e.segments)
	for k, m := range maps {
		m = m[:npix]
		// Scatter the map into per-segment contiguous scratch.
		for _, r := range e.segRuns {
			copy(e.scratch[r.dst:r.dst+r.n], m[r.start:r.start+r.n])
		}
		gmax := float32(math.Inf(-1))
		// Pixels of no segment still count in the global max, as np.max of
		// the whole map does in the reference.
		var isum float64
		for _, r := range e.ignoreRuns {
			for _, v := range m[r.start : r.start+r.n] {
				isum += float64(v)
				if v > gmax {
					gmax = v
				}
			}
		}
		if isum-isum != 0 {
			return nonFinite(e.detectors[k], m)
		}
		for j := 0; j < L; j++ {
			o := (j*K + k) * StatsPerSegment
			x := e.scratch[e.segOff[j] : e.segOff[j]+e.segN[j]]
			if len(x) == 0 {
				dst[o], dst[o+1], dst[o+2], dst[o+3] = 0, 0, 0, 0
				continue
			}
			sum, mx := sumMax(x)
			if sum-sum != 0 {
				return nonFinite(e.detectors[k], m)
			}
			if mx > gmax {
				gmax = mx
			}
			mean := sum / float64(len(x))
			var m2, m3, m4, q float64
			if len(x) >= sampledQuantileMin {
				m2, m3, m4, q = e.momentsAndQuantile(x, mean)
			} else {
				m2, m3, m4 = centralMoments(x, mean)
				q = quantile995(x)
			}
			skew, kurt := math.NaN(), math.NaN()
			if r := resolution * mean; !(m2 <= r*r) {
				skew = m3 / (m2 * math.Sqrt(m2))
				kurt = m4/(m2*m2) - 3
			}
			dst[o] = float32(q)
			dst[o+1] = float32(skew)
			dst[o+2] = float32(kurt)
			dst[o+3] = float32(mean)
		}
		dst[StatsPerSegment*L*K+k] = gmax
	}
	if e.extra != "" {
		dst[len(dst)-1] = extra
	}
	return nil
}

// nonFinite builds the error for a map holding NaN or Inf; it runs only on
// the error path, so it can afford to find the first bad pixel.
func nonFinite(detector string, m []float32) error {
	return fmt.Errorf("extract features: detector %q map: %w", detector, FirstNonFinite(m))
}

// FirstNonFinite returns an error naming the first NaN or Inf pixel of a
// map given as flat data, or nil when all pixels are finite.
func FirstNonFinite(m []float32) error {
	for i, v := range m {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("pixel %d is %v (anomaly maps must be finite)", i, v)
		}
	}
	return nil
}

// sumMax returns the float64 sum and the maximum of x (len > 0). Four
// accumulators break the add dependency chain.
func sumMax(x []float32) (float64, float32) {
	var s0, s1, s2, s3 float64
	mx := x[0]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a, b, c, d := x[i], x[i+1], x[i+2], x[i+3]
		s0 += float64(a)
		s1 += float64(b)
		s2 += float64(c)
		s3 += float64(d)
		if a > mx {
			mx = a
		}
		if b > mx {
			mx = b
		}
		if c > mx {
			mx = c
		}
		if d > mx {
			mx = d
		}
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
		if x[i] > mx {
			mx = x[i]
		}
	}
	return (s0 + s1) + (s2 + s3), mx
}

// centralMoments returns the biased 2nd, 3rd and 4th central moments of x
// about mean, accumulated in float64 over two lanes.
func centralMoments(x []float32, mean float64) (m2, m3, m4 float64) {
	var a2, a3, a4, b2, b3, b4 float64
	i := 0
	for ; i+2 <= len(x); i += 2 {
		d := float64(x[i]) - mean
		e := float64(x[i+1]) - mean
		dd := d * d
		ee := e * e
		a2 += dd
		a3 += dd * d
		a4 += dd * dd
		b2 += ee
		b3 += ee * e
		b4 += ee * ee
	}
	if i < len(x) {
		d := float64(x[i]) - mean
		dd := d * d
		a2 += dd
		a3 += dd * d
		a4 += dd * dd
	}
	n := float64(len(x))
	return (a2 + b2) / n, (a3 + b3) / n, (a4 + b4) / n
}

// Large segments find their 0.995 quantile without reordering the whole
// segment: a strided sample gives a threshold safely below the quantile, the
// moments pass (which reads every pixel anyway) copies the pixels at or above
// it into a small candidate buffer, and selection runs on those candidates
// only. If the sample was unlucky and the threshold lies above the quantile,
// it falls back to selection over the whole segment, so the result is exact
// either way.
const (
	sampleSize         = 1024
	sampledQuantileMin = 4 * sampleSize
)

// momentsAndQuantile returns the central moments (as centralMoments) and the
// 0.995 quantile (as quantile995) of x, len(x) >= sampledQuantileMin.
func (e *Extractor) momentsAndQuantile(x []float32, mean float64) (m2, m3, m4, q float64) {
	n := len(x)
	h := float64(n-1) * quantile
	i := int(h)
	// Sample rank: the quantile's rank in the sample minus 4 standard
	// deviations of a sample quantile, so the threshold is below the true
	// quantile except with negligible probability.
	p := float64(i) / float64(n-1)
	r := int((p - 4*math.Sqrt(p*(1-p)/sampleSize)) * (sampleSize - 1))
	stride := n / sampleSize
	for k := range e.sample {
		e.sample[k] = x[k*stride]
	}
	selectK(e.sample, r)
	t := e.sample[r]

	// Two accumulator lanes, as in centralMoments, with the tail copy in
	// the same pass (its branch is taken for ~1% of pixels).
	var a2, a3, a4, b2, b3, b4 float64
	c := 0
	cand := e.cand[:n]
	j := 0
	for ; j+2 <= n; j += 2 {
		u, v := x[j], x[j+1]
		if u >= t {
			cand[c] = u
			c++
		}
		if v >= t {
			cand[c] = v
			c++
		}
		d := float64(u) - mean
		f := float64(v) - mean
		dd, ff := d*d, f*f
		a2 += dd
		a3 += dd * d
		a4 += dd * dd
		b2 += ff
		b3 += ff * f
		b4 += ff * ff
	}
	if j < n {
		u := x[j]
		if u >= t {
			cand[c] = u
			c++
		}
		d := float64(u) - mean
		dd := d * d
		a2 += dd
		a3 += dd * d
		a4 += dd * dd
	}
	fn := float64(n)
	m2, m3, m4 = (a2+b2)/fn, (a3+b3)/fn, (a4+b4)/fn
	below := n - c
	if below > i {
		return m2, m3, m4, quantile995(x)
	}
	cs := cand[:c]
	k := i - below
	selectK(cs, k)
	lo := float64(cs[k])
	if k+1 >= c {
		return m2, m3, m4, lo
	}
	hi := cs[k+1]
	for _, v := range cs[k+2:] {
		if v < hi {
			hi = v
		}
	}
	return m2, m3, m4, lo + (h-float64(i))*(float64(hi)-lo)
}

// quantile995 returns numpy's linear-interpolation quantile 0.995 of x
// (len > 0, finite). It reorders x: selection instead of a full sort.
func quantile995(x []float32) float64 {
	n := len(x)
	h := float64(n-1) * quantile
	i := int(h)
	frac := h - float64(i)
	selectK(x, i)
	lo := float64(x[i])
	if i+1 >= n {
		return lo
	}
	// After selection everything right of i is >= x[i]; the next order
	// statistic is the smallest of them.
	hi := x[i+1]
	for _, v := range x[i+2:] {
		if v < hi {
			hi = v
		}
	}
	return lo + frac*(float64(hi)-lo)
}

// selectK reorders a so that a[k] is the k-th smallest element, everything
// left of it <= a[k] and everything right of it >= a[k] (Floyd-Rivest
// selection: about n + min(k, n-k) comparisons on average).
func selectK(a []float32, k int) {
	floydRivest(a, 0, len(a)-1, k)
}

func floydRivest(a []float32, left, right, k int) {
	for right > left {
		if right-left > 600 {
			// Recurse on a sample to pick a pivot range that brackets k
			// tightly, so the full partition below moves few elements.
			n := float64(right - left + 1)
			i := float64(k - left + 1)
			z := math.Log(n)
			s := 0.5 * math.Exp(2*z/3)
			sd := 0.5 * math.Sqrt(z*s*(n-s)/n)
			if i < n/2 {
				sd = -sd
			}
			newLeft := max(left, int(float64(k)-i*s/n+sd))
			newRight := min(right, int(float64(k)+(n-i)*s/n+sd))
			floydRivest(a, newLeft, newRight, k)
		}
		t := a[k]
		i, j := left, right
		a[left], a[k] = a[k], a[left]
		if a[right] > t {
			a[right], a[left] = a[left], a[right]
		}
		for i < j {
			a[i], a[j] = a[j], a[i]
			i++
			j--
			for a[i] < t {
				i++
			}
			for a[j] > t {
				j--
			}
		}
		if a[left] == t {
			a[left], a[j] = a[j], a[left]
		} else {
			j++
			a[j], a[right] = a[right], a[j]
		}
		if j <= k {
			left = j + 1
		}
		if k <= j {
			right = j - 1
		}
	}
}

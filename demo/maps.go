// Package demo makes the project's own demonstration data, so that `make
// demo` needs no camera, dataset or network: synthetic anomaly maps of a
// VAD-like part (today) and synthetic part images (as the demo grows).
package demo

import (
	"math"
	"math/rand/v2"

	"github.com/segad-edge/segad-edge/segad"
)

// MapKind says what a synthetic anomaly map shows.
type MapKind string

// The kinds of synthetic maps. Good parts sometimes carry a benign hot spot
// on the wires (wire shape varies between good parts, and a detector trained
// on few goods flags it): the map maximum alone then confuses them with
// defects, while per-segment statistics tell them apart, which is SegAD's
// point.
const (
	Good          MapKind = "good"
	MisplacedDot  MapKind = "misplaced_solder" // logical: broad, moderate response on the solder dots
	PiezoCrack    MapKind = "crack"            // structural: thin line across the piezo middle
	BurnedBorder  MapKind = "burned_spot"      // unseen in training: a spot on the piezo border
	PinsParticles MapKind = "particle"         // unseen in training: a small particle on the pins
)

// TrainKinds are the defect types used for training; UnseenKinds appear only
// at test time, as the paper's held-out defect types.
var (
	TrainKinds  = []MapKind{MisplacedDot, PiezoCrack}
	UnseenKinds = []MapKind{BurnedBorder, PinsParticles}
)

// MapGen renders synthetic anomaly maps over a mask. It is deterministic
// for a seed.
type MapGen struct {
	mask    *segad.Mask
	rng     *rand.Rand
	members [][]int // pixel indices of each segment
	tmp     []float32
}

// NewMapGen returns a generator over mask, seeded.
func NewMapGen(mask *segad.Mask, seed uint64) *MapGen {
	g := &MapGen{mask: mask, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		members: make([][]int, mask.NumSegments()), tmp: make([]float32, mask.Width*mask.Height)}
	for i, l := range mask.Labels {
		if int(l) < len(g.members) {
			g.members[l] = append(g.members[l], i)
		}
	}
	return g
}

// segment noise level (mean, spread) per VAD segment: busy areas (wires,
// pins, solder) respond more to normal variation than the flat background.
var segLevel = [...][2]float32{
	segad.VADBackground:      {0.10, 0.05},
	segad.VADOuterHalfCircle: {0.20, 0.08},
	segad.VADPiezoBorder:     {0.25, 0.10},
	segad.VADSolderDots:      {0.40, 0.15},
	segad.VADWires:           {0.45, 0.20},
	segad.VADPins:            {0.35, 0.12},
	segad.VADPiezoMiddle:     {0.20, 0.07},
}

// Render fills dst (len W*H) with a map of the given kind.
func (g *MapGen) Render(dst []float32, kind MapKind) {
	w, h := g.mask.Width, g.mask.Height
	for i, l := range g.mask.Labels {
		lv := segLevel[0]
		if int(l) < len(segLevel) {
			lv = segLevel[l]
		}
		g.tmp[i] = lv[0] + lv[1]*float32(g.rng.NormFloat64())
	}
	boxBlur(dst, g.tmp, w, h, 2)
	s := float64(min(w, h))
	// Benign hot spot on a wire in 40% of parts, good or bad.
	if g.rng.Float64() < 0.4 {
		g.bump(dst, segad.VADWires, 1.6+1.6*g.rng.Float64(), 0.012*s)
	}
	switch kind {
	case MisplacedDot:
		g.bump(dst, segad.VADSolderDots, 0.9+0.9*g.rng.Float64(), 0.035*s)
	case PiezoCrack:
		g.line(dst, segad.VADPiezoMiddle, 1.0+1.2*g.rng.Float64())
	case BurnedBorder:
		g.bump(dst, segad.VADPiezoBorder, 1.0+1.2*g.rng.Float64(), 0.02*s)
	case PinsParticles:
		g.bump(dst, segad.VADPins, 1.0+1.0*g.rng.Float64(), 0.01*s)
	}
}

// bump adds a Gaussian bump of the given height centred on a random pixel
// of segment seg.
func (g *MapGen) bump(dst []float32, seg int, height, sigma float64) {
	px := g.members[seg]
	if len(px) == 0 {
		return
	}
	w, h := g.mask.Width, g.mask.Height
	c := px[g.rng.IntN(len(px))]
	cx, cy := c%w, c/w
	r := int(3 * sigma)
	for y := max(0, cy-r); y < min(h, cy+r+1); y++ {
		for x := max(0, cx-r); x < min(w, cx+r+1); x++ {
			d2 := float64((x-cx)*(x-cx) + (y-cy)*(y-cy))
			dst[y*w+x] += float32(height * math.Exp(-d2/(2*sigma*sigma)))
		}
	}
}

// line adds a thin random segment of the given height inside segment seg.
func (g *MapGen) line(dst []float32, seg int, height float64) {
	px := g.members[seg]
	if len(px) == 0 {
		return
	}
	w := g.mask.Width
	a, b := px[g.rng.IntN(len(px))], px[g.rng.IntN(len(px))]
	ax, ay, bx, by := float64(a%w), float64(a/w), float64(b%w), float64(b/w)
	n := int(math.Hypot(bx-ax, by-ay)) + 1
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		x, y := int(ax+t*(bx-ax)), int(ay+t*(by-ay))
		idx := y*w + x
		if int(g.mask.Labels[idx]) == seg {
			dst[idx] += float32(height)
		}
	}
}

// boxBlur is a separable (2r+1)-box blur with clamped edges; it makes the
// white noise spatially correlated like a detector's map.
func boxBlur(dst, src []float32, w, h, r int) {
	row := make([]float32, w*h)
	norm := 1 / float32(2*r+1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var s float32
			for k := -r; k <= r; k++ {
				s += src[y*w+min(max(x+k, 0), w-1)]
			}
			row[y*w+x] = s * norm
		}
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var s float32
			for k := -r; k <= r; k++ {
				s += row[min(max(y+k, 0), h-1)*w+x]
			}
			dst[y*w+x] = s * norm
		}
	}
}

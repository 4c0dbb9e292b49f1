package demo

import (
	"math"
	"math/rand/v2"
)

// Geometry: points, wires, the part and its natural variation, distances
// and where a point lies in the 7-segment layout.

type pt struct{ x, y float64 }

func (a pt) add(b pt) pt                     { return pt{a.x + b.x, a.y + b.y} }
func (a pt) sub(b pt) pt                     { return pt{a.x - b.x, a.y - b.y} }
func (a pt) mul(f float64) pt                { return pt{a.x * f, a.y * f} }
func (a pt) dist(b pt) float64               { return math.Hypot(a.x-b.x, a.y-b.y) }
func lerp(a, b pt, t float64) pt             { return pt{a.x + (b.x-a.x)*t, a.y + (b.y-a.y)*t} }
func cov(d float64) float32                  { return float32(math.Max(0, math.Min(1, 0.5-d))) } // anti-aliased coverage of signed distance d
func uni(r *rand.Rand, a, b float64) float64 { return a + (b-a)*r.Float64() }

// wire is one wire: a quadratic Bézier from its solder dot to its pin.
type wire struct {
	from, to pt
	bend     float64 // largest deviation from the straight line, pixels (+: towards +x)
	along    float64 // where along the wire the bend peaks (0.5 = middle)
	width    float64
	hidden   bool
}

// points samples the curve; the control point is placed so that the
// curve's deviation at t=along is bend.
func (w wire) points(n int) []pt {
	d := w.to.sub(w.from)
	l := math.Hypot(d.x, d.y)
	nrm := pt{d.y / l, -d.x / l} // perpendicular, pointing to +x
	if nrm.x < 0 {
		nrm = nrm.mul(-1)
	}
	// B(t) = (1-t)^2 A + 2t(1-t) C + t^2 B; deviation at t is 2t(1-t)*offset(C).
	t := w.along
	c := lerp(w.from, w.to, t).add(nrm.mul(w.bend / (2 * t * (1 - t))))
	out := make([]pt, n+1)
	for i := 0; i <= n; i++ {
		u := float64(i) / float64(n)
		a, b, cc := (1-u)*(1-u), 2*u*(1-u), u*u
		out[i] = pt{a*w.from.x + b*c.x + cc*w.to.x, a*w.from.y + b*c.y + cc*w.to.y}
	}
	return out
}

// part is the natural variation of one part plus its defect, in pixels.
type part struct {
	c             pt // disc centre
	rDisc, rInner float64
	rOut          float64
	dots          [2]pt
	dotR          float64
	dotHidden     [2]bool
	pins          [2]pt // centres
	pinW, pinH    float64
	wires         [2]wire
	gain, offset  float64
	gradX, gradY  float64
	tint          [3]float32
	noiseSigma    float32
	noiseOff      int
	darkBottom    int
	bgTex, ceram  valueNoise
}

// natural draws the variation every good part has.
func (r *renderer) natural(seed, index uint64) part {
	rng := partRand(seed, index, streamNatural)
	g, s, k := r.geo, r.s, r.k
	p := part{
		c:     pt{s/2 + uni(rng, -2, 2)*k, s/2 + uni(rng, -2, 2)*k},
		rDisc: g.DiscRadius * s, rOut: g.OuterRadius * s,
		dotR: 0.027 * s, pinW: 0.05 * s, pinH: 0.068 * s,
	}
	p.rInner = p.rDisc - g.BorderWidth*s
	for i, side := range []float64{-1, 1} {
		p.dots[i] = pt{p.c.x + side*g.DotDX*s + uni(rng, -1, 1)*k, p.c.y + g.DotDY*s + uni(rng, -1, 1)*k}
		p.pins[i] = pt{p.c.x + side*g.PinDX*s, p.c.y + g.PinDY*s}
		p.wires[i] = wire{
			from:  p.dots[i],
			to:    pt{p.pins[i].x, p.pins[i].y - p.pinH/2 + 2*k}, // tucked under the pin
			bend:  side * uni(rng, 2.5, 6) * k,                   // natural slack
			along: uni(rng, 0.4, 0.6),
			width: uni(rng, 4.2, 5.2) * k,
		}
	}
	p.gain = uni(rng, 0.9, 1.1)
	p.offset = uni(rng, -6, 6)
	p.gradX, p.gradY = uni(rng, -0.06, 0.06), uni(rng, -0.06, 0.06)
	for c := range p.tint {
		p.tint[c] = float32(uni(rng, 0.97, 1.03))
	}
	p.noiseSigma = float32(uni(rng, 2, 3.5))
	p.noiseOff = rng.IntN(1 << noiseTileBits)
	if rng.Float64() < 0.15 {
		p.darkBottom = max(1, int(uni(rng, 2, 6)*k))
	}
	p.bgTex = newValueNoise(rng, 6, r.size)
	p.ceram = newValueNoise(rng, 20, r.size)
	return p
}

// segDistance is the distance from q to segment a-b.
func segDistance(q, a, b pt) float64 {
	v := b.sub(a)
	l2 := v.x*v.x + v.y*v.y
	t := 0.0
	if l2 > 0 {
		t = math.Max(0, math.Min(1, ((q.x-a.x)*v.x+(q.y-a.y)*v.y)/l2))
	}
	return q.dist(a.add(v.mul(t)))
}

// polyDistance is the distance from q to a polyline.
func polyDistance(q pt, pts []pt) float64 {
	best := math.Inf(1)
	for i := 1; i < len(pts); i++ {
		best = math.Min(best, segDistance(q, pts[i-1], pts[i]))
	}
	return best
}

// placeIn picks a point whose disc of radius rad lies in segment seg of the
// static mask (centre and 12 points on the rim checked).
func (r *renderer) placeIn(rng *rand.Rand, seg int, rad float64) (pt, bool) {
	n := r.size
	for try := 0; try < 400; try++ {
		c := pt{uni(rng, rad, r.s-rad), uni(rng, rad, r.s-rad)}
		ok := true
		for j := -1; j < 12 && ok; j++ {
			q := c
			if j >= 0 {
				a := float64(j) * math.Pi / 6
				q = c.add(pt{math.Cos(a), math.Sin(a)}.mul(rad))
			}
			x, y := int(q.x), int(q.y)
			ok = x >= 0 && y >= 0 && x < n && y < n && int(r.mask.Labels[y*n+x]) == seg
		}
		if ok {
			return c, true
		}
	}
	return pt{}, false
}

func (r *renderer) labelAt(q pt) int {
	x, y := int(q.x), int(q.y)
	if x < 0 || y < 0 || x >= r.size || y >= r.size {
		return -1
	}
	return int(r.mask.Labels[y*r.size+x])
}

// okAround tells whether q and four points at distance m lie in seg.
func (r *renderer) okAround(q pt, m float64, seg int) (pt, bool) {
	for _, o := range []pt{{0, 0}, {m, 0}, {-m, 0}, {0, m}, {0, -m}} {
		if r.labelAt(q.add(o)) != seg {
			return q, false
		}
	}
	return q, true
}

// nominalCentre is the centre of the static mask's disc.
func (r *renderer) nominalCentre() pt { return pt{r.s / 2, r.s / 2} }

// inPolygon is the even-odd rule.
func inPolygon(q pt, poly []pt) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a.y > q.y) != (b.y > q.y) && q.x < (b.x-a.x)*(q.y-a.y)/(b.y-a.y)+a.x {
			in = !in
		}
	}
	return in
}

package demo

import (
	"image"
	"math"
	"math/rand/v2"

	"github.com/segad-edge/segad-edge/segad"
)

// Damage: drawing the structural defects (cracks, burns, chips, pollution,
// particles) into a rendered part.

// drawCrack draws a jagged dark fissure that wanders over the ceramic and
// stops before it would leave the piezo middle segment.
func (r *renderer) drawCrack(rng *rand.Rand, p *part) image.Rectangle {
	margin := 3 * r.k
	start, _ := r.placeIn(rng, segad.VADPiezoMiddle, margin+2)
	pts := []pt{start}
	dir := uni(rng, 0, 2*math.Pi)
	length := uni(rng, 45, 110) * r.k
	step := 3 * r.k
	for l := 0.0; l < length; l += step {
		dir += uni(rng, -0.45, 0.45)
		q := pts[len(pts)-1].add(pt{math.Cos(dir), math.Sin(dir)}.mul(step))
		if _, ok := r.okAround(q, margin, segad.VADPiezoMiddle); !ok {
			break
		}
		pts = append(pts, q)
	}
	if len(pts) < 2 { // boxed in: a short stub is still a crack
		pts = append(pts, start.add(pt{step, 0}))
	}
	hw := uni(rng, 0.6, 1.1) * r.k
	bb, dist := r.distField(pts, hw+1)
	for y := bb.Min.Y; y < bb.Max.Y; y++ {
		for x := bb.Min.X; x < bb.Max.X; x++ {
			d := float64(dist[(y-bb.Min.Y)*bb.Dx()+x-bb.Min.X])
			r.blend(x, y, colCrack, 0.85*cov(d-hw))
		}
	}
	return bb
}

// drawBurn draws a soft, irregular dark mark of radius about rad.
func (r *renderer) drawBurn(rng *rand.Rand, c pt, rad float64) image.Rectangle {
	var h [3]float64
	var ph [3]float64
	for i := range h {
		h[i], ph[i] = uni(rng, 0, 0.18), uni(rng, 0, 2*math.Pi)
	}
	strength := float32(uni(rng, 0.7, 0.95))
	bb := r.discBounds(c, rad*1.5)
	for y := bb.Min.Y; y < bb.Max.Y; y++ {
		for x := bb.Min.X; x < bb.Max.X; x++ {
			q := pt{float64(x) + 0.5, float64(y) + 0.5}
			d := q.dist(c)
			a := math.Atan2(q.y-c.y, q.x-c.x)
			rr := rad * (1 + h[0]*math.Cos(2*a+ph[0]) + h[1]*math.Cos(3*a+ph[1]) + h[2]*math.Cos(5*a+ph[2]))
			v := math.Exp(-d * d / (2 * rr * rr * 0.45))
			if d > rr*1.45 {
				continue
			}
			r.blend(x, y, colBurn, strength*float32(v))
		}
	}
	return bb
}

// drawChip breaks a bite out of the disc edge, away from the wires: inside
// it the housing or background shows, with a pale fracture face at its rim.
// It returns the chip's bounds and the segment just outside the disc there
// (the jittered disc's rim may overlap it).
func (r *renderer) drawChip(rng *rand.Rand, p *part) (image.Rectangle, int) {
	// Angles measured from +x, y down; the wires cross the bottom (about
	// 55..125 degrees), so the chip goes elsewhere.
	a := uni(rng, -230, 40) * math.Pi / 180
	dir := pt{math.Cos(a), math.Sin(a)}
	cr := uni(rng, 13, 20) * r.k
	c := p.c.add(dir.mul(p.rDisc + uni(rng, 2, 6)*r.k))
	bb := r.discBounds(c, cr)
	for y := bb.Min.Y; y < bb.Max.Y; y++ {
		for x := bb.Min.X; x < bb.Max.X; x++ {
			q := pt{float64(x) + 0.5, float64(y) + 0.5}
			inDisc := cov(q.dist(p.c) - p.rDisc)
			if inDisc <= 0 {
				continue
			}
			d := q.dist(c)
			under := colBackground
			if q.y-p.c.y < 0 && q.dist(p.c) <= p.rOut {
				under = colHousing
			} else if q.y-p.c.y < 0 {
				under = colHousingBot
			}
			edge := cov(math.Abs(d-cr) - 1.2*r.k)
			r.blend(x, y, under, inDisc*cov(d-cr))
			r.blend(x, y, colChipEdge, inDisc*edge*0.8)
		}
	}
	outside := r.labelAt(r.nominalCentre().add(dir.mul(p.rDisc + 4*r.k)))
	return bb, max(outside, 0)
}

// drawPollution scatters small solder splashes on the ceramic near a dot.
func (r *renderer) drawPollution(rng *rand.Rand, p *part, side int) image.Rectangle {
	var bb image.Rectangle
	n := 3 + rng.IntN(5)
	for i := 0; i < n; i++ {
		rad := uni(rng, 1.5, 4) * r.k
		var c pt
		ok := false
		for try := 0; try < 200 && !ok; try++ {
			a := uni(rng, 0, 2*math.Pi)
			c = p.dots[side].add(pt{math.Cos(a), math.Sin(a)}.mul(p.dotR + uni(rng, 8, 40)*r.k))
			_, ok = r.okAround(c, rad+2, segad.VADPiezoMiddle)
		}
		if !ok {
			continue
		}
		r.drawDot(c, rad)
		bb = bb.Union(r.discBounds(c, rad))
	}
	if bb.Empty() { // no room near the dot: one splash anywhere on the ceramic
		c, _ := r.placeIn(rng, segad.VADPiezoMiddle, 4*r.k)
		r.drawDot(c, 2.5*r.k)
		bb = r.discBounds(c, 2.5*r.k)
	}
	return bb
}

// drawParticle draws a small irregular polygon of metal or plastic.
func (r *renderer) drawParticle(rng *rand.Rand, c pt, rad float64) image.Rectangle {
	nv := 5 + rng.IntN(4)
	poly := make([]pt, nv)
	for i := range poly {
		a := (float64(i) + uni(rng, -0.3, 0.3)) * 2 * math.Pi / float64(nv)
		poly[i] = c.add(pt{math.Cos(a), math.Sin(a)}.mul(rad * uni(rng, 0.55, 1)))
	}
	col := colMetal
	if rng.IntN(2) == 0 {
		col = colPlastic
	}
	bb := r.discBounds(c, rad)
	for y := bb.Min.Y; y < bb.Max.Y; y++ {
		for x := bb.Min.X; x < bb.Max.X; x++ {
			q := pt{float64(x) + 0.5, float64(y) + 0.5}
			d := polyDistance(q, append(poly, poly[0]))
			if !inPolygon(q, poly) {
				d = -d
			}
			r.blend(x, y, col, cov(-d))
		}
	}
	return bb
}

package demo

import (
	"image"
	"math"

	"github.com/segad-edge/segad-edge/segad"
)

// Rendering: materials, lighting, anti-aliased discs, wires and pins, and
// the finish (lighting, tint, sensor noise, 8-bit quantisation).

// colours in BGR, 0..255 before lighting. Materials differ in brightness so
// that a segment's mean intensity tells which material it holds.
var (
	colBackground = [3]float32{38, 40, 42}
	colHousing    = [3]float32{92, 96, 100}   // dark plastic half-circle
	colBorder     = [3]float32{88, 140, 165}  // brass ring
	colCeramic    = [3]float32{196, 200, 204} // piezo ceramic
	colSolder     = [3]float32{205, 208, 212} // tin-silver
	colWire       = [3]float32{55, 95, 180}   // enamelled copper
	colPin        = [3]float32{135, 138, 142} // nickel-plated pin
	colBurn       = [3]float32{22, 32, 48}    // soot brown
	colCrack      = [3]float32{70, 72, 75}    // shadowed fissure
	colPlastic    = [3]float32{40, 60, 150}   // red-brown plastic flake
	colMetal      = [3]float32{225, 228, 232} // bright metal chip
	colChipEdge   = [3]float32{120, 122, 125} // fracture face
	colHousingBot = [3]float32{45, 47, 49}    // what shows through a chip below the housing
)

// renderer holds the scratch buffers and static geometry of one size.
type renderer struct {
	size int
	s    float64 // size as float
	k    float64 // scale relative to 512 (pixel constants are given at 512)
	geo  segad.VADGeometry
	mask *segad.Mask
	buf  []float32 // 3*size*size, BGR, before lighting and noise
}

func newRenderer(size int) *renderer {
	return &renderer{size: size, s: float64(size), k: float64(size) / 512, geo: PartGeometry(),
		mask: PartMask(size), buf: make([]float32, 3*size*size)}
}

// render draws part index of kind into dst (tight BGR) and fills info.
func (r *renderer) render(dst []byte, seed, index uint64, kind DefectKind, info *PartInfo) {
	p := r.natural(seed, index)
	drng := partRand(seed, index, streamDefect)
	info.ShiftX, info.ShiftY = p.c.x-r.s/2, p.c.y-r.s/2
	info.DarkBottom = p.darkBottom
	var bbox image.Rectangle
	var segs []int
	side := drng.IntN(2) // which wire / dot a one-sided defect hits

	// Logical defects change the assembly before anything is drawn.
	switch kind {
	case DefectMissingWire:
		p.wires[side].hidden = true
		bbox = r.wireBounds(p.wires[side])
		segs = []int{segad.VADWires}
	case DefectWireTooStraight:
		old := p.wires[side]
		p.wires[side].bend = 0
		bbox = r.wireBounds(old)
		segs = []int{segad.VADWires}
	case DefectWireBentTooMuch:
		old := p.wires[side]
		sign := 1.0
		if drng.IntN(3) == 0 {
			sign = -1 // bowed inwards, towards the other wire
		}
		p.wires[side].bend = sign * math.Copysign(uni(drng, 20, 28)*r.k, old.bend)
		bbox = r.wireBounds(old).Union(r.wireBounds(p.wires[side]))
		segs = []int{segad.VADWires, segad.VADPiezoMiddle, segad.VADPiezoBorder, segad.VADBackground}
	case DefectWireOutOfDot:
		old := p.wires[side]
		// Lifted off the dot towards the disc centre, onto the ceramic.
		p.wires[side].from = p.dots[side].add(pt{uni(drng, -4, 4) * r.k, -(p.dotR + uni(drng, 7, 13)*r.k)})
		bbox = r.wireBounds(old).Union(r.wireBounds(p.wires[side]))
		segs = []int{segad.VADWires, segad.VADPiezoMiddle, segad.VADSolderDots}
	case DefectMisplacedSolder:
		old := p.dots[side]
		a := uni(drng, 0, 2*math.Pi)
		p.dots[side] = old.add(pt{math.Cos(a), math.Sin(a)}.mul(uni(drng, 12, 18) * r.k))
		bbox = r.discBounds(old, p.dotR).Union(r.discBounds(p.dots[side], p.dotR))
		segs = []int{segad.VADSolderDots, segad.VADPiezoMiddle, segad.VADWires}
	case DefectMissingSolder:
		p.dotHidden[side] = true
		bbox = r.discBounds(p.dots[side], p.dotR)
		segs = []int{segad.VADSolderDots}
	}

	r.drawBase(&p)
	// Structural damage of the disc lies under wires and dots.
	switch kind {
	case DefectCrack:
		bbox = r.drawCrack(drng, &p)
		segs = []int{segad.VADPiezoMiddle}
	case DefectBurnedSpot:
		seg := segad.VADPiezoMiddle
		if drng.IntN(3) == 0 {
			seg = segad.VADPiezoBorder
		}
		rad := uni(drng, 5, 11) * r.k
		if seg == segad.VADPiezoBorder {
			rad = uni(drng, 4, 6) * r.k // the ring is narrow
		}
		c, ok := r.placeIn(drng, seg, rad*1.6+1)
		if !ok {
			seg, rad = segad.VADPiezoMiddle, 5*r.k
			c, _ = r.placeIn(drng, seg, rad*1.6+1)
		}
		bbox = r.drawBurn(drng, c, rad)
		segs = []int{seg}
	case DefectBrokenPiezo:
		var outside int
		bbox, outside = r.drawChip(drng, &p)
		segs = []int{segad.VADPiezoBorder, segad.VADPiezoMiddle, outside}
	}
	for i := range p.wires {
		r.drawWire(p.wires[i])
	}
	for i := range p.dots {
		if !p.dotHidden[i] {
			r.drawDot(p.dots[i], p.dotR)
		}
	}
	for i := range p.pins {
		r.drawPin(p.pins[i], p.pinW, p.pinH)
	}
	// Foreign material lies on top of everything.
	switch kind {
	case DefectSolderPollution:
		bbox = r.drawPollution(drng, &p, side)
		segs = []int{segad.VADPiezoMiddle}
	case DefectParticle:
		seg := []int{segad.VADPiezoMiddle, segad.VADPiezoMiddle, segad.VADPiezoBorder, segad.VADOuterHalfCircle}[drng.IntN(4)]
		rad := uni(drng, 3, 6) * r.k
		c, ok := r.placeIn(drng, seg, rad+2)
		if !ok {
			seg = segad.VADPiezoMiddle
			c, _ = r.placeIn(drng, seg, rad+2)
		}
		bbox = r.drawParticle(drng, c, rad)
		segs = []int{seg}
	}
	info.BBox = bbox.Intersect(image.Rect(0, 0, r.size, r.size))
	info.Segments = segs
	r.finish(dst, &p)
}

// drawBase paints the background, the housing half-circle and the piezo
// disc (ceramic middle, brass border) in one pass over the image.
func (r *renderer) drawBase(p *part) {
	n := r.size
	b := r.buf
	rOut2 := (p.rOut + 1) * (p.rOut + 1)
	rDisc2 := (p.rDisc + 1) * (p.rDisc + 1)
	for y := 0; y < n; y++ {
		dy := float64(y) + 0.5 - p.c.y
		p.bgTex.setRow(y)
		inDiscRows := dy*dy < rDisc2
		if inDiscRows {
			p.ceram.setRow(y)
		}
		row := b[3*y*n : 3*(y+1)*n]
		for x := 0; x < n; x++ {
			dx := float64(x) + 0.5 - p.c.x
			d2 := dx*dx + dy*dy
			t := 1 + 0.12*p.bgTex.at(x)
			col := [3]float32{colBackground[0] * t, colBackground[1] * t, colBackground[2] * t}
			if d2 < rOut2 && dy < 1 {
				rad := math.Sqrt(d2)
				a := min(cov(rad-p.rOut), cov(dy))
				if a > 0 {
					sh := float32(0.92+0.12*(rad-p.rDisc)/(p.rOut-p.rDisc)) * t
					col = mix(col, [3]float32{colHousing[0] * sh, colHousing[1] * sh, colHousing[2] * sh}, a)
				}
			}
			if inDiscRows && d2 < rDisc2 {
				rad := math.Sqrt(d2)
				tex := 1 + 0.05*p.ceram.at(x)
				disc := [3]float32{colCeramic[0] * tex, colCeramic[1] * tex, colCeramic[2] * tex}
				if rad > p.rInner-1 {
					// Brass ring: a bevel, brighter towards its inner edge.
					u := float32(math.Max(0, math.Min(1, (rad-p.rInner)/(p.rDisc-p.rInner))))
					sh := 1.12 - 0.3*u
					ring := [3]float32{colBorder[0] * sh, colBorder[1] * sh, colBorder[2] * sh}
					disc = mix(ring, disc, cov(rad-p.rInner))
				}
				col = mix(col, disc, cov(rad-p.rDisc))
			}
			row[3*x], row[3*x+1], row[3*x+2] = col[0], col[1], col[2]
		}
	}
}

func mix(a, b [3]float32, t float32) [3]float32 {
	return [3]float32{a[0] + (b[0]-a[0])*t, a[1] + (b[1]-a[1])*t, a[2] + (b[2]-a[2])*t}
}

// blend paints col over pixel (x, y) with opacity a.
func (r *renderer) blend(x, y int, col [3]float32, a float32) {
	if a <= 0 || x < 0 || y < 0 || x >= r.size || y >= r.size {
		return
	}
	i := 3 * (y*r.size + x)
	b := r.buf[i : i+3 : i+3]
	b[0] += (col[0] - b[0]) * a
	b[1] += (col[1] - b[1]) * a
	b[2] += (col[2] - b[2]) * a
}

// rect clips a float box to pixel indices (inclusive).
func (r *renderer) rect(x0, y0, x1, y1 float64) (int, int, int, int) {
	return max(0, int(math.Floor(x0))), max(0, int(math.Floor(y0))),
		min(r.size-1, int(math.Ceil(x1))), min(r.size-1, int(math.Ceil(y1)))
}

func (r *renderer) discBounds(c pt, rad float64) image.Rectangle {
	x0, y0, x1, y1 := r.rect(c.x-rad-1, c.y-rad-1, c.x+rad+1, c.y+rad+1)
	return image.Rect(x0, y0, x1+1, y1+1)
}

func (r *renderer) wireBounds(w wire) image.Rectangle {
	var bb image.Rectangle
	for _, q := range w.points(24) {
		bb = bb.Union(r.discBounds(q, w.width/2))
	}
	return bb
}

// distField returns, over the bounding box of a polyline widened by reach,
// each pixel's distance to the polyline. Each segment only visits its own
// box, so a long thin curve costs about its area, not its box times its
// segment count.
func (r *renderer) distField(pts []pt, reach float64) (image.Rectangle, []float32) {
	var bb image.Rectangle
	for _, q := range pts {
		bb = bb.Union(r.discBounds(q, reach))
	}
	w := bb.Dx()
	d2 := make([]float32, w*bb.Dy())
	for i := range d2 {
		d2[i] = math.MaxFloat32
	}
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		sb := r.discBounds(a, reach).Union(r.discBounds(b, reach)).Intersect(bb)
		v := b.sub(a)
		l2 := v.x*v.x + v.y*v.y
		for y := sb.Min.Y; y < sb.Max.Y; y++ {
			qy := float64(y) + 0.5
			for x := sb.Min.X; x < sb.Max.X; x++ {
				qx := float64(x) + 0.5
				t := 0.0
				if l2 > 0 {
					t = math.Max(0, math.Min(1, ((qx-a.x)*v.x+(qy-a.y)*v.y)/l2))
				}
				ex, ey := qx-(a.x+t*v.x), qy-(a.y+t*v.y)
				j := (y-bb.Min.Y)*w + x - bb.Min.X
				d2[j] = min(d2[j], float32(ex*ex+ey*ey))
			}
		}
	}
	for i, v := range d2 {
		d2[i] = float32(math.Sqrt(float64(v)))
	}
	return bb, d2
}

func (r *renderer) drawWire(w wire) {
	if w.hidden {
		return
	}
	hw := w.width / 2
	bb, dist := r.distField(w.points(24), hw+1)
	for y := bb.Min.Y; y < bb.Max.Y; y++ {
		for x := bb.Min.X; x < bb.Max.X; x++ {
			d := float64(dist[(y-bb.Min.Y)*bb.Dx()+x-bb.Min.X])
			if d > hw+1 {
				continue
			}
			// Round wire: brighter along its axis.
			u := math.Min(1, d/hw)
			sh := float32(0.7 + 0.45*(1-u*u))
			r.blend(x, y, [3]float32{colWire[0] * sh, colWire[1] * sh, colWire[2] * sh}, cov(d-hw))
		}
	}
}

// lightDir is the ring light's main direction (upper left, towards the camera).
var lightDir = [3]float64{-0.35, -0.45, 0.82}

func (r *renderer) drawDot(c pt, rad float64) {
	bb := r.discBounds(c, rad)
	for y := bb.Min.Y; y < bb.Max.Y; y++ {
		for x := bb.Min.X; x < bb.Max.X; x++ {
			q := pt{float64(x) + 0.5, float64(y) + 0.5}
			d := q.dist(c)
			a := cov(d - rad)
			if a <= 0 {
				continue
			}
			// A solder dome: Lambert shading plus a specular highlight.
			nx, ny := (q.x-c.x)/rad, (q.y-c.y)/rad
			nz := math.Sqrt(math.Max(0, 1-nx*nx-ny*ny))
			l := nx*lightDir[0] + ny*lightDir[1] + nz*lightDir[2]
			spec := math.Pow(math.Max(0, l), 24) * 70
			sh := 0.55 + 0.5*math.Max(0, l)
			col := [3]float32{}
			for k := range col {
				col[k] = float32(float64(colSolder[k])*sh + spec)
			}
			r.blend(x, y, col, a)
		}
	}
}

func (r *renderer) drawPin(c pt, w, h float64) {
	x0, y0, x1, y1 := r.rect(c.x-w/2-1, c.y-h/2-1, c.x+w/2+1, c.y+h/2+1)
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			q := pt{float64(x) + 0.5, float64(y) + 0.5}
			ex, ey := math.Abs(q.x-c.x)-w/2, math.Abs(q.y-c.y)-h/2
			a := min(cov(ex), cov(ey))
			if a <= 0 {
				continue
			}
			// Cylindrical highlight across, darker towards the bottom.
			u := (q.x - c.x) / (w / 2)
			sh := float32(0.8 + 0.35*(1-u*u) - 0.15*(q.y-c.y+h/2)/h)
			r.blend(x, y, [3]float32{colPin[0] * sh, colPin[1] * sh, colPin[2] * sh}, a)
		}
	}
}

// finish applies lighting, tint, the dark bottom band and sensor noise, and
// quantises to 8 bits.
func (r *renderer) finish(dst []byte, p *part) {
	n := r.size
	noise := sensorNoise()
	colGain := make([]float32, n)
	for x := range colGain {
		colGain[x] = float32(p.gradX * (float64(x)/r.s - 0.5))
	}
	sig := p.noiseSigma
	for y := 0; y < n; y++ {
		rowGain := float32(p.gain) * (1 + float32(p.gradY*(float64(y)/r.s-0.5)))
		off := float32(p.offset) + 0.5 // +0.5: round to nearest
		if y >= n-p.darkBottom {
			rowGain *= 0.18
			off = float32(p.offset)*0.18 + 0.5
		}
		src := r.buf[3*y*n : 3*(y+1)*n]
		out := dst[3*y*n : 3*(y+1)*n]
		start := (p.noiseOff + 3*y*n) % len(noise)
		nz := noise[start:]
		if len(nz) < 3*n {
			nz = noise[:3*n] // wrapped: reuse the tile's start for this row
		}
		nz = nz[:3*n]
		g0, g1, g2 := rowGain*p.tint[0], rowGain*p.tint[1], rowGain*p.tint[2]
		for x := 0; x < n; x++ {
			cg := 1 + colGain[x]
			i := 3 * x
			out[i] = quant(src[i]*g0*cg + off + sig*nz[i])
			out[i+1] = quant(src[i+1]*g1*cg + off + sig*nz[i+1])
			out[i+2] = quant(src[i+2]*g2*cg + off + sig*nz[i+2])
		}
	}
}

// quant clamps to 0..255 and truncates (callers add 0.5 to round).
func quant(v float32) uint8 {
	if v <= 0 {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(v)
}

package demo

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"sync"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/segad"
)

// DefaultPartSize is the side of a rendered part image, VAD-like 512x512.
const DefaultPartSize = 512

// minPartSize keeps the thinnest features (wires, cracks) at least a pixel wide.
const minPartSize = 128

// PartGeometry is the VAD geometry the synthetic parts are drawn with, so
// segad.VADTemplate(size, size, PartGeometry()) is their 7-segment mask. It
// is segad.DefaultVADGeometry with a wider wires area: good wires sag by a
// few pixels, and the lane must hold that natural variation (as VAD's
// static mask does) while a badly bent wire leaves it.
func PartGeometry() segad.VADGeometry {
	g := segad.DefaultVADGeometry()
	g.WireWidth = 0.055
	return g
}

// PartMask returns the 7-segment mask matching parts rendered at size.
func PartMask(size int) *segad.Mask {
	return segad.VADTemplate(size, size, PartGeometry())
}

// PartInfo describes one rendered part.
type PartInfo struct {
	// Index is the part's number within its generator: (seed, Index, Kind)
	// fixes every pixel.
	Index uint64 `json:"index"`
	// Kind is PartGood or the defect type.
	Kind DefectKind `json:"kind"`
	// Category is CategoryLogical or CategoryStructural ("" for good parts).
	Category string `json:"category,omitempty"`
	// Unseen tells whether the kind is held out of training.
	Unseen bool `json:"unseen,omitempty"`
	// BBox bounds the pixels the defect changed (empty for good parts).
	BBox image.Rectangle `json:"bbox"`
	// Segments are the VAD segment labels the defect lies in.
	Segments []int `json:"segments,omitempty"`
	// Shift is the part's position jitter in pixels (natural variation).
	ShiftX, ShiftY float64 `json:"-"`
	// DarkBottom is the height of the thin dark band some images have at
	// their bottom edge (0: none), natural variation of the camera setup.
	DarkBottom int `json:"dark_bottom,omitempty"`
}

// PartGen renders synthetic part images. It is deterministic: part n of a
// generator seeded s is the same image on every machine and run, whichever
// order parts are rendered in (RenderPart). A PartGen is not safe for
// concurrent use; make one per goroutine (they share nothing mutable).
type PartGen struct {
	seed uint64
	size int
	next uint64
	r    *renderer
}

// NewPartGen returns a generator of size x size parts (0: DefaultPartSize).
// Sizes below 128 are raised to 128 so that wires stay visible.
func NewPartGen(seed uint64, size int) *PartGen {
	if size <= 0 {
		size = DefaultPartSize
	}
	size = max(size, minPartSize)
	return &PartGen{seed: seed, size: size, r: newRenderer(size)}
}

// Size is the side of the rendered images in pixels.
func (g *PartGen) Size() int { return g.size }

// Mask is the 7-segment mask of this generator's parts.
func (g *PartGen) Mask() *segad.Mask { return g.r.mask }

// Render renders the next part (index 0, 1, ...) as kind. The caller must
// Close the Mat.
func (g *PartGen) Render(kind DefectKind) (gocv.Mat, PartInfo, error) {
	m, info, err := g.RenderPart(g.next, kind)
	if err == nil {
		g.next++
	}
	return m, info, err
}

// RenderPart renders part index as kind into a new 8-bit BGR Mat. Rendering
// the same index as PartGood and as a defect gives the same part (same
// jitter, wire shapes, lighting and noise) with only the defect added, which
// is how tests locate a defect's pixels.
func (g *PartGen) RenderPart(index uint64, kind DefectKind) (gocv.Mat, PartInfo, error) {
	buf := make([]byte, 3*g.size*g.size)
	info, err := g.RenderBGR(buf, index, kind)
	if err != nil {
		return gocv.Mat{}, info, err
	}
	m := gocv.NewMatWithSize(g.size, g.size, gocv.MatTypeCV8UC3)
	pix, err := m.DataPtrUint8()
	if err != nil {
		m.Close()
		return gocv.Mat{}, info, fmt.Errorf("render part %d: %w", index, err)
	}
	copy(pix, buf)
	return m, info, nil
}

// RenderBGR renders part index as kind into dst, 8-bit interleaved BGR with
// a stride of 3*Size() bytes (OpenCV's layout), without cgo.
func (g *PartGen) RenderBGR(dst []byte, index uint64, kind DefectKind) (PartInfo, error) {
	if len(dst) < 3*g.size*g.size {
		return PartInfo{}, fmt.Errorf("render part %d: buffer holds %d bytes, a %dx%d BGR image needs %d", index, len(dst), g.size, g.size, 3*g.size*g.size)
	}
	info := PartInfo{Index: index, Kind: kind}
	var dt DefectType
	if kind != PartGood {
		var ok bool
		if dt, ok = LookupDefect(kind); !ok {
			return PartInfo{}, fmt.Errorf("render part %d: unknown part kind %q: want good or one of %v", index, kind, DefectKinds())
		}
		info.Category, info.Unseen = dt.Category, dt.Unseen
	}
	g.r.render(dst, g.seed, index, kind, &info)
	return info, nil
}

// ---- rendering -----------------------------------------------------------

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

// noiseTile is a fixed table of standard normal values sampled at a random
// offset per part: per-pixel NormFloat64 calls would cost more than the
// rest of the rendering together.
var (
	noiseOnce sync.Once
	noiseTile []float32
)

const noiseTileBits = 20

func sensorNoise() []float32 {
	noiseOnce.Do(func() {
		rng := rand.New(rand.NewPCG(0x5e6ad, 0x7e11))
		noiseTile = make([]float32, 1<<noiseTileBits)
		for i := range noiseTile {
			noiseTile[i] = float32(rng.NormFloat64())
		}
	})
	return noiseTile
}

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

// valueNoise is smooth random texture: a coarse random grid interpolated
// bilinearly. Rendering goes row by row: setRow interpolates the grid
// vertically once per row, then at(x) is one horizontal lerp, which keeps
// the texture cheap enough to draw on every pixel.
type valueNoise struct {
	n     int
	v     []float32
	scale float64   // grid cells per pixel
	ix    []int32   // per pixel column: left grid column
	fx    []float32 // per pixel column: weight of the right one
	row   []float32 // the current row, interpolated vertically
}

func newValueNoise(r *rand.Rand, n, size int) valueNoise {
	vn := valueNoise{n: n, v: make([]float32, n*n), scale: float64(n-1) / float64(size),
		ix: make([]int32, size), fx: make([]float32, size), row: make([]float32, n)}
	for i := range vn.v {
		vn.v[i] = float32(2*r.Float64() - 1)
	}
	for x := 0; x < size; x++ {
		g := (float64(x) + 0.5) * vn.scale
		i := min(int(g), n-2)
		vn.ix[x], vn.fx[x] = int32(i), float32(g-float64(i))
	}
	return vn
}

// setRow prepares at for pixel row y.
func (vn *valueNoise) setRow(y int) {
	g := (float64(y) + 0.5) * vn.scale
	i := min(int(g), vn.n-2)
	f := float32(g - float64(i))
	top, bot := vn.v[i*vn.n:(i+1)*vn.n], vn.v[(i+1)*vn.n:(i+2)*vn.n]
	for j := range vn.row {
		vn.row[j] = top[j] + (bot[j]-top[j])*f
	}
}

// at is the texture at pixel column x of the row set by setRow.
func (vn *valueNoise) at(x int) float32 {
	i := vn.ix[x]
	a := vn.row[i]
	return a + (vn.row[i+1]-a)*vn.fx[x]
}

// splitmix64 decorrelates (index, stream) pairs into PCG stream selectors.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Streams of a part: the natural variation and the defect draw from
// separate generators, so a defect never changes the part it is put on.
const (
	streamNatural = 1
	streamDefect  = 2
)

func partRand(seed, index uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, splitmix64(index<<2|stream)))
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

// okAround tells whether q and four points at distance m lie in seg.
func (r *renderer) okAround(q pt, m float64, seg int) (pt, bool) {
	for _, o := range []pt{{0, 0}, {m, 0}, {-m, 0}, {0, m}, {0, -m}} {
		if r.labelAt(q.add(o)) != seg {
			return q, false
		}
	}
	return q, true
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

// nominalCentre is the centre of the static mask's disc.
func (r *renderer) nominalCentre() pt { return pt{r.s / 2, r.s / 2} }

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

// errNoParts is returned when a dataset or stream would be empty.
var errNoParts = errors.New("no parts requested")

package fit

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/segad"
)

// Synthetic defect kinds. The first three are the SegAD paper's one-class
// recipe; the others are the published families that come closer to real
// anomaly maps (DRAEM, CutPaste, logical edits of a component).
const (
	// KindBlur is a Gaussian blur of part of a segment (paper).
	KindBlur = "blur"
	// KindRect is a small rectangle of a random gray (paper).
	KindRect = "rect"
	// KindThin is a thin rectangle of a random gray (paper).
	KindThin = "thin"
	// KindPerlin blends, under a thresholded Perlin-noise mask, a texture
	// taken from another good image of the texture bank, shifted, flipped
	// and re-lit (DRAEM).
	KindPerlin = "perlin"
	// KindCutPaste pastes a patch of another good part or of another place
	// of the same part (CutPaste), with a small colour jitter.
	KindCutPaste = "cutpaste"
	// KindScratch draws a thin curved stroke (a quadratic Bézier curve).
	KindScratch = "scratch"
	// KindColor shifts colour and brightness in a soft elliptical blob.
	KindColor = "color"
	// KindDisplace moves or rotates a region a little (misplaced component).
	KindDisplace = "displace"
	// KindMissing fills a region from the smoothed surroundings
	// (background) or from the mean good part (missing component).
	KindMissing = "missing"
	// KindDuplicate copies a region of the same part elsewhere (extra
	// component).
	KindDuplicate = "duplicate"
	// KindStretch stretches or squashes a region about its centre (wrong
	// shape).
	KindStretch = "stretch"
)

// generatorVersion changes whenever a kind's draws change for the same
// seed (cached experiment rows are keyed by it).
const generatorVersion = 1

// PaperKinds are the SegAD paper's one-class disturbances (today's
// --synthetic-defects default before kinds existed).
var PaperKinds = []string{KindBlur, KindRect, KindThin}

// StructuralKinds change the surface of a part.
var StructuralKinds = []string{KindPerlin, KindCutPaste, KindScratch, KindColor, KindBlur, KindRect, KindThin}

// LogicalKinds change where, whether or how a component is.
var LogicalKinds = []string{KindDisplace, KindMissing, KindDuplicate, KindStretch}

// AllKinds lists every kind in a fixed order (seeding uses the position).
var AllKinds = []string{KindBlur, KindRect, KindThin, KindPerlin, KindCutPaste, KindScratch, KindColor, KindDisplace, KindMissing, KindDuplicate, KindStretch}

// ParseKinds reads a comma-separated kind list; "default" (DefaultKinds),
// "paper", "structural", "logical" and "all" name groups. The result has no duplicates
// and keeps AllKinds' order, so the same set always seeds the same way.
func ParseKinds(s string) ([]string, error) {
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		switch f {
		case "":
		case "default":
			for _, k := range DefaultKinds {
				want[k] = true
			}
		case "paper":
			for _, k := range PaperKinds {
				want[k] = true
			}
		case "structural":
			for _, k := range StructuralKinds {
				want[k] = true
			}
		case "logical":
			for _, k := range LogicalKinds {
				want[k] = true
			}
		case "all":
			for _, k := range AllKinds {
				want[k] = true
			}
		default:
			if !slices.Contains(AllKinds, f) {
				return nil, fmt.Errorf("unknown synthetic defect kind %q (kinds: %s; groups: default, paper, structural, logical, all)", f, strings.Join(AllKinds, ", "))
			}
			want[f] = true
		}
	}
	var out []string
	for _, k := range AllKinds {
		if want[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no synthetic defect kind in %q", s)
	}
	return out, nil
}

// kindIndex is k's position in AllKinds (its seeding stream).
func kindIndex(k string) int { return slices.Index(AllKinds, k) }

// minPixels is the smallest segment a kind can place a defect in: the
// paper's disturbances fit in a few pixels, textures and logical edits need
// room for a region whose content means something.
func minPixels(kind string) int {
	switch kind {
	case KindBlur, KindRect, KindThin:
		return 16
	case KindDisplace, KindMissing, KindDuplicate, KindStretch:
		return 256
	default:
		return 64
	}
}

// ErrSegmentTooSmall is returned (wrapped, naming the kind, segment and
// sizes) when a defect cannot be placed because the segment is too small.
var ErrSegmentTooSmall = errors.New("segment too small for this defect kind")

// Defect describes one synthetic defect.
type Defect struct {
	// Kind is one of AllKinds.
	Kind string
	// Segment is the mask label the defect lies in.
	Segment int
	// Rect bounds the changed area (the defect is Rect ∩ Segment).
	Rect image.Rectangle
	// Changed counts the pixels whose value changed.
	Changed int
}

// Generator draws synthetic defects of every kind into images of one size,
// each confined to one segment of the mask. Bank holds other good parts
// (BGR, the image's size) as texture and CutPaste sources; Mean is the mean
// good part (the "missing component" fill). Both may be empty: kinds that
// need another part then take it from the image itself (shifted), and
// missing components are filled from the background only. A Generator is
// read-only after NewGenerator and safe for concurrent use.
type Generator struct {
	mask   *segad.Mask
	counts []int
	bank   [][]byte
	mean   []byte
}

// NewGenerator returns a generator for images of the mask's size; bank
// images (8-bit BGR, w*h*3 bytes) are the texture bank.
func NewGenerator(mask *segad.Mask, bank [][]byte) (*Generator, error) {
	n := mask.Width * mask.Height * 3
	g := &Generator{mask: mask, counts: mask.Counts()}
	for i, b := range bank {
		if len(b) != n {
			return nil, fmt.Errorf("texture bank image %d has %d bytes, want %dx%dx3 = %d", i, len(b), mask.Width, mask.Height, n)
		}
	}
	g.bank = bank
	if len(bank) > 0 {
		sum := make([]int, n)
		for _, b := range bank {
			for i, v := range b {
				sum[i] += int(v)
			}
		}
		g.mean = make([]byte, n)
		for i, s := range sum {
			g.mean[i] = byte((s + len(bank)/2) / len(bank))
		}
	}
	return g, nil
}

// Synthesize draws one defect in the paper's mix (blur half the time, small
// or thin gray rectangle otherwise) in a random segment of mask (at the
// image's size). Only pixels of the chosen segment change. img is an 8-bit
// 3-channel continuous Mat, changed in place; the draw is a function of rng.
func Synthesize(img *gocv.Mat, mask *segad.Mask, rng *rand.Rand) (Defect, error) {
	g, err := NewGenerator(mask, nil)
	if err != nil {
		return Defect{}, err
	}
	kind := KindBlur
	switch rng.IntN(4) {
	case 2:
		kind = KindRect
	case 3:
		kind = KindThin
	}
	return g.Synthesize(img, kind, rng)
}

// Synthesize draws one defect of kind in a random segment large enough for
// it (ErrSegmentTooSmall when none is). See SynthesizeIn.
func (g *Generator) Synthesize(img *gocv.Mat, kind string, rng *rand.Rand) (Defect, error) {
	if err := g.CanPlace(kind); err != nil {
		return Defect{}, err
	}
	var segs []int
	for j, c := range g.counts {
		if c >= minPixels(kind) {
			segs = append(segs, j)
		}
	}
	if len(segs) == 0 {
		return Defect{}, g.CanPlace(kind)
	}
	return g.SynthesizeIn(img, kind, segs[rng.IntN(len(segs))], rng)
}

// SynthesizeIn draws one defect of kind in segment seg: only that segment's
// pixels change, so the defect is "in" that segment as the features see it.
// A segment smaller than the kind needs gives ErrSegmentTooSmall. The draw
// is a function of rng (and the generator's bank) alone.
func (g *Generator) SynthesizeIn(img *gocv.Mat, kind string, seg int, rng *rand.Rand) (Defect, error) {
	w, h := img.Cols(), img.Rows()
	if g.mask.Width != w || g.mask.Height != h {
		return Defect{}, fmt.Errorf("mask is %dx%d but the image is %dx%d", g.mask.Width, g.mask.Height, w, h)
	}
	if img.Type() != gocv.MatTypeCV8UC3 || !img.IsContinuous() {
		return Defect{}, errors.New("synthetic defects need an 8-bit 3-channel continuous image")
	}
	if kindIndex(kind) < 0 {
		return Defect{}, fmt.Errorf("unknown synthetic defect kind %q", kind)
	}
	if seg < 0 || seg >= len(g.counts) {
		return Defect{}, fmt.Errorf("%s defect: segment %d does not exist (mask has %d)", kind, seg, len(g.counts))
	}
	if n := g.counts[seg]; n < minPixels(kind) {
		return Defect{}, fmt.Errorf("%s defect in segment %d: %d pixels at %dx%d, the kind needs %d: %w",
			kind, seg, n, w, h, minPixels(kind), ErrSegmentTooSmall)
	}
	pix, err := img.DataPtrUint8()
	if err != nil {
		return Defect{}, err
	}
	c := &canvas{w: w, h: h, pix: pix, mask: g.mask, seg: seg, rng: rng}
	// A draw can change nothing (a blur or a shift of a flat area); draw
	// again, bounded, from the same stream so the result stays seeded.
	for try := 0; try < 20; try++ {
		cx, cy := randomPixel(g.mask, seg, g.counts[seg], rng)
		d, err := g.draw(c, kind, cx, cy)
		if err != nil {
			return Defect{}, err
		}
		if d.Changed > 0 {
			d.Kind, d.Segment = kind, seg
			return d, nil
		}
	}
	return Defect{}, fmt.Errorf("%s defect in segment %d: 20 draws changed no pixel (is the image flat there?)", kind, seg)
}

// canvas is one image being edited inside one segment.
type canvas struct {
	w, h int
	pix  []byte
	mask *segad.Mask
	seg  int
	rng  *rand.Rand
}

// apply blends src into the image with weight alpha(x, y) in [0, 1] over
// r ∩ the segment: the one place pixels change, so every kind stays inside
// its segment by construction.
func (c *canvas) apply(r image.Rectangle, src []byte, alpha func(x, y int) float64) Defect {
	r = r.Intersect(image.Rect(0, 0, c.w, c.h))
	d := Defect{Rect: r}
	label := uint8(c.seg)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if c.mask.Labels[y*c.w+x] != label {
				continue
			}
			a := 1.0
			if alpha != nil {
				a = alpha(x, y)
			}
			if a <= 0 {
				continue
			}
			o := (y*c.w + x) * 3
			changed := false
			for ch := 0; ch < 3; ch++ {
				v := byte(math.Round(a*float64(src[o+ch]) + (1-a)*float64(c.pix[o+ch])))
				if v != c.pix[o+ch] {
					c.pix[o+ch] = v
					changed = true
				}
			}
			if changed {
				d.Changed++
			}
		}
	}
	return d
}

// box is a w x h rectangle centred on (cx, cy).
func box(cx, cy, w, h int) image.Rectangle {
	return image.Rect(cx-w/2, cy-h/2, cx-w/2+w, cy-h/2+h)
}

func (g *Generator) draw(c *canvas, kind string, cx, cy int) (Defect, error) {
	w, h, rng := c.w, c.h, c.rng
	switch kind {
	case KindBlur:
		r := box(cx, cy, between(rng, w/8, w/3), between(rng, h/8, h/3))
		sigma := 2 + 4*rng.Float64()
		return c.apply(r, blurred(c.pix, w, h, sigma), nil), nil
	case KindRect, KindThin:
		var rw, rh int
		if kind == KindRect {
			rw, rh = between(rng, 3, w/12), between(rng, 3, h/12)
		} else if rng.IntN(2) == 0 {
			rw, rh = between(rng, w/8, w/3), between(rng, 1, 3)
		} else {
			rw, rh = between(rng, 1, 3), between(rng, h/8, h/3)
		}
		gray := byte(rng.IntN(256))
		src := make([]byte, len(c.pix))
		for i := range src {
			src[i] = gray
		}
		return c.apply(box(cx, cy, rw, rh), src, nil), nil
	case KindPerlin:
		r := box(cx, cy, between(rng, w/6, w/2), between(rng, h/6, h/2))
		tex := g.other(c)
		// DRAEM's texture augmentation: another place, maybe mirrored, re-lit.
		tex = warp(tex, w, h, affine{ox: float64(rng.IntN(w)), oy: float64(rng.IntN(h)), flipX: rng.IntN(2) == 0, flipY: rng.IntN(2) == 0, a: 1, d: 1}, true)
		relight(tex, 0.6+0.8*rng.Float64(), float64(rng.IntN(81)-40), nil)
		scale := float64(int(1) << between(rng, 1, 4)) // noise cells across the region
		noise := newPerlin(rng)
		beta := 0.8 * rng.Float64() // share of the original kept under the mask
		fx, fy := scale/float64(max(r.Dx(), 1)), scale/float64(max(r.Dy(), 1))
		return c.apply(r, tex, func(x, y int) float64 {
			if noise.at(float64(x-r.Min.X)*fx, float64(y-r.Min.Y)*fy) > 0.25 {
				return 1 - beta
			}
			return 0
		}), nil
	case KindCutPaste:
		pw, ph := between(rng, w/16, w/5), between(rng, h/16, h/5)
		src := c.pix
		if len(g.bank) > 0 && rng.IntN(2) == 0 {
			src = g.bank[rng.IntN(len(g.bank))]
		}
		// Source patch centre anywhere; the shift moves it onto (cx, cy).
		sx, sy := between(rng, pw/2, w-pw/2), between(rng, ph/2, h-ph/2)
		out := warp(src, w, h, affine{ox: float64(sx - cx), oy: float64(sy - cy), a: 1, d: 1}, true)
		relight(out, 0.85+0.3*rng.Float64(), float64(rng.IntN(21)-10), []float64{0.9 + 0.2*rng.Float64(), 0.9 + 0.2*rng.Float64(), 0.9 + 0.2*rng.Float64()})
		return c.apply(box(cx, cy, pw, ph), out, nil), nil
	case KindScratch:
		return c.scratch(cx, cy), nil
	case KindColor:
		rx, ry := float64(between(rng, w/16, w/5)), float64(between(rng, h/16, h/5))
		gain := []float64{0.6 + 0.8*rng.Float64(), 0.6 + 0.8*rng.Float64(), 0.6 + 0.8*rng.Float64()}
		if rng.IntN(2) == 0 { // brightness only
			gain[1], gain[2] = gain[0], gain[0]
		}
		out := append([]byte(nil), c.pix...)
		relight(out, 1, float64(rng.IntN(61)-30), gain)
		r := box(cx, cy, int(2*rx)+1, int(2*ry)+1)
		return c.apply(r, out, func(x, y int) float64 {
			u, v := float64(x-cx)/rx, float64(y-cy)/ry
			return math.Exp(-2 * (u*u + v*v)) // soft edge: no step for the detectors to find
		}), nil
	case KindDisplace:
		r := box(cx, cy, between(rng, w/6, w/2), between(rng, h/6, h/2))
		ang := (2 + 10*rng.Float64()) * math.Pi / 180
		if rng.IntN(2) == 0 {
			ang = -ang
		}
		if rng.IntN(2) == 0 {
			ang = 0 // a pure shift
		}
		dx, dy := float64(between(rng, 2, w/16)), float64(between(rng, 2, h/16))
		if rng.IntN(2) == 0 {
			dx = -dx
		}
		if rng.IntN(2) == 0 {
			dy = -dy
		}
		return c.apply(r, warp(c.pix, w, h, rotateAbout(float64(cx), float64(cy), ang, 1, 1, dx, dy), false), nil), nil
	case KindMissing:
		r := box(cx, cy, between(rng, w/8, w/3), between(rng, h/8, h/3))
		var src []byte
		if g.mean != nil && rng.IntN(2) == 0 {
			src = g.mean
		} else {
			src = blurred(c.pix, w, h, float64(max(r.Dx(), r.Dy()))/2)
		}
		return c.apply(r, src, nil), nil
	case KindDuplicate:
		pw, ph := between(rng, w/8, w/4), between(rng, h/8, h/4)
		sx, sy := between(rng, pw/2, w-pw/2), between(rng, ph/2, h-ph/2)
		if abs(sx-cx) < pw/2 && abs(sy-cy) < ph/2 { // elsewhere, not over itself
			sx = (sx + w/2) % w
		}
		out := warp(c.pix, w, h, affine{ox: float64(sx - cx), oy: float64(sy - cy), a: 1, d: 1}, true)
		return c.apply(box(cx, cy, pw, ph), out, nil), nil
	case KindStretch:
		r := box(cx, cy, between(rng, w/6, w/2), between(rng, h/6, h/2))
		s := func() float64 {
			f := 1.1 + 0.25*rng.Float64()
			if rng.IntN(2) == 0 {
				return 1 / f
			}
			return f
		}
		sx, sy := s(), 1.0
		switch rng.IntN(3) {
		case 0:
			sx, sy = 1, s()
		case 1:
			sy = s()
		}
		return c.apply(r, warp(c.pix, w, h, rotateAbout(float64(cx), float64(cy), 0, sx, sy, 0, 0), false), nil), nil
	}
	return Defect{}, fmt.Errorf("unknown synthetic defect kind %q", kind)
}

// other returns another good part from the bank, or (no bank) the image
// itself: the caller moves it, so it is still "a texture from elsewhere".
func (g *Generator) other(c *canvas) []byte {
	if len(g.bank) == 0 {
		return append([]byte(nil), c.pix...)
	}
	return append([]byte(nil), g.bank[c.rng.IntN(len(g.bank))]...)
}

// scratch draws a quadratic Bézier stroke through (cx, cy), 1-3 px wide,
// darker or brighter than the part, with an anti-aliased edge.
func (c *canvas) scratch(cx, cy int) Defect {
	w, h, rng := c.w, c.h, c.rng
	length := float64(between(rng, w/8, w/2))
	ang := rng.Float64() * math.Pi
	ux, uy := math.Cos(ang), math.Sin(ang)
	p0 := [2]float64{float64(cx) - ux*length/2, float64(cy) - uy*length/2}
	p2 := [2]float64{float64(cx) + ux*length/2, float64(cy) + uy*length/2}
	bend := (rng.Float64() - 0.5) * length * 0.6
	p1 := [2]float64{float64(cx) - uy*bend, float64(cy) + ux*bend}
	half := 0.5 + rng.Float64() // half width 0.5-1.5 px
	var pts [][2]float64
	for i := 0; i <= 64; i++ {
		t := float64(i) / 64
		a, b, cc := (1-t)*(1-t), 2*(1-t)*t, t*t
		pts = append(pts, [2]float64{a*p0[0] + b*p1[0] + cc*p2[0], a*p0[1] + b*p1[1] + cc*p2[1]})
	}
	out := make([]byte, len(c.pix))
	level := float64(rng.IntN(60))
	if rng.IntN(2) == 0 {
		level = float64(190 + rng.IntN(66))
	}
	for i := range out {
		out[i] = byte(level)
	}
	r := image.Rect(int(math.Min(math.Min(p0[0], p1[0]), p2[0])-3), int(math.Min(math.Min(p0[1], p1[1]), p2[1])-3),
		int(math.Max(math.Max(p0[0], p1[0]), p2[0])+4), int(math.Max(math.Max(p0[1], p1[1]), p2[1])+4))
	_ = h
	return c.apply(r, out, func(x, y int) float64 {
		best := math.Inf(1)
		px, py := float64(x), float64(y)
		for i := 1; i < len(pts); i++ {
			if d := segDist(px, py, pts[i-1], pts[i]); d < best {
				best = d
			}
		}
		return math.Max(0, math.Min(1, half+0.5-best))
	})
}

// segDist is the distance from (px, py) to the segment a-b.
func segDist(px, py float64, a, b [2]float64) float64 {
	dx, dy := b[0]-a[0], b[1]-a[1]
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = math.Max(0, math.Min(1, ((px-a[0])*dx+(py-a[1])*dy)/l))
	}
	ex, ey := px-(a[0]+t*dx), py-(a[1]+t*dy)
	return math.Hypot(ex, ey)
}

// affine maps a destination pixel to its source: (x, y) -> (a*x + b*y + ox,
// c*x + d*y + oy), optionally mirrored first.
type affine struct {
	a, b, c, d, ox, oy float64
	flipX, flipY       bool
}

// rotateAbout is the inverse map of rotating by ang and scaling by (sx, sy)
// about (cx, cy), then shifting by (dx, dy).
func rotateAbout(cx, cy, ang, sx, sy, dx, dy float64) affine {
	cs, sn := math.Cos(ang), math.Sin(ang)
	// dst = R S (src - c) + c + t  =>  src = S^-1 R^T (dst - c - t) + c
	a, b := cs/sx, sn/sx
	c, d := -sn/sy, cs/sy
	tx, ty := cx+dx, cy+dy
	return affine{a: a, b: b, c: c, d: d, ox: cx - a*tx - b*ty, oy: cy - c*tx - d*ty}
}

// warp resamples img (w x h BGR) through m with bilinear interpolation;
// out-of-image sources wrap around (wrap) or reflect at the border.
func warp(img []byte, w, h int, m affine, wrap bool) []byte {
	out := make([]byte, len(img))
	fold := func(v float64, n int) float64 {
		fn := float64(n)
		if wrap {
			v = math.Mod(v, fn)
			if v < 0 {
				v += fn
			}
			return v
		}
		for v < 0 || v > fn-1 {
			if v < 0 {
				v = -v
			}
			if v > fn-1 {
				v = 2*(fn-1) - v
			}
		}
		return v
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			fx, fy := float64(x), float64(y)
			if m.flipX {
				fx = float64(w-1) - fx
			}
			if m.flipY {
				fy = float64(h-1) - fy
			}
			sx := fold(m.a*fx+m.b*fy+m.ox, w)
			sy := fold(m.c*fx+m.d*fy+m.oy, h)
			x0, y0 := int(sx), int(sy)
			x1, y1 := x0+1, y0+1
			if x1 >= w {
				x1 = x0
				if wrap {
					x1 = 0
				}
			}
			if y1 >= h {
				y1 = y0
				if wrap {
					y1 = 0
				}
			}
			tx, ty := sx-float64(x0), sy-float64(y0)
			o := (y*w + x) * 3
			for ch := 0; ch < 3; ch++ {
				v00 := float64(img[(y0*w+x0)*3+ch])
				v01 := float64(img[(y0*w+x1)*3+ch])
				v10 := float64(img[(y1*w+x0)*3+ch])
				v11 := float64(img[(y1*w+x1)*3+ch])
				v := (1-ty)*((1-tx)*v00+tx*v01) + ty*((1-tx)*v10+tx*v11)
				out[o+ch] = byte(math.Round(v))
			}
		}
	}
	return out
}

// relight applies v*gain[ch]*contrast + offset (clamped) in place.
func relight(img []byte, contrast, offset float64, gain []float64) {
	for i, v := range img {
		g := contrast
		if gain != nil {
			g *= gain[i%3]
		}
		img[i] = clamp8(float64(v)*g + offset)
	}
}

func clamp8(v float64) byte {
	return byte(math.Max(0, math.Min(255, math.Round(v))))
}

// blurred returns a Gaussian blur of img (w x h BGR) through OpenCV.
func blurred(img []byte, w, h int, sigma float64) []byte {
	m, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, img)
	if err != nil {
		return append([]byte(nil), img...)
	}
	defer m.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.GaussianBlur(m, &dst, image.Pt(0, 0), sigma, sigma, gocv.BorderReflect101)
	return dst.ToBytes()
}

// perlin is 2D gradient noise (Perlin's improved noise with a seeded
// permutation), in about [-1, 1].
type perlin struct{ p [512]int }

func newPerlin(rng *rand.Rand) *perlin {
	n := &perlin{}
	perm := rng.Perm(256)
	for i := 0; i < 512; i++ {
		n.p[i] = perm[i&255]
	}
	return n
}

func (n *perlin) at(x, y float64) float64 {
	xi, yi := int(math.Floor(x))&255, int(math.Floor(y))&255
	xf, yf := x-math.Floor(x), y-math.Floor(y)
	fade := func(t float64) float64 { return t * t * t * (t*(t*6-15) + 10) }
	grad := func(hash int, x, y float64) float64 {
		switch hash & 7 {
		case 0:
			return x + y
		case 1:
			return -x + y
		case 2:
			return x - y
		case 3:
			return -x - y
		case 4:
			return x
		case 5:
			return -x
		case 6:
			return y
		default:
			return -y
		}
	}
	u, v := fade(xf), fade(yf)
	aa, ab := n.p[n.p[xi]+yi], n.p[n.p[xi]+yi+1]
	ba, bb := n.p[n.p[xi+1]+yi], n.p[n.p[xi+1]+yi+1]
	lerp := func(t, a, b float64) float64 { return a + t*(b-a) }
	return lerp(v, lerp(u, grad(aa, xf, yf), grad(ba, xf-1, yf)), lerp(u, grad(ab, xf, yf-1), grad(bb, xf-1, yf-1)))
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// randomPixel returns a uniformly drawn pixel of segment j (n pixels).
func randomPixel(m *segad.Mask, j, n int, rng *rand.Rand) (x, y int) {
	k := rng.IntN(n)
	for i, l := range m.Labels {
		if int(l) == j {
			if k == 0 {
				return i % m.Width, i / m.Width
			}
			k--
		}
	}
	return 0, 0
}

// between draws an int in [lo, hi] (lo when hi <= lo).
func between(rng *rand.Rand, lo, hi int) int {
	if lo < 1 {
		lo = 1
	}
	if hi <= lo {
		return lo
	}
	return lo + rng.IntN(hi-lo+1)
}

// CanPlace says whether some segment is large enough for kind (an error
// wrapping ErrSegmentTooSmall, naming the sizes, when none is).
func (g *Generator) CanPlace(kind string) error {
	if kindIndex(kind) < 0 {
		return fmt.Errorf("unknown synthetic defect kind %q", kind)
	}
	if slices.Max(g.counts) < minPixels(kind) {
		return fmt.Errorf("%s defect: no segment has %d pixels or more at %dx%d (largest %d): %w",
			kind, minPixels(kind), g.mask.Width, g.mask.Height, slices.Max(g.counts), ErrSegmentTooSmall)
	}
	return nil
}

package fit

import (
	"errors"
	"fmt"
	"image"
	"math/rand/v2"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/segad"
)

// Defect describes one synthetic defect.
type Defect struct {
	// Kind is "blur" (Gaussian blur of part of a segment), "rect" (small
	// rectangle of a random gray) or "thin" (thin rectangle of a random gray).
	Kind string
	// Segment is the mask label the defect lies in.
	Segment int
	// Rect bounds the changed area (the defect is Rect ∩ Segment).
	Rect image.Rectangle
	// Changed counts the pixels whose value changed.
	Changed int
}

// minSegmentPixels keeps defects out of segments too small to hold one.
const minSegmentPixels = 16

// Synthesize draws one defect as the SegAD paper's one-class setting does:
// in a random segment of mask (at the image's size), either a Gaussian blur
// of part of it or a small or thin rectangle of a random gray. Only pixels
// of the chosen segment change, so the defect is "in" that segment as the
// features see it. img is an 8-bit 3-channel continuous Mat, changed in
// place. The draw is a function of rng alone.
func Synthesize(img *gocv.Mat, mask *segad.Mask, rng *rand.Rand) (Defect, error) {
	w, h := img.Cols(), img.Rows()
	if mask.Width != w || mask.Height != h {
		return Defect{}, fmt.Errorf("mask is %dx%d but the image is %dx%d", mask.Width, mask.Height, w, h)
	}
	if img.Type() != gocv.MatTypeCV8UC3 || !img.IsContinuous() {
		return Defect{}, errors.New("synthetic defects need an 8-bit 3-channel continuous image")
	}
	counts := mask.Counts()
	var segs []int
	for j, c := range counts {
		if c >= minSegmentPixels {
			segs = append(segs, j)
		}
	}
	if len(segs) == 0 {
		return Defect{}, fmt.Errorf("no segment has %d pixels or more at %dx%d", minSegmentPixels, w, h)
	}
	pix, err := img.DataPtrUint8()
	if err != nil {
		return Defect{}, err
	}
	// A blur of a flat area changes nothing; draw again (bounded).
	for try := 0; try < 20; try++ {
		d := Defect{Segment: segs[rng.IntN(len(segs))]}
		cx, cy := randomPixel(mask, d.Segment, counts[d.Segment], rng)
		var rw, rh int
		switch k := rng.IntN(4); {
		case k < 2:
			d.Kind = "blur"
			rw, rh = between(rng, w/8, w/3), between(rng, h/8, h/3)
		case k == 2:
			d.Kind = "rect"
			rw, rh = between(rng, 3, w/12), between(rng, 3, h/12)
		default:
			d.Kind = "thin"
			if rng.IntN(2) == 0 {
				rw, rh = between(rng, w/8, w/3), between(rng, 1, 3)
			} else {
				rw, rh = between(rng, 1, 3), between(rng, h/8, h/3)
			}
		}
		d.Rect = image.Rect(cx-rw/2, cy-rh/2, cx-rw/2+rw, cy-rh/2+rh).Intersect(image.Rect(0, 0, w, h))
		var src []byte
		var gray byte
		if d.Kind == "blur" {
			sigma := 2 + 4*rng.Float64()
			blurred := gocv.NewMat()
			gocv.GaussianBlur(*img, &blurred, image.Pt(0, 0), sigma, sigma, gocv.BorderReflect101)
			b, err := blurred.DataPtrUint8()
			if err != nil {
				blurred.Close()
				return Defect{}, err
			}
			src = append([]byte(nil), b...)
			blurred.Close()
		} else {
			gray = byte(rng.IntN(256))
		}
		label := uint8(d.Segment)
		stride := img.Step()
		for y := d.Rect.Min.Y; y < d.Rect.Max.Y; y++ {
			for x := d.Rect.Min.X; x < d.Rect.Max.X; x++ {
				if mask.Labels[y*w+x] != label {
					continue
				}
				o := y*stride + 3*x
				changed := false
				for c := 0; c < 3; c++ {
					v := gray
					if src != nil {
						v = src[o+c]
					}
					if pix[o+c] != v {
						pix[o+c] = v
						changed = true
					}
				}
				if changed {
					d.Changed++
				}
			}
		}
		if d.Changed > 0 {
			return d, nil
		}
	}
	return Defect{}, errors.New("20 draws changed no pixel (is the image flat?)")
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

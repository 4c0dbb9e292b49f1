package segad

import "math"

// VAD segment labels, in the order of VADSegmentNames.
const (
	VADBackground = iota
	VADOuterHalfCircle
	VADPiezoBorder
	VADSolderDots
	VADWires
	VADPins
	VADPiezoMiddle
)

// VADSegmentNames are the 7 segments of the VAD (Valeo Anomaly Dataset)
// static segmentation, in label order, as SegAD's paper lists them.
var VADSegmentNames = []string{
	"background", "outer_half_circle", "piezo_border", "solder_dots",
	"wires", "pins", "piezo_middle",
}

// VADGeometry places a VAD-like part: a round piezo disc centred in the
// image, a ring at its border, an outer half-circle (upper half) around it,
// two solder dots on the disc and two wires running from them to two pins
// near the bottom edge. Lengths are fractions of the image's shorter side;
// positions are offsets from the image centre in the same unit (y grows
// downwards), so one geometry fits every map size.
type VADGeometry struct {
	// DiscRadius is the piezo disc's radius.
	DiscRadius float64
	// BorderWidth is the width of the border ring, inside the disc's edge.
	BorderWidth float64
	// OuterRadius is the outer radius of the half-circle around the disc.
	OuterRadius float64
	// DotRadius is a solder dot's radius; DotDX and DotDY place the dots at
	// (±DotDX, DotDY) from the centre.
	DotRadius, DotDX, DotDY float64
	// WireWidth is a wire's thickness.
	WireWidth float64
	// PinDX and PinDY place the pins' centres at (±PinDX, PinDY); PinW and
	// PinH are a pin's width and height.
	PinDX, PinDY, PinW, PinH float64
}

// DefaultVADGeometry returns proportions resembling VAD's centred part.
func DefaultVADGeometry() VADGeometry {
	return VADGeometry{
		DiscRadius:  0.30,
		BorderWidth: 0.04,
		OuterRadius: 0.43,
		DotRadius:   0.035,
		DotDX:       0.11,
		DotDY:       0.10,
		WireWidth:   0.022,
		PinDX:       0.16,
		PinDY:       0.40,
		PinW:        0.06,
		PinH:        0.08,
	}
}

// VADTemplate draws the 7-segment VAD-like mask at width x height, sampling
// each pixel at its centre. Later shapes paint over earlier ones: disc over
// half-circle, border over disc, wires, then dots, then pins on top.
func VADTemplate(width, height int, g VADGeometry) *Mask {
	m := &Mask{Width: width, Height: height, Labels: make([]uint8, width*height),
		Names: append([]string(nil), VADSegmentNames...)}
	s := float64(min(width, height))
	for y := 0; y < height; y++ {
		py := (float64(y) + 0.5 - float64(height)/2) / s
		for x := 0; x < width; x++ {
			px := (float64(x) + 0.5 - float64(width)/2) / s
			m.Labels[y*width+x] = vadLabel(px, py, g)
		}
	}
	return m
}

func vadLabel(px, py float64, g VADGeometry) uint8 {
	r := math.Hypot(px, py)
	label := uint8(VADBackground)
	if r <= g.OuterRadius && py < 0 {
		label = VADOuterHalfCircle
	}
	if r <= g.DiscRadius {
		label = VADPiezoMiddle
		if r > g.DiscRadius-g.BorderWidth {
			label = VADPiezoBorder
		}
	}
	for _, side := range []float64{-1, 1} {
		dx, dy := side*g.DotDX, g.DotDY
		pinX, pinTop := side*g.PinDX, g.PinDY-g.PinH/2
		if segDist(px, py, dx, dy, pinX, pinTop) <= g.WireWidth/2 {
			label = VADWires
		}
	}
	for _, side := range []float64{-1, 1} {
		if math.Hypot(px-side*g.DotDX, py-g.DotDY) <= g.DotRadius {
			label = VADSolderDots
		}
	}
	for _, side := range []float64{-1, 1} {
		if math.Abs(px-side*g.PinDX) <= g.PinW/2 && math.Abs(py-g.PinDY) <= g.PinH/2 {
			label = VADPins
		}
	}
	return label
}

// segDist is the distance from point p to the segment a-b.
func segDist(px, py, ax, ay, bx, by float64) float64 {
	vx, vy := bx-ax, by-ay
	t := ((px-ax)*vx + (py-ay)*vy) / (vx*vx + vy*vy)
	t = math.Max(0, math.Min(1, t))
	return math.Hypot(px-(ax+t*vx), py-(ay+t*vy))
}

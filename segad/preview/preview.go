// Package preview draws a segmentation mask over a part image (GoCV), so a
// technician can check that the static mask lines up with the parts the
// camera sees: each segment is tinted in its own colour, outlined, and
// listed in a legend with its index, name and pixel share.
package preview

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/segad"
)

// Options tune the overlay.
type Options struct {
	// Alpha is the tint's weight: out = (1-Alpha)*image + Alpha*colour.
	Alpha float64
	// Outline draws each segment's contours in its full colour.
	Outline bool
	// Legend draws the segment table in the top-left corner.
	Legend bool
}

// DefaultOptions are what `segad mask preview` uses.
func DefaultOptions() Options { return Options{Alpha: 0.45, Outline: true, Legend: true} }

// palette holds well-separated colours (Tableau 10); segments beyond it get
// hues spaced by the golden angle.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {188, 189, 34, 255},
	{23, 190, 207, 255}, {127, 127, 127, 255},
}

// Colour returns segment j's colour (RGB; GoCV converts to BGR when drawing).
func Colour(j int) color.RGBA {
	if j < len(palette) {
		return palette[j]
	}
	h := math.Mod(float64(j)*137.508, 360)
	return hsv(h, 0.75, 0.95)
}

func hsv(h, s, v float64) color.RGBA {
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := v - c
	var r, g, b float64
	switch {
	case h < 60:
		r, g, b = c, x, 0
	case h < 120:
		r, g, b = x, c, 0
	case h < 180:
		r, g, b = 0, c, x
	case h < 240:
		r, g, b = 0, x, c
	case h < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	return color.RGBA{uint8((r + m) * 255), uint8((g + m) * 255), uint8((b + m) * 255), 255}
}

// Tint returns the blended value of one 8-bit channel, the rule Render
// applies to every pixel of a segment: round((1-alpha)*v + alpha*c).
func Tint(v, c uint8, alpha float64) uint8 {
	return uint8(math.Round((1-alpha)*float64(v) + alpha*float64(c)))
}

// Render returns a new BGR image (8UC3, the input's size) with the mask drawn
// over img. The mask is resized to the image with nearest neighbour, so a
// 256x256 map mask previews over a full camera frame. Pixels of no segment
// (label 255) are left untouched. The caller closes the returned Mat.
func Render(mask *segad.Mask, img gocv.Mat, opt Options) (gocv.Mat, error) {
	if img.Empty() {
		return gocv.NewMat(), errors.New("render mask preview: empty image")
	}
	if img.Type() != gocv.MatTypeCV8UC3 {
		return gocv.NewMat(), fmt.Errorf("render mask preview: image type %v, want 8-bit BGR", img.Type())
	}
	if opt.Alpha < 0 || opt.Alpha > 1 || math.IsNaN(opt.Alpha) {
		return gocv.NewMat(), fmt.Errorf("render mask preview: alpha %v outside 0..1", opt.Alpha)
	}
	w, h := img.Cols(), img.Rows()
	m, err := mask.Resize(w, h)
	if err != nil {
		return gocv.NewMat(), fmt.Errorf("render mask preview: %w", err)
	}
	L := m.NumSegments()
	// BGR lookup per label, so the per-pixel loop is a table read.
	var lut [256][3]uint8
	for j := 0; j < L; j++ {
		c := Colour(j)
		lut[j] = [3]uint8{c.B, c.G, c.R}
	}
	pix := img.ToBytes() // a copy: the input stays untouched
	for i, l := range m.Labels {
		if int(l) >= L {
			continue
		}
		p := pix[3*i : 3*i+3]
		for ch := 0; ch < 3; ch++ {
			p[ch] = Tint(p[ch], lut[l][ch], opt.Alpha)
		}
	}
	view, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, pix)
	if err != nil {
		return gocv.NewMat(), fmt.Errorf("render mask preview: %w", err)
	}
	// NewMatFromBytes may share pix's memory; Clone gives the caller a Mat
	// that owns its data.
	out := view.Clone()
	view.Close()
	if opt.Outline {
		if err := drawOutlines(&out, m); err != nil {
			out.Close()
			return gocv.NewMat(), fmt.Errorf("render mask preview: %w", err)
		}
	}
	if opt.Legend {
		drawLegend(&out, m)
	}
	return out, nil
}

func drawOutlines(out *gocv.Mat, m *segad.Mask) error {
	bin := make([]byte, len(m.Labels))
	for j := 0; j < m.NumSegments(); j++ {
		any := false
		for i, l := range m.Labels {
			if int(l) == j {
				bin[i] = 255
				any = true
			} else {
				bin[i] = 0
			}
		}
		if !any {
			continue
		}
		bm, err := gocv.NewMatFromBytes(m.Height, m.Width, gocv.MatTypeCV8UC1, bin)
		if err != nil {
			return err
		}
		contours := gocv.FindContours(bm, gocv.RetrievalList, gocv.ChainApproxSimple)
		gocv.DrawContours(out, contours, -1, Colour(j), 1)
		contours.Close()
		bm.Close()
	}
	return nil
}

// legendLayout measures the legend for a mask at an image size.
type legendLayout struct {
	lines            []string
	box              image.Rectangle
	pad, step, sw, h int
	scale            float64
}

func layoutLegend(m *segad.Mask, width, height int) legendLayout {
	counts := m.Counts()
	total := len(m.Labels)
	lo := legendLayout{scale: math.Max(0.35, float64(min(width, height))/900)}
	textW := 0
	for j, c := range counts {
		s := fmt.Sprintf("%d %s %.1f%%", j, m.Names[j], 100*float64(c)/float64(total))
		lo.lines = append(lo.lines, s)
		sz := gocv.GetTextSize(s, gocv.FontHersheySimplex, lo.scale, 1)
		textW = max(textW, sz.X)
		lo.h = max(lo.h, sz.Y)
	}
	lo.pad = max(2, lo.h/3)
	lo.step = lo.h + 2*lo.pad
	lo.sw = lo.h // swatch side
	lo.box = image.Rect(0, 0, min(width, 4*lo.pad+lo.sw+textW), min(height, lo.step*len(lo.lines)+lo.pad))
	return lo
}

// LegendRect returns the top-left area the legend covers on an overlay of
// width x height (the mask is resized to that size first, as Render does).
func LegendRect(m *segad.Mask, width, height int) image.Rectangle {
	rm, err := m.Resize(width, height)
	if err != nil {
		return image.Rectangle{}
	}
	return layoutLegend(rm, width, height).box
}

func drawLegend(out *gocv.Mat, m *segad.Mask) {
	lo := layoutLegend(m, out.Cols(), out.Rows())
	gocv.Rectangle(out, lo.box, color.RGBA{20, 20, 20, 255}, -1)
	for j, s := range lo.lines {
		y := lo.pad + j*lo.step
		gocv.Rectangle(out, image.Rect(lo.pad, y+lo.pad, lo.pad+lo.sw, y+lo.pad+lo.sw), Colour(j), -1)
		gocv.PutText(out, s, image.Pt(3*lo.pad+lo.sw, y+lo.pad+lo.h), gocv.FontHersheySimplex, lo.scale,
			color.RGBA{240, 240, 240, 255}, 1)
	}
}

// RenderFile reads the image at imagePath, renders the mask over it and
// writes the overlay to outPath (format from its extension, e.g. .png).
func RenderFile(mask *segad.Mask, imagePath, outPath string, opt Options) error {
	// capture's guarded reader: gocv.IMRead aborts the process on an
	// image OpenCV refuses (a gigapixel header) instead of returning.
	img, err := capture.ReadImage(imagePath)
	if err != nil {
		return fmt.Errorf("mask preview: cannot read image %s: %w", imagePath, err)
	}
	defer img.Close()
	out, err := Render(mask, img, opt)
	if err != nil {
		return fmt.Errorf("mask preview of %s: %w", imagePath, err)
	}
	defer out.Close()
	if err := capture.WriteImage(outPath, out); err != nil {
		return fmt.Errorf("mask preview: cannot write %s: %w", outPath, err)
	}
	return nil
}

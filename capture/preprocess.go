package capture

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// preprocessor turns an original frame into Frame.Image. Its settings are
// fixed at Open so the per-frame path does no parsing.
type preprocessor struct {
	size   image.Point
	interp gocv.InterpolationFlags
	roi    *image.Rectangle
	color  string
	// align registers each frame to capture.align's reference; nil when
	// fixturing is off.
	align *aligner
}

func newPreprocessor(c PreprocessConfig) (*preprocessor, error) {
	// Also checked here, not only in Validate: DecodeFrame and FrameFromMat
	// take settings that never went through a config file.
	if c.Width < 1 || c.Height < 1 || c.Width > maxPreprocessSide || c.Height > maxPreprocessSide {
		return nil, fmt.Errorf("preprocess size %dx%d is outside 1..%d a side", c.Width, c.Height, maxPreprocessSide)
	}
	interp, err := interpolation(c.Interpolation)
	if err != nil {
		return nil, err
	}
	p := &preprocessor{size: image.Pt(c.Width, c.Height), interp: interp, color: c.Color}
	if c.ROI != nil {
		r := image.Rect(c.ROI.X, c.ROI.Y, c.ROI.X+c.ROI.Width, c.ROI.Y+c.ROI.Height)
		p.roi = &r
	}
	if p.align, err = newAligner(c, p); err != nil {
		return nil, err
	}
	return p, nil
}

// apply returns a new continuous 8UC3 Mat: ROI crop, resize, colour. The
// source Mat is left untouched (it stays as Frame.Original).
func (p *preprocessor) apply(src gocv.Mat) (gocv.Mat, error) {
	if src.Empty() {
		return gocv.Mat{}, fmt.Errorf("empty frame")
	}
	in := src
	// Normalise to 8-bit BGR first: mono cameras give 1 channel, PNGs with
	// alpha 4, machine-vision cameras 16-bit.
	var norm gocv.Mat
	if in.Type() != gocv.MatTypeCV8UC3 {
		var err error
		norm, err = toBGR8(in)
		if err != nil {
			return gocv.Mat{}, err
		}
		defer norm.Close()
		in = norm
	}
	if p.roi != nil {
		bounds := image.Rect(0, 0, in.Cols(), in.Rows())
		if !p.roi.In(bounds) {
			return gocv.Mat{}, fmt.Errorf("roi %v lies outside the %dx%d frame", *p.roi, in.Cols(), in.Rows())
		}
		view := in.Region(*p.roi)
		defer view.Close()
		in = view
	}
	out := gocv.NewMat()
	gocv.Resize(in, &out, p.size, 0, 0, p.interp)
	switch p.color {
	case ColorRGB:
		swapped := gocv.NewMat()
		gocv.CvtColor(out, &swapped, gocv.ColorBGRToRGB)
		out.Close()
		out = swapped
	case ColorGray:
		gray := gocv.NewMat()
		gocv.CvtColor(out, &gray, gocv.ColorBGRToGray)
		gocv.CvtColor(gray, &out, gocv.ColorGrayToBGR)
		gray.Close()
	}
	return out, nil
}

// toBGR8 converts any supported frame layout to 8-bit three-channel BGR.
func toBGR8(src gocv.Mat) (gocv.Mat, error) {
	in := src
	var depth8 gocv.Mat
	switch src.Type() & 7 { // depth bits
	case gocv.MatTypeCV8U:
	case gocv.MatTypeCV16U:
		depth8 = gocv.NewMat()
		src.ConvertToWithParams(&depth8, gocv.MatTypeCV8U, 1.0/257, 0)
		defer depth8.Close()
		in = depth8
	default:
		return gocv.Mat{}, fmt.Errorf("unsupported pixel type %v (want 8 or 16 bit)", src.Type())
	}
	out := gocv.NewMat()
	switch in.Channels() {
	case 1:
		gocv.CvtColor(in, &out, gocv.ColorGrayToBGR)
	case 3:
		in.CopyTo(&out)
	case 4:
		gocv.CvtColor(in, &out, gocv.ColorBGRAToBGR)
	default:
		out.Close()
		return gocv.Mat{}, fmt.Errorf("unsupported channel count %d", in.Channels())
	}
	return out, nil
}

// locate is the last preprocessing step: fixturing registers img to the
// reference and warps it into the reference pose (align.go). It returns
// nil when fixturing is off.
func (p *preprocessor) locate(img *gocv.Mat) *Alignment {
	if p.align == nil {
		return nil
	}
	return p.align.locate(img)
}

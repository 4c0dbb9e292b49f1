package capture

import (
	"math"
	"testing"

	"gocv.io/x/gocv"
)

// patternMat returns a w x h 8-bit Mat of type mt filled with a
// deterministic, non-repeating-looking pattern.
func patternMat(w, h int, mt gocv.MatType) gocv.Mat {
	m := gocv.NewMatWithSize(h, w, mt)
	pix, _ := m.DataPtrUint8()
	for i := range pix {
		pix[i] = uint8((i*131 + i/7*17) % 251)
	}
	return m
}

// TestPreprocessROIResizeRGB checks ROI + INTER_AREA resize + BGR->RGB
// against direct pixel math: with an integer shrink factor, INTER_AREA is the
// plain mean of each factor x factor block.
func TestPreprocessROIResizeRGB(t *testing.T) {
	src := patternMat(120, 90, gocv.MatTypeCV8UC3)
	defer src.Close()
	spix, _ := src.DataPtrUint8()
	cases := []struct {
		name         string
		roi          *ROI
		w, h, factor int
		color        string
		ox, oy       int
	}{
		{"roi area rgb", &ROI{X: 10, Y: 6, Width: 64, Height: 32}, 16, 8, 4, ColorRGB, 10, 6},
		{"roi area bgr", &ROI{X: 0, Y: 2, Width: 60, Height: 40}, 30, 20, 2, ColorBGR, 0, 2},
		{"whole frame", nil, 40, 30, 3, ColorRGB, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := newPreprocessor(PreprocessConfig{Width: c.w, Height: c.h, Interpolation: "area", ROI: c.roi, Color: c.color})
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.apply(src)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			if out.Cols() != c.w || out.Rows() != c.h || out.Type() != gocv.MatTypeCV8UC3 || !out.IsContinuous() {
				t.Fatalf("out %dx%d type %v continuous %v", out.Cols(), out.Rows(), out.Type(), out.IsContinuous())
			}
			opix, _ := out.DataPtrUint8()
			worst := 0.0
			for y := 0; y < c.h; y++ {
				for x := 0; x < c.w; x++ {
					for ch := 0; ch < 3; ch++ {
						sum := 0
						for dy := 0; dy < c.factor; dy++ {
							for dx := 0; dx < c.factor; dx++ {
								sy, sx := c.oy+y*c.factor+dy, c.ox+x*c.factor+dx
								sum += int(spix[(sy*120+sx)*3+ch])
							}
						}
						want := float64(sum) / float64(c.factor*c.factor)
						och := ch
						if c.color == ColorRGB {
							och = 2 - ch
						}
						got := float64(opix[(y*c.w+x)*3+och])
						worst = math.Max(worst, math.Abs(got-want))
					}
				}
			}
			if worst > 0.5+1e-9 { // rounding to 8 bit only
				t.Fatalf("max deviation from block mean %.2f", worst)
			}
		})
	}
}

// TestPreprocessInputs: mono, BGRA and 16-bit frames become 8-bit BGR; gray
// output follows OpenCV's luminance weights; an ROI outside the frame is an
// error, not a crash.
func TestPreprocessInputs(t *testing.T) {
	p, _ := newPreprocessor(PreprocessConfig{Width: 8, Height: 8, Interpolation: "nearest", Color: ColorBGR})
	gray, _ := newPreprocessor(PreprocessConfig{Width: 8, Height: 8, Interpolation: "nearest", Color: ColorGray})
	cases := []struct {
		name string
		mk   func() gocv.Mat
		pre  *preprocessor
		want [3]uint8
	}{
		{"mono", func() gocv.Mat {
			return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(77, 0, 0, 0), 16, 16, gocv.MatTypeCV8UC1)
		}, p, [3]uint8{77, 77, 77}},
		{"bgra", func() gocv.Mat {
			return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(1, 2, 3, 4), 16, 16, gocv.MatTypeCV8UC4)
		}, p, [3]uint8{1, 2, 3}},
		{"16 bit", func() gocv.Mat {
			return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(257*200, 257*100, 257*50, 0), 16, 16, gocv.MatTypeCV16UC3)
		}, p, [3]uint8{200, 100, 50}},
		{"gray out", func() gocv.Mat {
			return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(200, 100, 50, 0), 16, 16, gocv.MatTypeCV8UC3)
		}, gray, [3]uint8{grayOf(200, 100, 50), grayOf(200, 100, 50), grayOf(200, 100, 50)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.mk()
			defer src.Close()
			out, err := c.pre.apply(src)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			v := out.GetVecbAt(3, 3)
			if out.Type() != gocv.MatTypeCV8UC3 || [3]uint8{v[0], v[1], v[2]} != c.want {
				t.Fatalf("got type %v pixel %v, want %v", out.Type(), v, c.want)
			}
		})
	}
	roi, _ := newPreprocessor(PreprocessConfig{Width: 8, Height: 8, Interpolation: "area", Color: ColorBGR, ROI: &ROI{X: 10, Y: 10, Width: 20, Height: 20}})
	src := gocv.NewMatWithSize(16, 16, gocv.MatTypeCV8UC3)
	defer src.Close()
	if out, err := roi.apply(src); err == nil {
		out.Close()
		t.Fatal("ROI outside the frame accepted")
	}
}

// grayOf is OpenCV's BGR2GRAY: 0.299 R + 0.587 G + 0.114 B, rounded.
func grayOf(b, g, r float64) uint8 { return uint8(math.Round(0.299*r + 0.587*g + 0.114*b)) }

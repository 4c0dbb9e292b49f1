package infer

import (
	"fmt"
	"strings"
)

// Image is an 8-bit interleaved BGR frame (OpenCV's layout): pixel (x, y)
// channel c is Pix[y*Stride + 3*x + c], c = 0 blue, 1 green, 2 red. capture
// hands frames already resized to the model's input size.
type Image struct {
	Width, Height, Stride int
	Pix                   []byte
}

// check reports a malformed image or one of the wrong size.
func (im Image) check(want Size) error {
	if im.Width != want.Width || im.Height != want.Height {
		return fmt.Errorf("image is %dx%d, model input is %s: resize in capture (the detector does not resize)", im.Width, im.Height, want)
	}
	if im.Stride < 3*im.Width {
		return fmt.Errorf("image stride %d < 3*width %d: not 8-bit BGR", im.Stride, 3*im.Width)
	}
	if need := im.Stride*(im.Height-1) + 3*im.Width; len(im.Pix) < need {
		return fmt.Errorf("image buffer has %d bytes, %dx%d stride %d needs %d", len(im.Pix), im.Width, im.Height, im.Stride, need)
	}
	return nil
}

// Preprocess converts 8-bit BGR pixels to the model's float channels. The
// whole per-channel arithmetic (colour order, scale, mean, std) is folded into
// three 256-entry lookup tables built once, so the per-frame pass is one
// table load per byte: that keeps preprocessing far below the model's run.
type Preprocess struct {
	// lut[c][v] is the value of tensor channel c for 8-bit value v.
	lut [3][256]float32
	// src[c] is the BGR byte offset feeding tensor channel c.
	src [3]int
}

// NewPreprocess builds the tables from a (defaulted, validated) config.
// Mean/std are given in the tensor's channel order, as torchvision does.
func NewPreprocess(c PreprocessConfig) (*Preprocess, error) {
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Preprocess{src: [3]int{2, 1, 0}}
	if strings.ToLower(c.ColorOrder) == "bgr" {
		p.src = [3]int{0, 1, 2}
	}
	for ch := 0; ch < 3; ch++ {
		mean, std := 0.0, 1.0
		if len(c.Mean) == 3 {
			mean = c.Mean[ch]
		}
		if len(c.Std) == 3 {
			std = c.Std[ch]
		}
		for v := 0; v < 256; v++ {
			p.lut[ch][v] = float32((float64(v)*c.Scale - mean) / std)
		}
	}
	return p, nil
}

// FillNCHW writes img into dst as one NCHW float32 image (batch 1, 3
// channels, img.Height x img.Width), in a single pass over the pixels. dst
// must hold at least 3*Width*Height values. capture's benchmark calls it too.
func FillNCHW(dst []float32, img Image, p *Preprocess) error {
	if err := img.check(Size{img.Width, img.Height}); err != nil {
		return err
	}
	plane := img.Width * img.Height
	if len(dst) < 3*plane {
		return fmt.Errorf("tensor holds %d values, a %dx%d image needs %d", len(dst), img.Width, img.Height, 3*plane)
	}
	fillNCHW(dst, img, p)
	return nil
}

// fillNCHW is FillNCHW without checks, for the detector's hot path. The
// two colour orders get their own loops with constant byte offsets so the
// compiler drops the bounds checks (about 2x faster than variable offsets).
func fillNCHW(dst []float32, img Image, p *Preprocess) {
	w, h := img.Width, img.Height
	plane := w * h
	l0, l1, l2 := &p.lut[0], &p.lut[1], &p.lut[2]
	rgb := p.src[0] == 2
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+3*w]
		o0 := dst[y*w : y*w+w]
		o1 := dst[plane+y*w : plane+y*w+w]
		o2 := dst[2*plane+y*w : 2*plane+y*w+w]
		o1, o2 = o1[:len(o0)], o2[:len(o0)]
		if rgb {
			for x := range o0 {
				px := (*[3]byte)(row[3*x:])
				o0[x], o1[x], o2[x] = l0[px[2]], l1[px[1]], l2[px[0]]
			}
		} else {
			for x := range o0 {
				px := (*[3]byte)(row[3*x:])
				o0[x], o1[x], o2[x] = l0[px[0]], l1[px[1]], l2[px[2]]
			}
		}
	}
}

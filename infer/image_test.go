package infer

import (
	"math/rand"
	"testing"
)

func TestFillNCHW(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	w, h := 37, 23
	stride := 3*w + 5
	pix := make([]byte, stride*h)
	rng.Read(pix)
	img := Image{Width: w, Height: h, Stride: stride, Pix: pix}
	tests := []struct {
		name string
		cfg  PreprocessConfig
		// src[c] is the BGR byte feeding tensor channel c.
		src [3]int
	}{
		{"rgb default scale", PreprocessConfig{}, [3]int{2, 1, 0}},
		{"bgr", PreprocessConfig{ColorOrder: "bgr"}, [3]int{0, 1, 2}},
		{"imagenet", PreprocessConfig{Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225}}, [3]int{2, 1, 0}},
		{"raw 0..255", PreprocessConfig{Scale: 1, ColorOrder: "BGR"}, [3]int{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.InputSize = Size{w, h}
			p, err := NewPreprocess(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			cfg := tc.cfg
			cfg.Defaults()
			dst := make([]float32, 3*w*h)
			if err := FillNCHW(dst, img, p); err != nil {
				t.Fatal(err)
			}
			for c := 0; c < 3; c++ {
				mean, std := 0.0, 1.0
				if len(cfg.Mean) == 3 {
					mean, std = cfg.Mean[c], cfg.Std[c]
				}
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						v := float64(pix[y*stride+3*x+tc.src[c]])
						want := float32((v*cfg.Scale - mean) / std)
						if got := dst[c*w*h+y*w+x]; got != want {
							t.Fatalf("c%d (%d,%d): %v, want %v", c, x, y, got, want)
						}
					}
				}
			}
		})
	}
	p, _ := NewPreprocess(PreprocessConfig{})
	if err := FillNCHW(make([]float32, 10), img, p); err == nil {
		t.Fatal("short tensor accepted")
	}
}

func TestResizeAndBlurEdgeCases(t *testing.T) {
	// Upsampling a constant map stays constant; a 1x1 map fills the output;
	// a blur of a constant map is the constant (weights sum to one, reflect border).
	tests := []struct {
		in, out Size
	}{{Size{64, 64}, Size{256, 256}}, {Size{1, 1}, Size{8, 8}}, {Size{17, 5}, Size{256, 256}}, {Size{300, 300}, Size{256, 256}}}
	for _, tc := range tests {
		src := make([]float32, tc.in.Width*tc.in.Height)
		for i := range src {
			src[i] = 2.5
		}
		dst := make([]float32, tc.out.Width*tc.out.Height)
		newResizer(tc.in, tc.out).resize(dst, src)
		newBlurrer(tc.out, 3).blur(dst)
		for i, v := range dst {
			if absf(v-2.5) > 1e-5 {
				t.Fatalf("%v->%v: dst[%d] = %v, want 2.5", tc.in, tc.out, i, v)
			}
		}
	}
	if !LooksClamped([]float32{0, 0.5, 1, 1}) || LooksClamped([]float32{0.2, 0.5}) || LooksClamped([]float32{-0.1, 0, 1}) {
		t.Fatal("LooksClamped")
	}
}

package infer

import (
	"fmt"
	"math"
)

// resizer resizes a map bilinearly with half-pixel centres: source coordinate
// = (dst + 0.5) * in/out - 0.5, clamped to the border. That is OpenCV's
// INTER_LINEAR and PyTorch's interpolate(mode="bilinear",
// align_corners=False) without antialiasing, the convention anomalib uses
// when it upsamples maps; align_corners=True would shift the map by up to
// half a source pixel. The tables are built once per detector.
type resizer struct {
	in, out Size
	x0, x1  []int32
	fx      []float32
	y0, y1  []int32
	fy      []float32
	// rows caches each source row interpolated horizontally to the output
	// width (in.Height x out.Width): an output row is then one lerp of two
	// cached rows, so the 2-D work is done once per source row, not per
	// output pixel.
	rows []float32
}

func axisTable(n, in int) (i0, i1 []int32, f []float32) {
	i0, i1, f = make([]int32, n), make([]int32, n), make([]float32, n)
	scale := float64(in) / float64(n)
	for d := 0; d < n; d++ {
		s := (float64(d)+0.5)*scale - 0.5
		s = math.Max(0, math.Min(s, float64(in-1)))
		a := int(math.Floor(s))
		b := min(a+1, in-1)
		i0[d], i1[d], f[d] = int32(a), int32(b), float32(s-float64(a))
	}
	return i0, i1, f
}

func newResizer(in, out Size) *resizer {
	r := &resizer{in: in, out: out, rows: make([]float32, in.Height*out.Width)}
	r.x0, r.x1, r.fx = axisTable(out.Width, in.Width)
	r.y0, r.y1, r.fy = axisTable(out.Height, in.Height)
	return r
}

// resize writes src (in.Height x in.Width) into dst (out.Height x out.Width).
func (r *resizer) resize(dst, src []float32) {
	iw, ow := r.in.Width, r.out.Width
	x0, x1, fx := r.x0[:ow], r.x1[:ow], r.fx[:ow]
	for y := 0; y < r.in.Height; y++ {
		s := src[y*iw : y*iw+iw]
		o := r.rows[y*ow : y*ow+ow]
		for x := range o {
			a, b := s[x0[x]], s[x1[x]]
			o[x] = a + (b-a)*fx[x]
		}
	}
	for y := 0; y < r.out.Height; y++ {
		ra := r.rows[int(r.y0[y])*ow : int(r.y0[y])*ow+ow]
		rb := r.rows[int(r.y1[y])*ow : int(r.y1[y])*ow+ow]
		fy := r.fy[y]
		o := dst[y*ow : y*ow+ow]
		ra, rb = ra[:len(o)], rb[:len(o)]
		for x := range o {
			o[x] = ra[x] + (rb[x]-ra[x])*fy
		}
	}
}

// blurrer is a separable Gaussian blur matching cv2.GaussianBlur(m, (0,0),
// sigma) on float32 maps: kernel size round(8*sigma+1)|1, weights
// exp(-x^2/(2 sigma^2)) normalised, BORDER_REFLECT_101. anomalib blurs
// PatchCore maps the same way (kernel 2*int(4*sigma+0.5)+1, reflect).
type blurrer struct {
	size   Size
	k      []float32
	padded []float32 // one row with reflected borders
	tmp    []float32 // horizontal pass result
}

func newBlurrer(size Size, sigma float64) *blurrer {
	ks := int(math.Floor(sigma*8+1+0.5)) | 1
	r := ks / 2
	k64 := make([]float64, ks)
	sum := 0.0
	for i := range k64 {
		x := float64(i - r)
		k64[i] = math.Exp(-x * x / (2 * sigma * sigma))
		sum += k64[i]
	}
	k := make([]float32, ks)
	for i := range k {
		k[i] = float32(k64[i] / sum)
	}
	return &blurrer{size: size, k: k, padded: make([]float32, size.Width+2*r), tmp: make([]float32, size.Width*size.Height)}
}

func reflect101(i, n int) int {
	if n == 1 {
		return 0
	}
	for i < 0 || i >= n {
		if i < 0 {
			i = -i
		}
		if i >= n {
			i = 2*n - 2 - i
		}
	}
	return i
}

// blur filters m in place. The kernel is symmetric, so each pass adds the
// two mirrored taps before multiplying: half the multiplications.
func (b *blurrer) blur(m []float32) {
	w, h := b.size.Width, b.size.Height
	r := len(b.k) / 2
	k := b.k
	kc := k[r]
	for y := 0; y < h; y++ {
		row := m[y*w : y*w+w]
		p := b.padded
		for i := -r; i < w+r; i++ {
			p[i+r] = row[reflect101(i, w)]
		}
		o := b.tmp[y*w : y*w+w]
		for x := range o {
			win := p[x : x+2*r+1]
			s := kc * win[r]
			for i := 0; i < r; i++ {
				s += k[i] * (win[i] + win[2*r-i])
			}
			o[x] = s
		}
	}
	for y := 0; y < h; y++ {
		o := m[y*w : y*w+w]
		c := b.tmp[y*w : y*w+w][:len(o)]
		for x := range o {
			o[x] = kc * c[x]
		}
		for i := 0; i < r; i++ {
			ya, yb := reflect101(y+i-r, h), reflect101(y+r-i, h)
			a := b.tmp[ya*w : ya*w+w][:len(o)]
			bb := b.tmp[yb*w : yb*w+w][:len(o)]
			kv := k[i]
			for x := range o {
				o[x] += kv * (a[x] + bb[x])
			}
		}
	}
}

// affine applies m = a*m + b in place.
func affine(m []float32, a, b float32) {
	for i, v := range m {
		m[i] = a*v + b
	}
}

// FirstNaN returns the index of the first NaN or infinity in m, or -1. The
// detector does not hide NaN (the feature stage reports it and the scorer
// fails the part closed); this is the cheap check for callers that want to
// know earlier.
func FirstNaN(m []float32) int {
	for i, v := range m {
		// v-v is NaN for both NaN and ±Inf, and 0 otherwise.
		if v-v != 0 {
			return i
		}
	}
	return -1
}

// CheckFinite returns an error naming the first non-finite pixel of a w-wide map.
func CheckFinite(m []float32, w int) error {
	i := FirstNaN(m)
	if i < 0 {
		return nil
	}
	if w <= 0 {
		w = 1
	}
	return fmt.Errorf("anomaly map has %v at pixel (x=%d, y=%d)", m[i], i%w, i/w)
}

// LooksClamped reports whether a map looks min-max normalised and clamped to
// [0,1], as anomalib 2.x's default post-processor leaves it: every value in
// [0,1] and at least 1% of the pixels exactly at 0 or 1 (saturated). Raw
// detector maps rarely saturate exactly, and a clamped map has lost the tails
// SegAD's quantile/skew/kurtosis features need.
func LooksClamped(m []float32) bool {
	if len(m) == 0 {
		return false
	}
	sat := 0
	for _, v := range m {
		if !(v >= 0 && v <= 1) {
			return false
		}
		if v == 0 || v == 1 {
			sat++
		}
	}
	return sat*100 >= len(m)
}

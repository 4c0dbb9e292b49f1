package detector

import (
	"runtime"
	"sync"
)

// parallelFor splits [0,n) into one contiguous chunk per CPU and runs fn on
// each concurrently.
func parallelFor(n int, fn func(lo, hi int)) {
	w := runtime.GOMAXPROCS(0)
	if w > n {
		w = n
	}
	if w <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + w - 1) / w
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// reflectIndex maps an out-of-range index into [0,n) by mirroring without
// repeating the edge (numpy/torch/ONNX "reflect").
func reflectIndex(i, n int) int {
	for i < 0 || i >= n {
		if i < 0 {
			i = -i
		}
		if i >= n {
			i = 2*(n-1) - i
		}
	}
	return i
}

// gaussianBlur is the Go reference of the graph's blur: separable Gaussian,
// anomalib's kernel size, reflect border. Accumulates in float64.
func gaussianBlur(m []float32, h, w int, sigma float64) []float32 {
	k := gaussianKernel1D(sigma)
	half := len(k) / 2
	tmp := make([]float32, len(m))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var s float64
			for j, kv := range k {
				s += float64(kv) * float64(m[y*w+reflectIndex(x+j-half, w)])
			}
			tmp[y*w+x] = float32(s)
		}
	}
	out := make([]float32, len(m))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var s float64
			for j, kv := range k {
				s += float64(kv) * float64(tmp[reflectIndex(y+j-half, h)*w+x])
			}
			out[y*w+x] = float32(s)
		}
	}
	return out
}

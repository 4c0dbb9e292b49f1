package detector

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/schollz/progressbar/v3"
)

// greedyCoreset selects k rows of x ([n][d], row-major) by greedy k-centre
// (farthest-point) selection starting at row start, as PatchCore does: each
// step adds the row farthest from everything selected so far. O(n*k*d) time,
// O(n) extra memory; the distance update is split across CPUs.
func greedyCoreset(ctx context.Context, x []float32, d, k, start int, bar *progressbar.ProgressBar) ([]int, error) {
	n := len(x) / d
	if k > n {
		k = n
	}
	minD := make([]float32, n)
	for i := range minD {
		minD[i] = float32(math.Inf(1))
	}
	sel := make([]int, 0, k)
	cur := start
	workers := 2
	type best struct {
		v float32
		i int
	}
	res := make([]best, workers)
	chunk := (n + workers - 1) / workers
	for len(sel) < k {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("coreset selection: %w", err)
		}
		sel = append(sel, cur)
		c := x[cur*d : (cur+1)*d]
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			lo, hi := w*chunk, min((w+1)*chunk, n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := best{v: -1, i: -1}
				for i := lo; i < hi; i++ {
					dd := sqDist(x[i*d:(i+1)*d], c)
					if dd < minD[i] {
						minD[i] = dd
					}
					if minD[i] > b.v {
						b = best{minD[i], i}
					}
				}
				res[w] = b
			}()
		}
		wg.Wait()
		b := res[0]
		for _, r := range res[1:] {
			if r.v > b.v {
				b = r
			}
		}
		cur = b.i
		bar.Add(1)
	}
	bar.Finish()
	return sel, nil
}

// sqDist is the squared Euclidean distance, unrolled by four.
func sqDist(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	b = b[:len(a)]
	for ; i+4 <= len(a); i += 4 {
		d0 := a[i] - b[i]
		d1 := a[i+1] - b[i+1]
		d2 := a[i+2] - b[i+2]
		d3 := a[i+3] - b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += d * d
	}
	return s0 + s1 + s2 + s3
}

// dot is the inner product.
func dot(a, b []float32) float32 {
	var s float32
	b = b[:len(a)]
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

package detector

import (
	"math"
	"math/rand"
	"sort"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestZZRecall(t *testing.T) {
	p := fitSmallPatchCore(t, PatchCoreConfig{Seed: 1, CoresetRatio: 2151.0 / (40 * 1024)})
	ex, err := newExtractor(p.bb, p.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.r.close()
	d := p.Dim()
	K := p.BankSize
	// PCA of bank
	mean := make([]float64, d)
	for i := 0; i < K; i++ {
		for j := 0; j < d; j++ {
			mean[j] += float64(p.Bank[i*d+j]) / float64(K)
		}
	}
	cov := mat.NewSymDense(d, nil)
	for a := 0; a < d; a++ {
		for b := a; b < d; b++ {
			var s float64
			for i := 0; i < K; i++ {
				s += (float64(p.Bank[i*d+a]) - mean[a]) * (float64(p.Bank[i*d+b]) - mean[b])
			}
			cov.SetSym(a, b, s/float64(K))
		}
	}
	var es mat.EigenSym
	es.Factorize(cov, true)
	vals := es.Values(nil)
	var vec mat.Dense
	es.VectorsTo(&vec)
	var tot float64
	for _, v := range vals {
		tot += v
	}
	pca := func(r int) []float32 {
		out := make([]float32, r*d)
		for i := 0; i < r; i++ {
			c := d - 1 - i
			for j := 0; j < d; j++ {
				out[i*d+j] = float32(vec.At(j, c))
			}
		}
		var ex float64
		for i := 0; i < r; i++ {
			ex += vals[d-1-i]
		}
		t.Logf("pca %d explains %.3f", r, ex/tot)
		return out
	}
	rng := rand.New(rand.NewSource(5))
	projs := map[string][]float32{}
	dims := map[string]int{}
	for _, r := range []int{8, 16, 24, 32} {
		projs["pca"+itoa(r)] = pca(r)
		dims["pca"+itoa(r)] = r
		projs["rnd"+itoa(r)] = gaussianProjection(rng, r, d)
		dims["rnd"+itoa(r)] = r
	}
	var paths []string
	for _, c := range []string{"good", "cut", "hole", "combined", "contamination"} {
		ps, _ := ListImages(tireDir(t)+"/test/"+c+"/rgb", 1)
		paths = append(paths, ps[:3]...)
	}
	type stat struct {
		miss   [4]int
		relerr [4]float64
	}
	ks := []int{1, 4, 8, 16}
	stats := map[string]*stat{}
	total := 0
	for _, path := range paths {
		in, _ := LoadInput(path, 256)
		feats, _ := ex.features(in)
		e, _, gh, gw := embed(feats)
		n := gh * gw
		total += n
		for name, P := range projs {
			r := dims[name]
			bp := projectRows(P, r, p.Bank, d)
			st := stats[name]
			if st == nil {
				st = &stat{}
				stats[name] = st
			}
			x := make([]float32, d)
			xp := make([]float32, r)
			sc := make([]float32, K)
			idx := make([]int, K)
			for c := 0; c < n; c++ {
				for j := 0; j < d; j++ {
					x[j] = e[j*n+c]
				}
				for i := 0; i < r; i++ {
					xp[i] = dot(P[i*d:(i+1)*d], x)
				}
				best, bi := float32(math.Inf(1)), -1
				for b := 0; b < K; b++ {
					if s := sqDist(x, p.Bank[b*d:(b+1)*d]); s < best {
						best, bi = s, b
					}
					sc[b] = sqDist(xp, bp[b*r:(b+1)*r])
					idx[b] = b
				}
				sort.Slice(idx, func(a, b int) bool { return sc[idx[a]] < sc[idx[b]] })
				for ki, k := range ks {
					found := false
					m := float32(math.Inf(1))
					for _, b := range idx[:k] {
						if b == bi {
							found = true
						}
						m = min(m, sqDist(x, p.Bank[b*d:(b+1)*d]))
					}
					if !found {
						st.miss[ki]++
						st.relerr[ki] = math.Max(st.relerr[ki], math.Sqrt(float64(m))/math.Sqrt(float64(best))-1)
					}
				}
			}
		}
	}
	names := make([]string, 0)
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, nm := range names {
		st := stats[nm]
		t.Logf("%s: miss share k=1 %.4f k=4 %.4f k=8 %.4f k=16 %.4f; max rel err %.3f %.3f %.3f %.3f", nm,
			float64(st.miss[0])/float64(total), float64(st.miss[1])/float64(total), float64(st.miss[2])/float64(total), float64(st.miss[3])/float64(total),
			st.relerr[0], st.relerr[1], st.relerr[2], st.relerr[3])
	}
}

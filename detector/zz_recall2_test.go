package detector

import (
	"testing"
)

func TestZZRecall2(t *testing.T) {
	p := fitSmallPatchCore(t, PatchCoreConfig{Seed: 1, CoresetRatio: 2151.0 / (40 * 1024)})
	ex, _ := newExtractor(p.bb, p.Config)
	defer ex.r.close()
	var paths []string
	for _, c := range []string{"good", "cut", "hole", "combined", "contamination"} {
		ps, _ := ListImages(tireDir(t)+"/test/"+c+"/rgb", 1)
		paths = append(paths, ps[:3]...)
	}
	type v struct{ d, k, g, pr int }
	vs := []v{{32, 8, -1, 0}, {16, 8, 16, 4}, {24, 8, 16, 4}, {32, 8, 16, 4}, {32, 8, 16, 2}, {32, 8, 32, 2}, {24, 8, 32, 2}, {16, 8, 32, 4}, {32, 4, 16, 4}}
	qs := []*PatchCore{}
	for _, x := range vs {
		q, err := p.withSearch(SearchTwoStage, x.d, x.k, x.g, x.pr)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, q)
	}
	ref, _ := p.withSearch(SearchExact, 0, 0, 0, 0)
	miss := make([]int, len(vs))
	maxErr := make([]float64, len(vs))
	total := 0
	for _, path := range paths {
		in, _ := LoadInput(path, 256)
		feats, _ := ex.features(in)
		e, d, gh, gw := embed(feats)
		n := gh * gw
		x := make([]float32, d)
		sr := ref.newScratch()
		scs := []*scratch{}
		for _, q := range qs {
			scs = append(scs, q.newScratch())
		}
		for c := 0; c < n; c++ {
			for j := 0; j < d; j++ {
				x[j] = e[j*n+c]
			}
			want := ref.nearest(x, sr)
			total++
			for i, q := range qs {
				got := q.nearest(x, scs[i])
				if got != want {
					miss[i]++
					if r := float64(got/want) - 1; r > maxErr[i] {
						maxErr[i] = r
					}
				}
			}
		}
	}
	for i, x := range vs {
		t.Logf("%+v: miss %.4f max sq err %.3f", x, float64(miss[i])/float64(total), maxErr[i])
	}
}

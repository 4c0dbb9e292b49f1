package detector

import (
	"math"
	"os"
	"strings"
	"sync"
	"testing"
)

var (
	benchOnce  sync.Once
	benchModel *PatchCore
)

// benchPatchCore fits once per benchmark binary on 40 images with a coreset
// ratio chosen so that the bank has the size of a full 210-image fit at the
// default 1% (2151 rows): the run time depends on the bank size, not on how
// many images built it.
func benchPatchCore(b *testing.B) *PatchCore {
	benchOnce.Do(func() {
		benchModel = fitSmallPatchCore(b, PatchCoreConfig{Seed: 1, CoresetRatio: 2151.0 / (40 * 1024)})
	})
	if benchModel == nil {
		b.Fatal("fit failed")
	}
	return benchModel
}

// BenchmarkPatchCoreFrame is the per-frame run time at 256x256 on one
// intra-op thread of: the original backbone file (baseline), the pruned
// backbone with dequantised feature outputs, and the written PatchCore model
// (backbone + aggregation + memory-bank search + upsampling + blur) with the
// exact search and with two-stage searches (default and faster settings),
// all on the same bank.
func BenchmarkPatchCoreFrame(b *testing.B) {
	p := benchPatchCore(b)
	in, err := LoadInput(checkImages(b)[1], 256)
	if err != nil {
		b.Fatal(err)
	}
	full, err := os.ReadFile(p.Config.Backbone)
	if err != nil {
		b.Fatal(err)
	}
	feat, featNames, err := p.bb.featureModel(256, true)
	if err != nil {
		b.Fatal(err)
	}
	type variant struct {
		name  string
		model []byte
		outs  []string
	}
	cases := []variant{
		{"backbone_original_224", full, []string{"output"}},
		{"backbone_features", feat, featNames},
	}
	for _, s := range []struct {
		mode   string
		dim, k int
	}{
		{SearchExact, 0, 0},
		{SearchTwoStageFloat, 32, 8},                       // the previous default
		{SearchTwoStage, defaultSearchDim, defaultSearchK}, // the default
		{SearchTwoStage, 32, 8},
		{SearchTwoStage, 48, 6},
		{SearchTwoStage, 64, 8},
	} {
		q, err := p.withSearch(s.mode, s.dim, s.k)
		if err != nil {
			b.Fatal(err)
		}
		model, err := q.ONNX()
		if err != nil {
			b.Fatal(err)
		}
		name := "patchcore_bank" + itoa(p.BankSize) + "_" + s.mode
		if s.mode != SearchExact {
			name += "_dim" + itoa(s.dim) + "_k" + itoa(s.k)
		}
		cases = append(cases, variant{name, model, []string{"anomaly_map"}})
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			size := int64(256)
			if strings.HasSuffix(c.name, "_224") { // the file's fixed input size
				size = 224
			}
			r, err := newRunner(c.name, c.model, "input", []int64{1, 3, size, size}, c.outs, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer r.close()
			in := in[:3*size*size]                  // the 224 baseline takes a crop: speed only
			if _, _, err := r.run(in); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := r.run(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVariationFrame is the per-frame run time of a variation model.
func BenchmarkVariationFrame(b *testing.B) {
	initORT(b)
	v, err := FitVariation(b.Context(), trainSubset(b, 20), VariationConfig{})
	if err != nil {
		b.Fatal(err)
	}
	model, err := v.ONNX()
	if err != nil {
		b.Fatal(err)
	}
	in, _ := LoadInput(checkImages(b)[1], 256)
	r, err := newRunner("variation", model, "input", []int64{1, 3, 256, 256}, []string{"anomaly_map"}, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := r.run(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCoreset is greedy k-centre selection of 1% of 40 images' patches
// in the default 32-dim selection projection.
func BenchmarkCoreset(b *testing.B) {
	const n, d = 40 * 1024, 32
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.7))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := greedyCoreset(b.Context(), x, d, n/100, 0, newBar(nil, n/100, "")); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(i int) string {
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

package fit

import (
	"math/rand/v2"
	"testing"

	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/segad"
)

const benchRows = 2000

// benchMaps makes n seeded 256x256 maps: noise, plus a blob on bad ones.
func benchMaps(n int) ([][]float32, []float32) {
	rng := rand.New(rand.NewPCG(3, 4))
	maps := make([][]float32, n)
	labels := make([]float32, n)
	for i := range maps {
		m := make([]float32, 256*256)
		for j := range m {
			m[j] = float32(rng.NormFloat64()*0.1 + 0.5)
		}
		if i%4 == 0 {
			labels[i] = 1
			cx, cy := rng.IntN(200)+28, rng.IntN(200)+28
			for y := cy - 10; y < cy+10; y++ {
				for x := cx - 10; x < cx+10; x++ {
					m[y*256+x] += 1
				}
			}
		}
		maps[i] = m
	}
	return maps, labels
}

// BenchmarkFitExtractAndTrain measures SegAD's fit on 2000 rows x 29
// features (1 detector, the 7-segment VAD mask): feature extraction plus
// XGBoost training (paper parameters, 2000 trees), side by side with the
// baseline XGBoostTrainOnly (the same training on precomputed rows).
func BenchmarkFitExtractAndTrain(b *testing.B) {
	if err := xgboost.Open(); err != nil {
		b.Skip(err)
	}
	maps, labels := benchMaps(benchRows)
	mask := segad.VADTemplate(256, 256, segad.DefaultVADGeometry())
	ex, err := segad.NewExtractor(mask, []string{"d"}, "")
	if err != nil {
		b.Fatal(err)
	}
	nc := ex.NumFeatures()
	extract := func() []float32 {
		rows := make([]float32, benchRows*nc)
		for i, m := range maps {
			if err := ex.Extract(rows[i*nc:(i+1)*nc], [][]float32{m}, 0); err != nil {
				b.Fatal(err)
			}
		}
		return rows
	}
	p := xgboost.DefaultParams()
	p.ScalePosWeight, _ = xgboost.ScalePosWeight(labels)
	pre := extract()
	b.Run("XGBoostTrainOnly", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := xgboost.Train(pre, benchRows, nc, labels, p, xgboost.DefaultRounds); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ExtractPlusTrain", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rows := extract()
			if _, err := xgboost.Train(rows, benchRows, nc, labels, p, xgboost.DefaultRounds); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParallelExtractPlusTrain", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rows, err := ExtractRows(maps, 1, mask, []string{"d"}, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := xgboost.Train(rows, benchRows, nc, labels, p, xgboost.DefaultRounds); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package testenv

import (
	"bytes"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/segad-edge/segad-edge/brf/xgboost"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers, for capturing
// the output of a process or logger that writes from several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TrainForest trains a small real XGBoost forest (4 parallel trees x 2
// rounds, the paper's other settings) for nFeat features on seeded random
// rows and writes it as XGBoost JSON to path. Tests that need a valid model
// of the right width, not a good one, use it.
func TrainForest(tb testing.TB, path string, nFeat int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	const rows = 64
	x := make([]float32, rows*nFeat)
	y := make([]float32, rows)
	for i := range x {
		x[i] = float32(rng.Float64())
	}
	for i := range y {
		if x[i*nFeat+nFeat-1] > 0.5 {
			y[i] = 1
		}
	}
	p := xgboost.DefaultParams()
	p.NumParallelTree, p.Seed, p.NThread = 4, 1, 1
	js, err := xgboost.Train(x, rows, nFeat, y, p, 2)
	if err != nil {
		tb.Fatalf("train forest: %v", err)
	}
	if err := os.WriteFile(path, js, 0o644); err != nil {
		tb.Fatal(err)
	}
}

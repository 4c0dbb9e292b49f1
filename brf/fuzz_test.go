package brf

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadBytes feeds malformed models to the loader: it must return an
// error or a model whose Margin works, never panic or allocate without bound.
//
//	go test ./brf -run '^$' -fuzz FuzzLoadBytes -fuzztime 60s
func FuzzLoadBytes(f *testing.F) {
	f.Add(modelJSON())
	f.Add(modelJSON("OBJ", "binary:logistic", "BASE", "[3E-1]"))
	f.Add([]byte(lgModel))
	f.Add([]byte("binf\x00\x00\x00?"))
	f.Add([]byte("{L\x00\x00\x00\x00\x00\x00\x00\x07learner"))
	for _, name := range []string{"xgb_dart.json", "xgb_binary.model", "xgb_model.ubj"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := LoadBytes(data)
		if err != nil {
			if m != nil {
				t.Fatal("model and error both returned")
			}
			return
		}
		n := m.NumFeatures()
		if n > 1<<16 {
			return // a valid header may declare many features; rows that long are not built here
		}
		row := make([]float32, n)
		m.Margin(row)
		for i := range row {
			row[i] = float32(math.NaN())
		}
		m.Margin(row)
		if n > 0 && !math.IsNaN(m.Margin(row[:n-1])) {
			t.Fatal("short row did not give NaN")
		}
	})
}

package metrics

import (
	"math/rand/v2"
	"testing"
)

// benchParts are 10,000 recent parts (the console's window), 10% labelled.
func benchParts() []Part {
	rng := rand.New(rand.NewPCG(1, 2))
	parts := make([]Part, 10000)
	for i := range parts {
		parts[i].Score = rng.NormFloat64()
		switch i % 20 {
		case 0:
			parts[i].Label = LabelBad
		case 1:
			parts[i].Label = LabelGood
		}
	}
	return parts
}

var sinkN int

// BenchmarkWhatIfBaselineCount is the baseline: only counting the parts at
// or above the threshold, the least any what-if must do.
func BenchmarkWhatIfBaselineCount(b *testing.B) {
	parts := benchParts()
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, p := range parts {
			if p.Score >= 0.5 {
				n++
			}
		}
		sinkN = n
	}
}

// BenchmarkWhatIf is one slider position: counts, rates and both
// Clopper-Pearson intervals on 10,000 parts.
func BenchmarkWhatIf(b *testing.B) {
	parts := benchParts()
	b.ReportAllocs()
	for b.Loop() {
		sinkN = ComputeWhatIf(parts, 0.5, 0.95).Rejected
	}
}

// BenchmarkHistogram is the threshold page's histogram of 10,000 scores in
// 50 bins.
func BenchmarkHistogram(b *testing.B) {
	parts := benchParts()
	scores := make([]float64, len(parts))
	for i, p := range parts {
		scores[i] = p.Score
	}
	b.ReportAllocs()
	for b.Loop() {
		_, c := Histogram(scores, 50)
		sinkN = c[0]
	}
}

package console

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/segad-edge/segad-edge/result"
)

// benchResult is a typical result: a score, map maxima, latencies, an
// explanation with its segment table.
func benchResult() result.Result {
	s := 0.42
	r := result.Result{ID: "01JABCDEFGHJKMNPQRSTVWXYZ0", Station: "line3", Seq: 1, Verdict: result.VerdictPass, Score: &s, Threshold: 1,
		MapMax: map[string]float64{"patchcore": 0.8, "ms": 0.3}, LatencyMS: map[string]float64{"infer": 20, "segad": 1, "total": 22},
		Explain: &result.Explanation{Method: "path", Segments: []result.Contribution{{Name: "wires", Value: 0.3}, {Name: "piezo", Value: -0.1}, {Name: "(whole map)", Value: 0.05}}}}
	for i := 0; i < 40; i++ {
		r.Features = append(r.Features, result.Feature{Name: "f", Value: float64(i)})
	}
	return r
}

// BenchmarkConsolePublish is what the console costs per result (the
// daemon hands it every one). Baseline: BenchmarkResultJSON, encoding the
// same result once, which the publisher does for every part anyway.
func BenchmarkConsolePublish(b *testing.B) {
	c := New(Options{})
	r := benchResult()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Seq = uint64(i)
		c.Publish(ctx, r)
	}
}

// BenchmarkResultJSON is the baseline of BenchmarkConsolePublish.
func BenchmarkResultJSON(b *testing.B) {
	r := benchResult()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLiveSnapshot is one Live message (at most live_rate a second
// per browser), against the same baseline.
func BenchmarkLiveSnapshot(b *testing.B) {
	c := New(Options{})
	c.Attach(fakeLine{thr: 1, warn: 0.5})
	c.Publish(context.Background(), benchResult())
	b.ReportAllocs()
	for b.Loop() {
		c.snapshot()
	}
}

package drift

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/result"
)

// benchLine is the demo line's shape: 7 segments, 2 detectors, 4
// statistics each plus 2 maxima (58 features; 28 watched by default), a
// reference of 300 good parts, and 64 distinct result rows to cycle.
func benchLine(b *testing.B) (*Monitor, []result.Result) {
	rng := rand.New(rand.NewPCG(3, 3))
	ref := &bundle.DriftReference{Good: 300, Bins: DefaultBins, ExpectedFRR: 0.01, ExpectedFRRHigh: 0.03}
	var names []string
	for _, seg := range []string{"background", "outer_half_circle", "piezo_border", "solder_dots", "wires", "pins", "piezo_middle"} {
		for _, det := range []string{"fine", "coarse"} {
			for _, st := range []string{"q995", "skew", "kurtosis", "mean"} {
				name := seg + "." + det + "." + st
				names = append(names, name)
				vals := make([]float64, 300)
				for i := range vals {
					vals[i] = rng.NormFloat64()
				}
				e, sh, nan := Distribution(vals, DefaultBins)
				ref.Features = append(ref.Features, bundle.DriftFeature{Name: name, Segment: seg, Detector: det, Stat: st, Edges: e, Shares: sh, NaN: nan})
			}
		}
	}
	names = append(names, "fine.max", "coarse.max")
	rows := make([]result.Result, 64)
	for i := range rows {
		f := make([]result.Feature, len(names))
		for j, n := range names {
			f[j] = result.Feature{Name: n, Value: rng.NormFloat64()}
		}
		score := -1.0
		rows[i] = result.Result{ID: result.NewID(time.Now()), Station: "bench", Verdict: result.VerdictPass, Score: &score, Features: f}
	}
	m, err := New(Options{Config: config.DefaultDriftConfig(), Reference: ref, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	// A full window: every Publish then judges all watched features.
	for i := 0; i < 600; i++ {
		_ = m.Publish(context.Background(), rows[i%len(rows)])
	}
	return m, rows
}

// BenchmarkMonitorPublish is the monitor's cost per result: bin 28
// features, update the window, compute 28 PSIs and the reject test.
func BenchmarkMonitorPublish(b *testing.B) {
	m, rows := benchLine(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = m.Publish(ctx, rows[i%len(rows)])
	}
}

// BenchmarkBaselineResultJSON is the baseline beside it: encoding the same
// result as JSON, which the MQTT publisher does for every part.
func BenchmarkBaselineResultJSON(b *testing.B) {
	_, rows := benchLine(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := json.Marshal(rows[i%len(rows)]); err != nil {
			b.Fatal(err)
		}
	}
}

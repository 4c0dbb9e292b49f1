package shadow

import (
	"context"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/result"
)

// The candidate's own logic with small fakes of its scorer; the real
// candidate (model.Build on real bundles) is tested end to end in
// cmd/segad/shadow_test.go.

type fakeScorer struct {
	margin  func(row []float32) float64
	release chan struct{} // when set, Margin waits for it
}

func (f *fakeScorer) NumFeatures() int { return 2 }
func (f *fakeScorer) Margin(row []float32) float64 {
	if f.release != nil {
		<-f.release
	}
	return f.margin(row)
}

type recorder struct {
	mu  sync.Mutex
	got []result.Result
}

func (r *recorder) record(x result.Result) {
	r.mu.Lock()
	r.got = append(r.got, x)
	r.mu.Unlock()
}

func (r *recorder) results() []result.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]result.Result(nil), r.got...)
}

func liveResult(seq uint64, score float64, features ...float64) result.Result {
	r := result.Result{ID: "01LIVE" + string(rune('A'+seq%26)), Station: "s1", Source: "cam", Seq: seq, PartID: "P", Bundle: "sha256:live"}
	for i, v := range features {
		r.Features = append(r.Features, result.Feature{Name: []string{"f0", "f1"}[i], Value: v})
	}
	r.Decide(score, 0, math.NaN())
	return r
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitLen(t *testing.T, r *recorder, n int) []result.Result {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.results()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d shadow results, want %d", len(r.results()), n)
		}
		time.Sleep(time.Millisecond)
	}
	return r.results()
}

// TestRunnerVerdicts: the candidate's verdicts from the live feature rows,
// paired by ID; a candidate that gives NaN or Inf is recorded as an error
// shadow result (invalid_score) and the live result is left as it was; a
// live row with other features than the candidate's is an error shadow
// result naming them.
func TestRunnerVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		margin   func(row []float32) float64
		features []float64
		verdict  result.Verdict
		reason   string
	}{
		{"sum passes", func(r []float32) float64 { return float64(r[0] + r[1]) }, []float64{0.25, 0.5}, result.VerdictPass, ""},
		{"sum fails", func(r []float32) float64 { return float64(r[0] + r[1]) }, []float64{1, 0.5}, result.VerdictFail, result.ReasonAnomaly},
		{"NaN", func([]float32) float64 { return math.NaN() }, []float64{0, 0}, result.VerdictError, result.ReasonScore},
		{"Inf", func([]float32) float64 { return math.Inf(-1) }, []float64{0, 0}, result.VerdictError, result.ReasonScore},
		{"other features", func(r []float32) float64 { return 0 }, []float64{0}, result.VerdictError, result.ReasonMap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(quiet())
			rec := &recorder{}
			r.Start(rec.record)
			r.use("cand", 1, 1.0, []string{"f0", "f1"}, &fakeScorer{margin: tc.margin})
			live := liveResult(7, -1, tc.features...)
			before := live
			r.Offer(nil, live)
			got := waitLen(t, rec, 1)[0]
			if got.Verdict != tc.verdict || got.ReasonCode != tc.reason {
				t.Errorf("verdict %s (%s: %s), want %s (%s)", got.Verdict, got.ReasonCode, got.Reason, tc.verdict, tc.reason)
			}
			if got.Kind != result.KindShadow || got.ID != live.ID+IDSuffix || LiveID(got.ID) != live.ID || got.Seq != 7 ||
				got.PartID != "P" || got.Source != "cam" || got.Threshold != 1 || got.Bundle != "test" {
				t.Errorf("shadow result not paired with the live one: %+v", got)
			}
			if live.Verdict != before.Verdict || *live.Score != *before.Score {
				t.Errorf("the live result changed: %+v", live)
			}
			if err := r.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRunnerNeverBlocks: a candidate stuck in scoring never holds up the
// line: Offer returns at once, the frames beyond the worker's queue are
// dropped and counted, and production-only rules hold (no shadow of a
// shadow, of an unscored part, or of a part the candidate itself judged).
func TestRunnerNeverBlocks(t *testing.T) {
	r := New(quiet())
	rec := &recorder{}
	r.Start(rec.record)
	release := make(chan struct{})
	r.use("cand", 1, 0, []string{"f0", "f1"}, &fakeScorer{margin: func([]float32) float64 { return 1 }, release: release})
	const n = 200
	start := time.Now()
	for i := 1; i <= n; i++ {
		r.Offer(nil, liveResult(uint64(i), -1, 0, 0))
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Errorf("%d offers to a stuck candidate took %s", n, el)
	}
	// In the worker: one being scored, QueueSize waiting; the rest dropped.
	if d := testutil.ToFloat64(r.dropped); d < n-QueueSize-1 || d > n-QueueSize {
		t.Errorf("dropped %v of %d offers with a queue of %d", d, n, QueueSize)
	}
	skip := []result.Result{liveResult(1, -1, 0, 0), {ID: "x", Seq: 2}, liveResult(3, -1, 0, 0)}
	skip[0].Kind = result.KindShadow
	skip[2].Bundle = "test" // judged by the candidate's own forest
	close(release)
	got := waitLen(t, rec, 1)
	for _, s := range skip {
		r.Offer(nil, s)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = rec.results()
	if len(got) < QueueSize || len(got) > QueueSize+1 {
		t.Errorf("%d shadow results recorded, want the %d queued (+1 in scoring)", len(got), QueueSize)
	}
	// Nothing is recorded after Close, and Offer after Close is harmless.
	r.Offer(nil, liveResult(99, -1, 0, 0))
	time.Sleep(10 * time.Millisecond)
	if len(rec.results()) != len(got) {
		t.Error("a result was recorded after Close")
	}
}

// TestSampled: the share is kept (within 3 standard deviations over 100,000
// frames), and the choice depends on the sequence number alone.
func TestSampled(t *testing.T) {
	const n = 100000
	for _, share := range []float64{0.01, 0.25, 0.5, 0.9, 1} {
		k := 0
		for s := uint64(1); s <= n; s++ {
			if Sampled(s, share) {
				k++
			}
			if Sampled(s, share) != Sampled(s, share) {
				t.Fatalf("seq %d sampled differently twice", s)
			}
		}
		sd := math.Sqrt(n * share * (1 - share))
		if math.Abs(float64(k)-n*share) > 3*sd+0.5 {
			t.Errorf("share %v: %d of %d sampled (sd %.1f)", share, k, n, sd)
		}
	}
	// A share of 0.25 on a periodic line (every 4th part bad) still sees
	// every phase.
	phases := map[uint64]int{}
	for s := uint64(1); s <= 4000; s++ {
		if Sampled(s, 0.25) {
			phases[s%4]++
		}
	}
	for p := uint64(0); p < 4; p++ {
		if phases[p] < 150 {
			t.Errorf("phase %d sampled %d times of 1000", p, phases[p])
		}
	}
}

// TestCompare: pairing by ID, agreement and both disagreement lists, the
// candidate selection (newest shadow forest by default), unpaired shadows
// and the operating points on labelled parts (an error is a reject).
func TestCompare(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := func(v float64) *float64 { return &v }
	row := func(id string, kind history.Kind, bundle string, seq uint64, v result.Verdict, label string, min int) history.Row {
		r := history.Row{ID: id, Kind: kind, Bundle: bundle, Seq: seq, Verdict: v, Score: sc(float64(seq)), DecidedAt: at.Add(time.Duration(min) * time.Minute)}
		if label != "" {
			r.Label = &history.Label{Label: label}
		}
		return r
	}
	P, F, E := result.VerdictPass, result.VerdictFail, result.VerdictError
	rows := []history.Row{
		row("L1", history.KindProduction, "A", 1, P, "good", 1), row("L1-shadow", history.KindShadow, "B", 1, P, "", 1),
		row("L2", history.KindProduction, "A", 2, P, "bad", 2), row("L2-shadow", history.KindShadow, "B", 2, F, "", 2),
		row("L3", history.KindProduction, "A", 3, F, "bad", 3), row("L3-shadow", history.KindShadow, "B", 3, P, "", 3),
		row("L4", history.KindProduction, "A", 4, F, "good", 4), row("L4-shadow", history.KindShadow, "B", 4, E, "", 4),
		row("L5", history.KindProduction, "A", 5, P, "", 5), row("L5-shadow", history.KindShadow, "B", 5, P, "", 5),
		row("L6-shadow", history.KindShadow, "B", 6, P, "", 6), // its live result was pruned
		row("L0", history.KindProduction, "A", 0, P, "", 0), row("L0-shadow", history.KindShadow, "OLD", 0, F, "", 0),
		row("G1", history.KindGolden, "A", 9, F, "", 9),
	}
	for _, tc := range []struct {
		name                   string
		candidate              string
		pairs, agree, unpaired int
		rejects, passes        []uint64
		live, cand             Point
	}{
		{"newest candidate", "", 5, 3, 1, []uint64{2}, []uint64{3},
			Point{Bad: 2, BadRejected: 1, Good: 2, GoodRejected: 1}, Point{Bad: 2, BadRejected: 1, Good: 2, GoodRejected: 1}},
		{"older candidate", "OLD", 1, 0, 0, []uint64{0}, nil, Point{}, Point{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Compare(rows, tc.candidate)
			if rep.Pairs != tc.pairs || rep.Agree != tc.agree || rep.Unpaired != tc.unpaired {
				t.Errorf("pairs %d agree %d unpaired %d, want %d %d %d", rep.Pairs, rep.Agree, rep.Unpaired, tc.pairs, tc.agree, tc.unpaired)
			}
			seqs := func(ps []Part) (out []uint64) {
				for _, p := range ps {
					out = append(out, p.Seq)
					if p.ShadowID != p.LiveID+IDSuffix {
						t.Errorf("part %d paired %s with %s", p.Seq, p.LiveID, p.ShadowID)
					}
				}
				return out
			}
			if got := seqs(rep.CandidateRejects); len(got) != len(tc.rejects) || (len(got) > 0 && got[0] != tc.rejects[0]) {
				t.Errorf("candidate rejects %v, want %v", got, tc.rejects)
			}
			if got := seqs(rep.CandidatePasses); len(got) != len(tc.passes) || (len(got) > 0 && got[0] != tc.passes[0]) {
				t.Errorf("candidate passes %v, want %v", got, tc.passes)
			}
			if rep.LivePoint != tc.live || rep.CandidatePoint != tc.cand {
				t.Errorf("points live %+v cand %+v, want %+v %+v", rep.LivePoint, rep.CandidatePoint, tc.live, tc.cand)
			}
		})
	}
}

// BenchmarkOffer is what the line pays per frame in finish for the shadow
// hook, next to a 2 ms frame (the fixture line's): off (no candidate: one
// atomic load), a frame not in the share, and a sampled frame handed to the
// worker (the row candidate; the worker's scoring runs on its own goroutine).
func BenchmarkOffer(b *testing.B) {
	live := liveResult(1, -1, 0.1, 0.2)
	for _, bc := range []struct {
		name  string
		share float64
		use   bool
	}{{"off", 0, false}, {"not-sampled", 1e-6, true}, {"sampled", 1, true}} {
		b.Run(bc.name, func(b *testing.B) {
			r := New(quiet())
			r.Start(func(result.Result) {})
			if bc.use {
				r.use("cand", bc.share, 0, []string{"f0", "f1"}, &fakeScorer{margin: func(x []float32) float64 { return float64(x[0]) }})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				live.Seq = uint64(i)
				r.Offer(nil, live)
			}
			b.StopTimer()
			r.Close(context.Background())
		})
	}
}

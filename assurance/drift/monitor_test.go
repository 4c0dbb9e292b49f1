package drift

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/result"
)

// synthetic is a reference of two features of segment "wires", detector
// "patchcore" (mean and skew) from standard normal training values, and
// a row maker for parts drawn from N(mu, 1).
type synthetic struct {
	ref *bundle.DriftReference
	rng *rand.Rand
}

func newSynthetic(good int, frr float64) *synthetic {
	s := &synthetic{rng: rand.New(rand.NewPCG(1, 2))}
	ref := &bundle.DriftReference{Good: good, Bins: DefaultBins, ExpectedFRR: frr}
	for _, st := range []string{"mean", "skew"} {
		vals := make([]float64, good)
		for i := range vals {
			vals[i] = s.rng.NormFloat64()
		}
		e, sh, nan := Distribution(vals, DefaultBins)
		ref.Features = append(ref.Features, bundle.DriftFeature{Name: "wires.patchcore." + st, Segment: "wires", Detector: "patchcore", Stat: st, Edges: e, Shares: sh, NaN: nan})
	}
	s.ref = ref
	return s
}

func (s *synthetic) result(mu float64, v result.Verdict) result.Result {
	return result.Result{Verdict: v, Features: []result.Feature{
		{Name: "wires.patchcore.q995", Value: 3},
		{Name: "wires.patchcore.mean", Value: mu + s.rng.NormFloat64()},
		{Name: "wires.patchcore.skew", Value: s.rng.NormFloat64()},
	}}
}

func testConfig() config.DriftConfig {
	c := config.DefaultDriftConfig()
	c.Window, c.MinParts = 200, 100
	return c
}

func newMonitor(t *testing.T, s *synthetic, c config.DriftConfig) *Monitor {
	t.Helper()
	m, err := New(Options{Config: c, Reference: s.ref, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMonitorCountsProductionOnly: golden and shadow results, error
// results and rows without the watched features never enter the windows;
// failed parts enter the reject window only.
func TestMonitorCountsProductionOnly(t *testing.T) {
	s := newSynthetic(2000, 0.01)
	m := newMonitor(t, s, testConfig())
	ctx := context.Background()
	golden := s.result(0, result.VerdictPass)
	golden.Kind = result.KindGolden
	shadow := s.result(0, result.VerdictFail)
	shadow.Kind = result.KindShadow
	noRow := result.Result{Verdict: result.VerdictPass, Features: []result.Feature{{Name: "other.max", Value: 1}}}
	for _, r := range []result.Result{golden, shadow, {Verdict: result.VerdictError, ReasonCode: result.ReasonCapture}, noRow,
		s.result(0, result.VerdictFail), s.result(0, result.VerdictPass)} {
		if err := m.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st := m.Status()
	if st.Passes != 1 || st.Window != 1 || st.RejectWindow != 3 || st.Rejects != 1 || st.Unmatched != 1 {
		t.Fatalf("passes %d window %d reject window %d rejects %d unmatched %d; want 1 1 3 1 1", st.Passes, st.Window, st.RejectWindow, st.Rejects, st.Unmatched)
	}
	if len(st.Features) != 1 || st.Features[0].Stat != "mean" {
		t.Fatalf("watched %v, want only the mean (default stats mean, q995; the reference has no q995)", st.Features)
	}
}

// TestMonitorHysteresis: a shifted mean raises the alarm naming segment,
// detector and statistic; a shift between psi_clear and psi_alarm keeps
// it raised (no flapping); the trained distribution clears it.
func TestMonitorHysteresis(t *testing.T) {
	s := newSynthetic(5000, 0.01)
	c := testConfig()
	// A larger window than the others: PSI's noise must stay well inside
	// the band between psi_clear and psi_alarm for the middle steps.
	c.Window, c.MinParts = 1000, 500
	m := newMonitor(t, s, c)
	feed := func(mu float64, n int) Status {
		for i := 0; i < n; i++ {
			_ = m.Publish(context.Background(), s.result(mu, result.VerdictPass))
		}
		return m.Status()
	}
	// Below min_parts nothing is judged, however far off the parts are;
	// the part that fills min_parts is judged.
	if st := feed(3, c.MinParts-1); st.Judging || st.FeatureAlarm {
		t.Fatalf("judged %v, alarm %v before min_parts", st.Judging, st.FeatureAlarm)
	}
	if st := feed(3, 1); !st.Judging || !st.FeatureAlarm {
		t.Fatalf("judged %v, alarm %v at min_parts", st.Judging, st.FeatureAlarm)
	}
	m = newMonitor(t, s, c) // feed publishes to the new one
	steps := []struct {
		name      string
		mu        float64
		parts     int
		wantAlarm bool
	}{
		{"trained distribution", 0, 2 * c.Window, false},
		{"between clear and alarm from calm: not raised", 0.4, 2 * c.Window, false},
		{"shifted by one sigma", 1, c.Window, true},
		{"between clear and alarm: stays raised", 0.4, 2 * c.Window, true},
		{"back to trained: clears", 0, 2 * c.Window, false},
	}
	for _, st := range steps {
		got := feed(st.mu, st.parts)
		if got.FeatureAlarm != st.wantAlarm {
			t.Fatalf("%s: alarm %v (%q), want %v; worst %+v", st.name, got.FeatureAlarm, got.Alarm, st.wantAlarm, got.Features[0])
		}
		if st.wantAlarm && !strings.HasPrefix(got.Alarm, "wires: patchcore mean drifted, PSI ") {
			t.Errorf("%s: alarm text %q", st.name, got.Alarm)
		}
	}
	if st := m.Status(); st.Raised != 1 || st.Cleared != 1 {
		t.Fatalf("raised %d cleared %d, want one each (hysteresis)", st.Raised, st.Cleared)
	}
}

// TestMonitorRejectRate: rejects well above the expected false-reject
// rate raise the reject alarm (binomial test), and clear once the rate is
// back; expected_reject_rate overrides the bundle's rate.
func TestMonitorRejectRate(t *testing.T) {
	s := newSynthetic(2000, 0.02)
	cases := []struct {
		name      string
		expected  float64
		every     int // one reject every n parts
		wantAlarm bool
	}{
		{"at the expected rate", 0, 50, false},
		{"five times the expected rate", 0, 10, true},
		{"the same rejects, a line known to reject 12%", 0.12, 10, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			c.ExpectedRejectRate = tc.expected
			m := newMonitor(t, s, c)
			for i := 0; i < c.Window; i++ {
				v := result.VerdictPass
				if i%tc.every == 0 {
					v = result.VerdictFail
				}
				_ = m.Publish(context.Background(), s.result(0, v))
			}
			st := m.Status()
			if st.RejectAlarm != tc.wantAlarm {
				t.Fatalf("reject alarm %v (%q), want %v: %d rejects of %d", st.RejectAlarm, st.Alarm, tc.wantAlarm, st.Rejects, st.RejectWindow)
			}
			if !tc.wantAlarm {
				return
			}
			if !strings.Contains(st.Alarm, "reject rate 10.0% over the last 200 parts, expected at most 2.0%") {
				t.Errorf("alarm text %q", st.Alarm)
			}
			for i := 0; i < c.Window; i++ {
				_ = m.Publish(context.Background(), s.result(0, result.VerdictPass))
			}
			if st := m.Status(); st.RejectAlarm {
				t.Fatalf("reject alarm still raised after %d passes: %s", c.Window, st.Alarm)
			}
		})
	}
}

// TestMonitorRefuses: New says what is missing.
func TestMonitorRefuses(t *testing.T) {
	s := newSynthetic(100, 0)
	c := testConfig()
	if _, err := New(Options{Config: c}); err == nil || !strings.Contains(err.Error(), "no reference") {
		t.Errorf("no reference: %v", err)
	}
	c.Stats = []string{"kurtosis"}
	if _, err := New(Options{Config: c, Reference: s.ref}); err == nil || !strings.Contains(err.Error(), "kurtosis") {
		t.Errorf("no watched feature: %v", err)
	}
	// No expected rate anywhere: the reject test is off, the monitor runs.
	m := newMonitor(t, s, testConfig())
	for i := 0; i < 300; i++ {
		_ = m.Publish(context.Background(), s.result(0, result.VerdictFail))
	}
	if st := m.Status(); st.RejectAlarm || st.ExpectedRejectRate != 0 || st.RejectWindow != 0 {
		t.Errorf("reject test ran without an expected rate: %+v", st)
	}
}

// TestFloor: the sampling floor is the mean PSI of two samples of one
// distribution; checked by simulation (standard normal, 10 bins).
func TestFloor(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const good, n, trials = 300, 500, 400
	sum := 0.0
	for k := 0; k < trials; k++ {
		vals := make([]float64, good)
		for i := range vals {
			vals[i] = rng.NormFloat64()
		}
		e, sh, _ := Distribution(vals, DefaultBins)
		f := &bundle.DriftFeature{Edges: e, Shares: sh}
		counts := make([]int, len(sh)+1)
		for i := 0; i < n; i++ {
			counts[Bin(e, rng.NormFloat64())]++
		}
		sum += PSI(f, counts, n)
	}
	mean, want := sum/trials, Floor(DefaultBins-1, good, n)
	if math.Abs(mean-want) > 0.15*want {
		t.Fatalf("mean PSI of same-distribution samples %.4f, Floor %.4f", mean, want)
	}
	t.Logf("simulated mean PSI %.4f, Floor %.4f", mean, want)
}

// TestMonitorOtherForest: after a reload to another forest, results are
// not compared with a reference that describes another model's training
// parts, and the old model's alarm is dropped.
func TestMonitorOtherForest(t *testing.T) {
	s := newSynthetic(2000, 0.01)
	c := testConfig()
	m, err := New(Options{Config: c, Reference: s.ref, Forest: "sha256:aaaa", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < c.Window; i++ {
		r := s.result(2, result.VerdictPass)
		r.Bundle = "sha256:aaaa"
		_ = m.Publish(context.Background(), r)
	}
	if !m.Status().FeatureAlarm {
		t.Fatal("a two-sigma shift raised no alarm")
	}
	for i := 0; i < 10; i++ {
		r := s.result(2, result.VerdictFail)
		r.Bundle = "sha256:bbbb"
		_ = m.Publish(context.Background(), r)
	}
	st := m.Status()
	if st.OtherModel != 10 || st.Alarm != "" || st.RejectWindow != c.Window {
		t.Fatalf("other model %d, alarm %q, reject window %d: want 10, none, %d", st.OtherModel, st.Alarm, st.RejectWindow, c.Window)
	}
}

// TestMonitorConcurrentStatus: the daemon publishes from the output's
// goroutine while health, metrics and the HTTP API read the state (run
// with -race).
func TestMonitorConcurrentStatus(t *testing.T) {
	s := newSynthetic(500, 0.01)
	m := newMonitor(t, s, testConfig())
	rows := make([]result.Result, 400)
	for i := range rows {
		rows[i] = s.result(float64(i)/200, result.VerdictPass)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, r := range rows {
			_ = m.Publish(context.Background(), r)
		}
	}()
	for {
		select {
		case <-done:
			if st := m.Status(); st.Passes != 400 {
				t.Fatalf("%d passes, want 400", st.Passes)
			}
			return
		default:
			_ = m.Status()
			_ = m.Alarm()
		}
	}
}

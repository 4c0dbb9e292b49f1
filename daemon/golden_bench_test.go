package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/assurance/golden"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/result"
)

// goldenFor is a daemon with only its golden state, as goldenMark sees it.
func goldenFor(action string, last *golden.Summary) *Daemon {
	if last == nil {
		return &Daemon{}
	}
	on := true
	g := &goldenState{cfg: config.GoldenConfig{Dir: "g", OnStart: &on, Action: action}}
	g.setLast(last)
	return &Daemon{golden: g}
}

func failedSummary() *golden.Summary {
	s := &golden.Summary{At: time.Unix(1700000000, 0).UTC(), Trigger: "start"}
	for i := 0; i < 8; i++ {
		sc := 1.5
		f := fmt.Sprintf("good/%04d.png", i)
		s.Images = append(s.Images, golden.ImageResult{File: f, Expected: result.VerdictPass, Verdict: result.VerdictFail, Score: &sc, Reason: "expected pass, got fail (score 1.5, threshold 0)"})
		s.Failing = append(s.Failing, f)
	}
	return s
}

// TestGoldenMark is the action table on production results: nothing while
// challenges are off or passed; fail_closed turns a pass or fail into
// golden_failed (keeping what the model said in the reason) and leaves an
// error's own code; flag keeps every verdict and marks it warn; golden
// results themselves are never marked.
func TestGoldenMark(t *testing.T) {
	passed := &golden.Summary{Passed: true, Images: []golden.ImageResult{{File: "good/1.png", OK: true}}}
	sc := -1.25
	cases := []struct {
		name       string
		d          *Daemon
		in         result.Result
		verdict    result.Verdict
		code       string
		warn       bool
		reasonPart string
	}{
		{"off", goldenFor("", nil), result.Result{Verdict: result.VerdictPass, Score: &sc}, result.VerdictPass, "", false, ""},
		{"passed", goldenFor(config.GoldenFailClosed, passed), result.Result{Verdict: result.VerdictPass, Score: &sc}, result.VerdictPass, "", false, ""},
		{"not yet run", goldenFor(config.GoldenFailClosed, &golden.Summary{}), result.Result{Verdict: result.VerdictPass}, result.VerdictError, result.ReasonGolden, false, "inspected: pass"},
		{"fail_closed pass", goldenFor(config.GoldenFailClosed, failedSummary()), result.Result{Verdict: result.VerdictPass, Score: &sc}, result.VerdictError, result.ReasonGolden, false, "inspected: pass, score -1.25"},
		{"fail_closed fail", goldenFor(config.GoldenFailClosed, failedSummary()), result.Result{Verdict: result.VerdictFail, Score: &sc, ReasonCode: result.ReasonAnomaly}, result.VerdictError, result.ReasonGolden, false, "good/0000.png"},
		{"fail_closed keeps capture_error", goldenFor(config.GoldenFailClosed, failedSummary()), result.Result{Verdict: result.VerdictError, ReasonCode: result.ReasonCapture, Reason: "gone"}, result.VerdictError, result.ReasonCapture, false, "gone"},
		{"flag", goldenFor(config.GoldenFlag, failedSummary()), result.Result{Verdict: result.VerdictFail, Score: &sc, ReasonCode: result.ReasonAnomaly, Reason: "score high"}, result.VerdictFail, result.ReasonAnomaly, true, "score high; unverified: golden-sample challenge failed"},
		{"golden result untouched", goldenFor(config.GoldenFailClosed, failedSummary()), result.Result{Verdict: result.VerdictPass, Kind: result.KindGolden}, result.VerdictPass, "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "not yet run" {
				c.d.golden.last, c.d.golden.why = nil, "" // on_start and nothing has run
			}
			r := c.in
			c.d.goldenMark(&r)
			if r.Verdict != c.verdict || r.ReasonCode != c.code || r.Warn != c.warn || !strings.Contains(r.Reason, c.reasonPart) {
				t.Errorf("got verdict %s code %q warn %v reason %q; want %s %q %v containing %q", r.Verdict, r.ReasonCode, r.Warn, r.Reason, c.verdict, c.code, c.warn, c.reasonPart)
			}
		})
	}
}

// BenchmarkGoldenMark is what golden-sample challenges add to every
// production result (finish calls goldenMark once per frame). Baseline:
// off (no assurance.golden).
func BenchmarkGoldenMark(b *testing.B) {
	sc := -1.0
	for _, c := range []struct {
		name string
		d    *Daemon
	}{
		{"off", goldenFor("", nil)},
		{"passed", goldenFor(config.GoldenFailClosed, &golden.Summary{Passed: true})},
		{"failed_flag", goldenFor(config.GoldenFlag, failedSummary())},
		{"failed_fail_closed", goldenFor(config.GoldenFailClosed, failedSummary())},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := result.Result{Verdict: result.VerdictPass, Score: &sc}
				c.d.goldenMark(&r)
			}
		})
	}
}

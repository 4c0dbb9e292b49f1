package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/fit"
)

// runThresholdCmd runs `segad threshold ARGS...` on a fresh command tree.
func runThresholdCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newThresholdCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// TestThresholdSuggestScores: `segad threshold suggest --scores` prints the
// table and the budget's threshold, measures a bundle's current threshold
// on the same parts, and refuses ambiguous or unusable input.
func TestThresholdSuggestScores(t *testing.T) {
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("score,label\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&csv, "%d,bad\n", 10+i) // bad 10..29
		fmt.Fprintf(&csv, "%d,good\n", i+5) // good 5..24
	}
	scores := filepath.Join(dir, "scores.csv")
	if err := os.WriteFile(scores, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "bundle")
	err := bundle.Write(b, []byte("{}"), &bundle.Manifest{
		Features: []string{"s_q995", "s_skew", "s_kurt", "s_mean", "max"}, Detectors: []bundle.Detector{{Name: "d"}},
		Mask: bundle.Mask{Hash: "h", Segments: []string{"s"}},
		Threshold: bundle.Threshold{Suggested: 20, Recall: 1, Calibration: fit.CalibrationOutOfFold,
			Budget:  &bundle.Budget{Kind: bundle.BudgetMaxFalseReject, Value: 0.25},
			Promise: &bundle.OperatingPoint{Threshold: 20, Recall: 1, FPR: 0, RecallCI: &bundle.Interval{Low: 0.9, High: 1}, FPRCI: &bundle.Interval{Low: 0, High: 0.1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := runThresholdCmd(t, "suggest", "--scores", scores, "--bundle", b)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Source    string
		Good, Bad int
		Suggested bundle.OperatingPoint
		Table     []bundle.OperatingPoint
		Current   *fit.PromiseReport
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// The bundle's budget (false rejects <= 0.25: 5 of 20 goods, scores
	// 20..24) is the default: fail from 20 up, halfway to 19 (a good part).
	sp := res.Suggested
	if res.Good != 20 || res.Bad != 20 || sp.Budget == nil || sp.Budget.Kind != bundle.BudgetMaxFalseReject || sp.Counts.Rejected != 5 || sp.Counts.Caught != 10 || sp.Threshold != 19.5 {
		t.Fatalf("suggested %+v counts %+v", sp, sp.Counts)
	}
	if len(res.Table) < 2 || res.Current == nil || res.Current.Measured.Counts.Caught != 10 || !strings.Contains(res.Current.Verdict, "broken") {
		t.Fatalf("table %d rows, current %+v", len(res.Table), res.Current)
	}
	// An explicit recall budget wins over the bundle's.
	out, err = runThresholdCmd(t, "suggest", "--scores", scores, "--bundle", b, "--recall", "0.9")
	if err != nil || !strings.Contains(out, `"kind": "recall"`) {
		t.Fatalf("--recall: %v %s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"suggest"}, "either --history DB or --scores"},
		{[]string{"suggest", "--scores", scores, "--history", "h.db"}, "either --history DB or --scores"},
		{[]string{"suggest", "--history", filepath.Join(dir, "h.db")}, "open history " + filepath.Join(dir, "h.db")},
		{[]string{"suggest", "--scores", scores, "--since", "7d"}, "--since filters --history"},
		{[]string{"suggest", "--history", "h.db", "--since", "last week"}, "--since"},
		{[]string{"suggest", "--scores", filepath.Join(dir, "missing.csv")}, "missing.csv"},
		{[]string{"suggest", "--scores", scores, "--recall", "1.5"}, "recall 1.5"},
	} {
		if _, err := runThresholdCmd(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

// labelledFake stands in for the history store behind --history.
type labelledFake struct{ since time.Time }

func (f *labelledFake) LabelledScores(_ context.Context, since time.Time) ([]fit.LabelledScore, error) {
	f.since = since
	return []fit.LabelledScore{{Score: 1, Bad: false}, {Score: 2, Bad: true}, {Score: 3, Bad: true}, {Score: 0, Bad: false}}, nil
}

// TestThresholdSuggestHistory: --history reads labelled scores since
// --since through openLabelledHistory (the history store's hook).
func TestThresholdSuggestHistory(t *testing.T) {
	f := &labelledFake{}
	closed := false
	real := openLabelledHistory
	openLabelledHistory = func(string) (fit.LabelledSource, func() error, error) {
		return f, func() error { closed = true; return nil }, nil
	}
	t.Cleanup(func() { openLabelledHistory = real })
	out, err := runThresholdCmd(t, "suggest", "--history", "h.db", "--since", "7d")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(f.since); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute || !closed || !strings.Contains(out, `"since"`) {
		t.Errorf("since %v closed %v out %s", f.since, closed, out)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"1.5d":                 now.Add(-36 * time.Hour),
		"12h":                  now.Add(-12 * time.Hour),
		"2026-11-01T08:00:00Z": time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	if got, err := parseSince("2026-11-01", now); err != nil || got.Day() != 1 || got.Month() != 11 {
		t.Errorf("date: %v %v", got, err)
	}
	for _, in := range []string{"yesterday", "-3d", "-1h"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

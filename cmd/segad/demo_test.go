package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/demo"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// TestRunLineShort is a short `make demo`: every part of the stream gets
// exactly one result over MQTT, SegAD separates good from bad parts better
// than either detector's map maximum alone, and a second run reuses the
// cached data and models.
func TestRunLineShort(t *testing.T) {
	t.Setenv("SEGAD_ONNXRUNTIME_LIB", testenv.ORTLib(t))
	dir := t.TempDir()
	o := demo.LineOptions{Line: demoLine, Dir: dir, Seed: 3, DetectorGood: 60, FitGood: 120, FitBadPerKind: 12, Stream: 90, Trees: 50, Rounds: 5}
	var out bytes.Buffer
	o.Out = &out
	s, err := demo.RunLine(context.Background(), o)
	if err != nil {
		t.Fatalf("RunLine: %v\n%s", err, out.String())
	}
	if s.Parts != 90 || s.Results != 90 {
		t.Fatalf("%d results for %d parts, want one each", s.Results, s.Parts)
	}
	if n := strings.Count(out.String(), "\npart "); n != 90 {
		t.Errorf("%d live lines, want 90", n)
	}
	for name, a := range s.AUROCMax {
		if s.AUROCSegAD <= a {
			t.Errorf("SegAD AUROC %.3f is not above detector %s alone (%.3f)", s.AUROCSegAD, name, a)
		}
	}
	t.Logf("AUROC SegAD %.3f, alone %v; recall at 5%% false rejects %v", s.AUROCSegAD, s.AUROCMax, s.RecallAt5)

	out.Reset()
	s2, err := demo.RunLine(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "cached") != 3 {
		t.Errorf("second run did not reuse the artifacts:\n%s", out.String())
	}
	if s2.AUROCSegAD != s.AUROCSegAD || s2.Results != 90 {
		t.Errorf("second run differs: AUROC %.4f vs %.4f, %d results", s2.AUROCSegAD, s.AUROCSegAD, s2.Results)
	}
}

// TestRunLineJitter is a short `segad demo --jitter`: every jittered part
// is located and judged, and the summary sets the line with fixturing
// beside the same parts scored by detectors and a forest fitted without
// it, which separate them worse; a second run reuses both.
func TestRunLineJitter(t *testing.T) {
	if testing.Short() {
		t.Skip("fits the demo line twice")
	}
	t.Setenv("SEGAD_ONNXRUNTIME_LIB", testenv.ORTLib(t))
	dir := t.TempDir()
	o := demo.LineOptions{Line: demoLine, Dir: dir, Seed: 3, DetectorGood: 60, FitGood: 120, FitBadPerKind: 12, Stream: 90, Trees: 50, Rounds: 5, Jitter: true, Quiet: true}
	var out bytes.Buffer
	o.Out = &out
	s, err := demo.RunLine(context.Background(), o)
	if err != nil {
		t.Fatalf("RunLine: %v\n%s", err, out.String())
	}
	fx := s.Fixturing
	if s.Results != 90 || fx == nil || fx.Located+fx.NotLocated != 90 || fx.NotLocated > 2 {
		t.Fatalf("%d results, fixturing %+v", s.Results, fx)
	}
	u := fx.Without
	if u == nil || u.Parts != 90 {
		t.Fatalf("comparison without fixturing: %+v", u)
	}
	t.Logf("with fixturing AUROC %.3f FPR@95TPR %.3f; without %.3f / %.3f", s.AUROCSegAD, s.FPRAt95TPR, u.AUROC, u.FPRAt95TPR)
	if !(u.AUROC < s.AUROCSegAD) {
		t.Errorf("without fixturing AUROC %.3f is not below the fixtured line's %.3f", u.AUROC, s.AUROCSegAD)
	}
	var sum bytes.Buffer
	s.Print(&sum)
	for _, want := range []string{"with fixturing (this line)", "without fixturing (scored offline)", fmt.Sprintf("AUROC %.3f", u.AUROC)} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}

	out.Reset()
	s2, err := demo.RunLine(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "cached") != 4 || s2.Fixturing == nil || s2.Fixturing.Without == nil || *s2.Fixturing.Without != *u {
		t.Errorf("second run did not reuse the comparison (%+v):\n%s", s2.Fixturing, out.String())
	}
}

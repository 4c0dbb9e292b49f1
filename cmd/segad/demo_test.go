package main

import (
	"bytes"
	"context"
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

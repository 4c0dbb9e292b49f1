package mqtt

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/segad-edge/segad-edge/result"
)

// TestResultPayloadTrimsExplain: the result topic carries the top three
// segments and detectors of the explanation and no per-feature table; the
// result handed in (which history and audit also get) keeps all of them.
func TestResultPayloadTrimsExplain(t *testing.T) {
	table := func(prefix string, n int) []result.Contribution {
		out := make([]result.Contribution, n)
		for i := range out {
			out[i] = result.Contribution{Name: fmt.Sprintf("%s%d", prefix, i), Value: float64(n-i) / 10}
		}
		return out
	}
	score := 1.5
	r := result.Result{ID: "R1", Verdict: result.VerdictFail, Score: &score, Explain: &result.Explanation{
		Method: "path", Bias: -2, Segments: table("seg", 8), Detectors: table("det", 4), Features: table("f", 29)}}
	e, err := entry(&r)
	if err != nil {
		t.Fatal(err)
	}
	var got result.Result
	if err := json.Unmarshal(e.Result, &got); err != nil {
		t.Fatal(err)
	}
	x := got.Explain
	if x == nil || x.Method != "path" || x.Bias != -2 || len(x.Segments) != 3 || len(x.Detectors) != 3 || x.Features != nil {
		t.Fatalf("payload explain: %+v\n%s", x, e.Result)
	}
	for i := range 3 {
		if x.Segments[i] != r.Explain.Segments[i] || x.Detectors[i] != r.Explain.Detectors[i] {
			t.Fatalf("payload's top three differ: %+v", x)
		}
	}
	if len(r.Explain.Segments) != 8 || len(r.Explain.Detectors) != 4 || len(r.Explain.Features) != 29 {
		t.Fatalf("entry changed the result: %+v", r.Explain)
	}
	full, _ := json.Marshal(r)
	var back result.Result
	if err := json.Unmarshal(full, &back); err != nil || len(back.Explain.Features) != 29 || len(back.Explain.Segments) != 8 {
		t.Fatalf("the full result's JSON (history, audit): %v %+v", err, back.Explain)
	}
	// Two detectors: fewer than three, all of them.
	r.Explain.Detectors = r.Explain.Detectors[:2]
	if e, err = entry(&r); err != nil {
		t.Fatal(err)
	}
	got = result.Result{}
	if err := json.Unmarshal(e.Result, &got); err != nil || len(got.Explain.Detectors) != 2 {
		t.Fatalf("two detectors: %v %+v", err, got.Explain)
	}
	// No explanation: none in the payload.
	r.Explain = nil
	if e, err = entry(&r); err != nil {
		t.Fatal(err)
	}
	got = result.Result{}
	if err := json.Unmarshal(e.Result, &got); err != nil || got.Explain != nil {
		t.Fatalf("no explanation: %v %s", err, e.Result)
	}
}

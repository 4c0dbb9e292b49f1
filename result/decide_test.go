package result

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

// TestDecide (moved from segad.Decide with the verdict logic): score >=
// threshold fails, below passes; a non-finite score or threshold is never
// a pass and says why.
func TestDecide(t *testing.T) {
	tests := []struct {
		name       string
		score, thr float64
		want       Verdict
		reason     string
	}{
		{"below", 0.1, 0.5, VerdictPass, ""},
		{"equal fails", 0.5, 0.5, VerdictFail, ""},
		{"above", 2, 0.5, VerdictFail, ""},
		{"negative margins", -3, -1, VerdictPass, ""},
		{"NaN score", math.NaN(), 0.5, VerdictError, "score NaN is not a finite number"},
		{"+Inf score", math.Inf(1), 0.5, VerdictError, "score +Inf"},
		{"-Inf score fails closed", math.Inf(-1), 0.5, VerdictError, "score -Inf"},
		{"NaN threshold", 0.1, math.NaN(), VerdictError, "threshold NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Result
			r.Decide(tc.score, tc.thr, math.NaN())
			if r.Verdict != tc.want || !strings.Contains(r.Reason, tc.reason) || (tc.want == VerdictPass && r.Reason != "") {
				t.Fatalf("Decide(%v, %v) = %+v, want %s with reason %q", tc.score, tc.thr, r, tc.want, tc.reason)
			}
			if tc.want != VerdictPass && !r.Rejected() {
				t.Fatal("a part that is not a pass is not rejected")
			}
		})
	}
}

// TestFailClosedJSON: a part that could not be scored is written with a
// null score and the error as its reason; a judged part with its score and
// threshold.
func TestFailClosedJSON(t *testing.T) {
	r := Result{Threshold: 1.5}
	FailClosed(&r, ReasonMap, errors.New(`detector "a" map: pixel 3 is NaN`))
	if !r.Rejected() {
		t.Fatal("FailClosed passes")
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"verdict":"error"`, `"score":null`, `"threshold":1.5`, `"reason":"detector \"a\" map: pixel 3 is NaN"`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("json %s, want %s", b, want)
		}
	}
	var p Result
	p.Decide(0.25, 1, math.NaN())
	b, _ = json.Marshal(p)
	for _, want := range []string{`"verdict":"pass"`, `"score":0.25`, `"threshold":1`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("json %s, want %s", b, want)
		}
	}
}

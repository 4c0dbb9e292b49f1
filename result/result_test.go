package result

import (
	"encoding/json"
	"math"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestResultIDsSortAndDiffer(t *testing.T) {
	base := time.Now()
	var ids []string
	for i := range 2000 {
		// Same millisecond for runs of 500: the random part must increment.
		ids = append(ids, NewID(base.Add(time.Duration(i/500)*time.Millisecond)))
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("IDs do not sort in creation order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if len(id) != 26 || seen[id] || strings.Trim(id, crockford) != "" {
			t.Fatalf("bad or duplicate ID %q", id)
		}
		seen[id] = true
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	r := Result{Schema: 1, ID: "x", Verdict: VerdictPass, MapMax: map[string]float64{"a": math.Inf(1), "b": 0.5},
		Features: []Feature{{"f", math.NaN()}, {"g", 2}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("marshal with NaN/Inf: %v", err)
	}
	if !strings.Contains(string(b), `"score":null`) || !strings.Contains(string(b), `"a":null`) {
		t.Fatalf("non-finite values not null: %s", b)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Score != nil || !math.IsNaN(back.Features[0].Value) || back.Features[1].Value != 2 || back.MapMax["b"] != 0.5 || !math.IsNaN(back.MapMax["a"]) {
		t.Fatalf("round trip: %+v", back)
	}
}

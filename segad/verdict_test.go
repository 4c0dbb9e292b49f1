package segad

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name       string
		score, thr float64
		want       Outcome
		reason     string
	}{
		{"below", 0.1, 0.5, Pass, ""},
		{"equal fails", 0.5, 0.5, Fail, ""},
		{"above", 2, 0.5, Fail, ""},
		{"negative margins", -3, -1, Pass, ""},
		{"NaN score", math.NaN(), 0.5, Fail, "score NaN is not a finite number"},
		{"+Inf score", math.Inf(1), 0.5, Fail, "score +Inf"},
		{"-Inf score fails closed", math.Inf(-1), 0.5, Fail, "score -Inf"},
		{"NaN threshold", 0.1, math.NaN(), Fail, "threshold NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.score, tc.thr)
			if v.Outcome != tc.want || !strings.Contains(v.Reason, tc.reason) || (tc.reason == "" && v.Reason != "") {
				t.Fatalf("Decide(%v, %v) = %+v, want %s with reason %q", tc.score, tc.thr, v, tc.want, tc.reason)
			}
		})
	}
}

func TestFailClosedJSON(t *testing.T) {
	v := FailClosed(errors.New(`detector "a" map: pixel 3 is NaN`), 1.5)
	if v.Outcome != Fail {
		t.Fatal("FailClosed passes")
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"verdict":"fail","score":null,"threshold":1.5,"reason":"detector \"a\" map: pixel 3 is NaN"}`
	if string(b) != want {
		t.Fatalf("json %s, want %s", b, want)
	}
	b, _ = json.Marshal(Decide(0.25, 1))
	if string(b) != `{"verdict":"pass","score":0.25,"threshold":1}` {
		t.Fatalf("json %s", b)
	}
}

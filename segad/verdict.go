package segad

import (
	"encoding/json"
	"fmt"
	"math"
)

// Outcome is a part's inspection result.
type Outcome string

const (
	// Pass means the part is good: score below threshold.
	Pass Outcome = "pass"
	// Fail means the part is rejected: score at or above threshold, or the
	// part could not be scored (fail closed).
	Fail Outcome = "fail"
)

// Verdict is the decision for one part.
type Verdict struct {
	// Outcome is pass or fail.
	Outcome Outcome `json:"verdict"`
	// Score is the BRF margin; NaN when the part could not be scored.
	Score float64 `json:"score"`
	// Threshold is the score at and above which a part fails.
	Threshold float64 `json:"threshold"`
	// Reason explains a fail that is not a plain score >= threshold; empty
	// otherwise.
	Reason string `json:"reason,omitempty"`
}

// Decide compares a score with the threshold: score >= threshold fails.
// A NaN or infinite score, or an unusable threshold, fails closed with a
// reason, because a line must never pass a part it could not judge.
func Decide(score, threshold float64) Verdict {
	v := Verdict{Outcome: Fail, Score: score, Threshold: threshold}
	switch {
	case math.IsNaN(threshold) || math.IsInf(threshold, 0):
		v.Reason = fmt.Sprintf("threshold %v is not a finite number", threshold)
	case math.IsNaN(score) || math.IsInf(score, 0):
		v.Reason = fmt.Sprintf("score %v is not a finite number", score)
	case score >= threshold:
	default:
		v.Outcome = Pass
	}
	return v
}

// FailClosed returns the fail verdict for a part that could not be scored
// (wrong map shape, NaN pixel, model error, ...); err's text is the reason.
func FailClosed(err error, threshold float64) Verdict {
	reason := "unknown error"
	if err != nil {
		reason = err.Error()
	}
	return Verdict{Outcome: Fail, Score: math.NaN(), Threshold: threshold, Reason: reason}
}

// MarshalJSON writes a non-finite score or threshold as null, which
// encoding/json cannot otherwise encode.
func (v Verdict) MarshalJSON() ([]byte, error) {
	type out struct {
		Outcome   Outcome  `json:"verdict"`
		Score     *float64 `json:"score"`
		Threshold *float64 `json:"threshold"`
		Reason    string   `json:"reason,omitempty"`
	}
	fin := func(f float64) *float64 {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return &f
	}
	return json.Marshal(out{v.Outcome, fin(v.Score), fin(v.Threshold), v.Reason})
}

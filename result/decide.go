package result

import (
	"errors"
	"fmt"
	"math"
)

// Decide is the one place a verdict is decided from a score: it sets r's
// score, threshold and verdict. score >= threshold fails (reason code
// anomaly); a NaN or infinite score, or a threshold that is not a finite
// number, fails closed (verdict error, invalid_score), because a line must
// never pass a part it could not judge; a pass at or above warn is flagged
// Warn (warn NaN: no warn band). The line, `segad score` and every tool
// judge through it.
func (r *Result) Decide(score, threshold, warn float64) {
	r.Threshold = threshold
	switch {
	case math.IsNaN(threshold) || math.IsInf(threshold, 0):
		FailClosed(r, ReasonScore, fmt.Errorf("threshold %v is not a finite number", threshold))
	case math.IsNaN(score) || math.IsInf(score, 0):
		FailClosed(r, ReasonScore, fmt.Errorf("score %v is not a finite number", score))
	case score >= threshold:
		r.Verdict, r.ReasonCode = VerdictFail, ReasonAnomaly
		r.Reason = fmt.Sprintf("score %.4g >= threshold %.4g", score, threshold)
	default:
		r.Verdict = VerdictPass
		r.Warn = !math.IsNaN(warn) && score >= warn
	}
	r.Score = &score
}

// errUnknown stands in for a nil error given to FailClosed.
var errUnknown = errors.New("unknown error")

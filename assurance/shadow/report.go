package shadow

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/result"
)

// Part is one part in a report: its IDs and what each model said.
type Part struct {
	LiveID           string         `json:"live_id"`
	ShadowID         string         `json:"shadow_id"`
	Seq              uint64         `json:"seq"`
	PartID           string         `json:"part_id,omitempty"`
	LiveVerdict      result.Verdict `json:"live_verdict"`
	LiveScore        *float64       `json:"live_score"`
	CandidateVerdict result.Verdict `json:"candidate_verdict"`
	CandidateScore   *float64       `json:"candidate_score"`
	// Label is the part's newest label (good, bad) or "".
	Label string `json:"label,omitempty"`
}

// Point is one model's operating point on the labelled parts: how many bad
// parts it rejected (recall) and how many good parts (false rejects), at
// its own threshold. An error verdict counts as a reject (the line fails
// it closed).
type Point struct {
	Bad          int `json:"bad"`
	BadRejected  int `json:"bad_rejected"`
	Good         int `json:"good"`
	GoodRejected int `json:"good_rejected"`
}

// Report compares the candidate with the live model on the parts both
// judged.
type Report struct {
	// Candidate is the candidate forest the report is about (Result.Bundle
	// of its shadow results).
	Candidate string `json:"candidate"`
	// Pairs is how many parts both judged; Agree how many got the same
	// decision (both passed, or both rejected).
	Pairs int `json:"pairs"`
	Agree int `json:"agree"`
	// CandidateRejects are parts the live model passed and the candidate
	// would reject; CandidatePasses the other way round.
	CandidateRejects []Part `json:"candidate_rejects"`
	CandidatePasses  []Part `json:"candidate_passes"`
	// CandidateErrors are parts the candidate could not judge (verdict
	// error), whatever the live model said; they are among the pairs.
	CandidateErrors int `json:"candidate_errors"`
	// Unpaired counts shadow results whose live result is not in the
	// history (pruned, or not recorded).
	Unpaired int `json:"unpaired"`
	// Live and Candidate are the operating points on the labelled pairs.
	LivePoint      Point `json:"live_point"`
	CandidatePoint Point `json:"candidate_point"`
}

// pairSlack is how much earlier than the oldest shadow result its live
// result may have been decided (the candidate's queue is short: seconds).
const pairSlack = time.Hour

// Load reads what a report needs from the history: the shadow results
// decided at or after since, and the live results they pair with. Rows are
// read a page at a time and kept without their feature rows, map maxima and
// explanations, so a long history costs memory per shadow result only.
func Load(ctx context.Context, st *history.Store, since time.Time) ([]history.Row, error) {
	var rows []history.Row
	want := map[string]bool{}
	oldest := time.Time{}
	each := func(q history.Query, keep func(*history.Row) bool) error {
		q.Limit = history.MaxLimit
		for {
			page, err := st.Query(ctx, q)
			if err != nil {
				return err
			}
			for i := range page.Results {
				r := page.Results[i]
				if keep(&r) {
					r.Features, r.MapMax, r.Contributions = nil, nil, nil
					rows = append(rows, r)
				}
			}
			if page.Next == "" {
				return nil
			}
			q.Cursor = page.Next
		}
	}
	if err := each(history.Query{Kind: history.KindShadow, Since: since}, func(r *history.Row) bool {
		want[LiveID(r.ID)] = true
		if oldest.IsZero() || r.DecidedAt.Before(oldest) {
			oldest = r.DecidedAt
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("shadow report: read the shadow results: %w", err)
	}
	if len(want) == 0 {
		return rows, nil
	}
	if err := each(history.Query{Kind: history.KindProduction, Since: oldest.Add(-pairSlack)}, func(r *history.Row) bool {
		return want[r.ID]
	}); err != nil {
		return nil, fmt.Errorf("shadow report: read the live results: %w", err)
	}
	return rows, nil
}

// Compare builds a report from history rows (any kinds, any order): each
// shadow row of the candidate forest (the newest shadow row's when
// candidate is "") is paired with its live row by ID (LiveID).
func Compare(rows []history.Row, candidate string) Report {
	live := map[string]*history.Row{}
	var shadows []*history.Row
	var newest *history.Row
	for i := range rows {
		r := &rows[i]
		switch r.Kind {
		case history.KindShadow:
			shadows = append(shadows, r)
			if newest == nil || r.DecidedAt.After(newest.DecidedAt) {
				newest = r
			}
		case history.KindProduction, "":
			live[r.ID] = r
		}
	}
	if candidate == "" && newest != nil {
		candidate = newest.Bundle
	}
	rep := Report{Candidate: candidate, CandidateRejects: []Part{}, CandidatePasses: []Part{}}
	sort.Slice(shadows, func(i, j int) bool { return shadows[i].Seq < shadows[j].Seq })
	for _, s := range shadows {
		if s.Bundle != candidate {
			continue
		}
		l := live[LiveID(s.ID)]
		if l == nil {
			rep.Unpaired++
			continue
		}
		p := Part{LiveID: l.ID, ShadowID: s.ID, Seq: l.Seq, PartID: l.PartID, LiveVerdict: l.Verdict, LiveScore: l.Score,
			CandidateVerdict: s.Verdict, CandidateScore: s.Score}
		if l.Label != nil {
			p.Label = l.Label.Label
		}
		rep.Pairs++
		lr, cr := l.Verdict != result.VerdictPass, s.Verdict != result.VerdictPass
		if s.Verdict == result.VerdictError {
			rep.CandidateErrors++
		}
		switch {
		case lr == cr:
			rep.Agree++
		case cr:
			rep.CandidateRejects = append(rep.CandidateRejects, p)
		default:
			rep.CandidatePasses = append(rep.CandidatePasses, p)
		}
		rep.LivePoint.add(p.Label, lr)
		rep.CandidatePoint.add(p.Label, cr)
	}
	return rep
}

func (p *Point) add(label string, rejected bool) {
	n := 0
	if rejected {
		n = 1
	}
	switch label {
	case "bad":
		p.Bad++
		p.BadRejected += n
	case "good":
		p.Good++
		p.GoodRejected += n
	}
}

// Agreement is the share of pairs with the same decision (NaN-free: 0
// without pairs).
func (r *Report) Agreement() float64 {
	if r.Pairs == 0 {
		return 0
	}
	return float64(r.Agree) / float64(r.Pairs)
}

package history

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Labelled results are training data: `segad threshold suggest --history`
// recomputes the operating points from their scores, `segad fit --history`
// trains the forest on their recorded feature rows. Both read production
// results only (golden-sample challenges and shadow verdicts are not the
// line's parts) with the newest label of each.

// LabelledScore is one labelled production result's score.
type LabelledScore struct {
	ID        string
	DecidedAt time.Time
	// Bundle is the forest that scored the part (result.Result.Bundle).
	Bundle string
	Score  float64
	// Bad is the newest label: true for "bad".
	Bad        bool
	DefectType string
}

// LabelledRow is one labelled production result's feature row.
type LabelledRow struct {
	ID        string
	DecidedAt time.Time
	Bundle    string
	// Values is the feature row in LabelledFeatures.Names order; a null
	// (a NaN or infinite value on the line) is NaN, as the forest reads it.
	Values []float64
	// MapMax is the per-detector map maximum (NaN for null).
	MapMax map[string]float64
	// Bad is the newest label: true for "bad".
	Bad        bool
	DefectType string
}

// LabelledFeatures are the labelled results' feature rows, newest first.
type LabelledFeatures struct {
	// Names are the feature names in column order: those of the newest
	// labelled row with a feature row (every row has the same).
	Names []string
	Rows  []LabelledRow
	// NoFeatures counts labelled results recorded without a feature row
	// (error verdicts before the features, or a daemon that did not record
	// them): they cannot train and are left out.
	NoFeatures int
}

// Counts returns the number of good and bad rows and the bad rows per
// defect type ("" when none was given).
func (lf *LabelledFeatures) Counts() (good, bad int, types map[string]int) {
	types = map[string]int{}
	for _, r := range lf.Rows {
		if r.Bad {
			bad++
			types[r.DefectType]++
		} else {
			good++
		}
	}
	return good, bad, types
}

// FeatureOrderError is returned by LabelledFeatures when labelled results
// were recorded with different feature rows (a mask, detector or extractor
// change in the period asked): one forest cannot train on both.
type FeatureOrderError struct {
	// Newest is the newest row's feature names; Other is the first row
	// (newest first) that differs, recorded at OtherAt.
	Newest       []string
	OtherID      string
	OtherAt      time.Time
	Other        []string
	NewestID     string
	NewestAt     time.Time
	Index        int
	Want, Differ string // the names at Index ("" past a row's end)
}

func (e *FeatureOrderError) Error() string {
	what := fmt.Sprintf("feature %d is %q there but %q in the newer result %s", e.Index, e.Differ, e.Want, e.NewestID)
	switch {
	case e.Differ == "":
		what = fmt.Sprintf("its row has %d features, the newer result %s's has %d (feature %d is %q)", len(e.Other), e.NewestID, len(e.Newest), e.Index, e.Want)
	case e.Want == "":
		what = fmt.Sprintf("its row has %d features, the newer result %s's has %d (its feature %d is %q)", len(e.Other), e.NewestID, len(e.Newest), e.Index, e.Differ)
	}
	return fmt.Sprintf("labelled results were recorded with different feature rows: result %s (decided %s) differs: %s; a mask, detector or extractor change lies in the period: start after it (since later than %s)",
		e.OtherID, e.OtherAt.UTC().Format(time.RFC3339), what, e.OtherAt.UTC().Format(time.RFC3339Nano))
}

// eachLabelled calls f for every labelled production result decided at or
// after since (all of them when zero), newest first, a page of MaxLimit at a
// time (no read transaction stays open for long).
func (s *Store) eachLabelled(ctx context.Context, since time.Time, f func(*Row) error) error {
	q := Query{Since: since, Label: "labelled", Kind: KindProduction, Limit: MaxLimit}
	for {
		page, err := s.Query(ctx, q)
		if err != nil {
			return err
		}
		for i := range page.Results {
			if err := f(&page.Results[i]); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
}

// LabelledScores returns the scores of the labelled production results
// decided at or after since (all of them when zero), newest first. Results
// without a score (error verdicts) are left out: there is no score to put a
// threshold on.
func (s *Store) LabelledScores(ctx context.Context, since time.Time) ([]LabelledScore, error) {
	var out []LabelledScore
	err := s.eachLabelled(ctx, since, func(r *Row) error {
		if r.Score == nil || r.Label == nil {
			return nil
		}
		out = append(out, LabelledScore{ID: r.ID, DecidedAt: r.DecidedAt, Bundle: r.Bundle, Score: *r.Score,
			Bad: r.Label.Label == "bad", DefectType: r.Label.DefectType})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history: labelled scores: %w", err)
	}
	return out, nil
}

// LabelledFeatures returns the feature rows of the labelled production
// results decided at or after since (all of them when zero), newest first.
// Results without a feature row are counted (NoFeatures) and left out.
// Every row must have the newest row's feature names in the same order:
// otherwise (the mask, detectors or extractor changed within the period)
// it returns a *FeatureOrderError naming the first difference, rather than
// training one forest on two meanings of a column or silently dropping
// labelled parts.
func (s *Store) LabelledFeatures(ctx context.Context, since time.Time) (*LabelledFeatures, error) {
	out := &LabelledFeatures{}
	var newestID string
	var newestAt time.Time
	err := s.eachLabelled(ctx, since, func(r *Row) error {
		if r.Label == nil {
			return nil
		}
		var fs []wireFeature
		if len(r.Features) > 0 {
			if err := json.Unmarshal(r.Features, &fs); err != nil {
				return fmt.Errorf("result %s: feature row: %w", r.ID, err)
			}
		}
		if len(fs) == 0 {
			out.NoFeatures++
			return nil
		}
		if out.Names == nil {
			out.Names = make([]string, len(fs))
			for i, f := range fs {
				out.Names[i] = f.Name
			}
			newestID, newestAt = r.ID, r.DecidedAt
		} else if i := firstDifference(out.Names, fs); i >= 0 {
			e := &FeatureOrderError{Newest: out.Names, NewestID: newestID, NewestAt: newestAt,
				OtherID: r.ID, OtherAt: r.DecidedAt, Index: i}
			for _, f := range fs {
				e.Other = append(e.Other, f.Name)
			}
			if i < len(out.Names) {
				e.Want = out.Names[i]
			}
			if i < len(fs) {
				e.Differ = fs[i].Name
			}
			return e
		}
		row := LabelledRow{ID: r.ID, DecidedAt: r.DecidedAt, Bundle: r.Bundle, Values: make([]float64, len(fs)),
			Bad: r.Label.Label == "bad", DefectType: r.Label.DefectType}
		for i, f := range fs {
			row.Values[i] = math.NaN()
			if f.Value != nil {
				row.Values[i] = *f.Value
			}
		}
		if len(r.MapMax) > 0 {
			var mm map[string]*float64
			if err := json.Unmarshal(r.MapMax, &mm); err != nil {
				return fmt.Errorf("result %s: map_max: %w", r.ID, err)
			}
			row.MapMax = make(map[string]float64, len(mm))
			for k, v := range mm {
				row.MapMax[k] = math.NaN()
				if v != nil {
					row.MapMax[k] = *v
				}
			}
		}
		out.Rows = append(out.Rows, row)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history: labelled feature rows: %w", err)
	}
	return out, nil
}

// firstDifference returns the first index where fs's names differ from
// names, or -1 when they are the same.
func firstDifference(names []string, fs []wireFeature) int {
	for i := 0; i < max(len(names), len(fs)); i++ {
		if i >= len(names) || i >= len(fs) || names[i] != fs[i].Name {
			return i
		}
	}
	return -1
}

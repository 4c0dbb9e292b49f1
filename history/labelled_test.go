package history

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"
)

// TestLabelledReads: LabelledScores and LabelledFeatures read the labelled
// production results since a time, newest first, with the newest label;
// golden and shadow results, unlabelled ones, results without a score or a
// feature row are left out (counted for features); a result recorded with
// another feature order is refused naming the first difference. Both
// backends.
func TestLabelledReads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := open(t, b.cfg(t))
		var ids []string
		pub := func(i int, kind Kind, mod func(*result.Result)) string {
			t.Helper()
			r := mkResult(i)
			if mod != nil {
				mod(&r)
			}
			if err := s.PublishWith(ctx, r, Extra{Kind: kind}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
			return r.ID
		}
		label := func(id, l, typ string) {
			t.Helper()
			if _, err := s.Label(ctx, id, Label{Label: l, DefectType: typ, Who: "qa"}); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 10; i++ {
			pub(i, "", nil)
		}
		label(ids[0], "good", "")
		label(ids[1], "bad", "scratch")
		label(ids[2], "bad", "") // relabelled below: the newest label wins
		label(ids[2], "good", "")
		label(ids[3], "bad", "dent")
		label(ids[4], "good", "")
		// Not production: never training data.
		label(pub(20, KindGolden, nil), "bad", "golden")
		label(pub(21, KindShadow, nil), "good", "")
		// No score and no feature row (an error verdict before features).
		label(pub(22, "", func(r *result.Result) {
			r.Score, r.Features, r.Verdict = nil, nil, result.VerdictError
		}), "bad", "")
		flush(t, s)

		ls, err := s.LabelledScores(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range ls {
			got = append(got, l.ID)
			if l.Bundle != "b1" || l.DecidedAt.IsZero() {
				t.Errorf("%+v: bundle or time missing", l)
			}
		}
		// Newest first: ids[4] (i=4) .. ids[0].
		if want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("labelled scores %v, want %v", got, want)
		}
		if !ls[1].Bad || ls[1].DefectType != "dent" || ls[2].Bad || ls[1].Score != 0.3 {
			t.Errorf("labels %+v", ls)
		}

		lf, err := s.LabelledFeatures(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(lf.Rows) != 5 || lf.NoFeatures != 1 || strings.Join(lf.Names, ",") != "ms.seg0.mean,ms.seg0.skew,pc.seg1.max" {
			t.Fatalf("%d rows, %d without features, names %v", len(lf.Rows), lf.NoFeatures, lf.Names)
		}
		r := lf.Rows[1] // ids[3], i = 3
		if r.ID != ids[3] || !r.Bad || r.DefectType != "dent" || r.Values[0] != 0.25 || !math.IsNaN(r.Values[1]) || r.Values[2] != 3 ||
			r.MapMax["ms"] != 3.5 || r.MapMax["pc"] != 1.25 {
			t.Errorf("row %+v", r)
		}
		if g, bd, types := lf.Counts(); g != 3 || bd != 2 || types["scratch"] != 1 || types["dent"] != 1 {
			t.Errorf("counts %d good %d bad %v", g, bd, types)
		}

		// since: only results decided at or after it.
		since := t0.Add(3 * time.Millisecond)
		if ls, err = s.LabelledScores(ctx, since); err != nil || len(ls) != 2 {
			t.Errorf("since: %d scores, %v; want 2", len(ls), err)
		}
		if lf, err = s.LabelledFeatures(ctx, since); err != nil || len(lf.Rows) != 2 {
			t.Errorf("since: %v", err)
		}

		// A labelled result with another feature order is refused, named,
		// with the time to start after.
		id := pub(30, "", func(r *result.Result) {
			r.DecidedAt = t0.Add(-time.Minute)
			r.ID = result.NewID(r.DecidedAt)
			r.Features[0], r.Features[1] = r.Features[1], r.Features[0]
		})
		label(id, "bad", "")
		_, err = s.LabelledFeatures(ctx, time.Time{})
		var fe *FeatureOrderError
		if !errors.As(err, &fe) || fe.OtherID != id || fe.Index != 0 || fe.Want != "ms.seg0.mean" || fe.Differ != "ms.seg0.skew" ||
			!strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), `feature 0 is "ms.seg0.skew"`) {
			t.Fatalf("other order: %v", err)
		}
		// Starting after it reads again.
		if lf, err = s.LabelledFeatures(ctx, t0); err != nil || len(lf.Rows) != 5 {
			t.Errorf("after the change: %v", err)
		}
		// A shorter row is refused too.
		id = pub(31, "", func(r *result.Result) {
			r.DecidedAt = t0.Add(-time.Second)
			r.ID = result.NewID(r.DecidedAt)
			r.Features = r.Features[:2]
		})
		label(id, "good", "")
		if _, err = s.LabelledFeatures(ctx, t0.Add(-30*time.Second)); !errors.As(err, &fe) || fe.Index != 2 || !strings.Contains(err.Error(), "has 2 features") {
			t.Fatalf("short row: %v", err)
		}

		// A read-only store (the tools') reads the same.
		ro := open(t, Config{Backend: s.cfg.Backend, Path: s.cfg.Path, URL: s.cfg.URL, ReadOnly: true, Logger: quietLog(t)})
		if ls2, err := ro.LabelledScores(ctx, t0); err != nil || len(ls2) != 5 {
			t.Errorf("read-only: %d, %v", len(ls2), err)
		}
	})
}

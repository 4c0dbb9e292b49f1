package history

import (
	"context"
	"testing"

	"github.com/segad-edge/segad-edge/result"
)

// TestResultKindRecorded: a result that carries its kind (Result.Kind, as
// the daemon hands golden and shadow results aside) is recorded with that
// kind through plain Publish; Extra.Kind, when given, wins; no kind is
// production. Both backends.
func TestResultKindRecorded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := open(t, b.cfg(t))
		if !s.RecordsAside() {
			t.Fatal("the history must record golden and shadow results")
		}
		cases := []struct {
			kind  string
			extra Kind
			want  Kind
		}{
			{"", "", KindProduction},
			{result.KindGolden, "", KindGolden},
			{result.KindShadow, "", KindShadow},
			{result.KindShadow, KindGolden, KindGolden},
		}
		ids := make([]string, len(cases))
		for i, c := range cases {
			r := mkResult(i)
			r.Kind = c.kind
			ids[i] = r.ID
			var err error
			if c.extra != "" {
				err = s.PublishWith(ctx, r, Extra{Kind: c.extra})
			} else {
				err = s.Publish(ctx, r)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		flush(t, s)
		for i, c := range cases {
			row, err := s.Get(ctx, ids[i])
			if err != nil {
				t.Fatal(err)
			}
			if row.Kind != c.want {
				t.Errorf("result kind %q, extra %q: recorded as %q, want %q", c.kind, c.extra, row.Kind, c.want)
			}
		}
	})
}

package history

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/segad-edge/segad-edge/result"
)

// TestExplainStored: a result's explanation is stored as its contributions
// in full (every segment, detector and feature, unlike the MQTT payload's
// top three), and an explicit Extra.Contributions takes precedence.
func TestExplainStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := open(t, b.cfg(t))
		ctx := context.Background()
		x := &result.Explanation{Method: "path", Bias: -1.5,
			Segments:  []result.Contribution{{Name: "wires", Value: 1.9}, {Name: "body", Value: -0.25}, {Name: "lead", Value: 0.125}, {Name: "(whole map)", Value: 0.0625}, {Name: "tone", Value: 0}},
			Detectors: []result.Contribution{{Name: "ms", Value: 1.5}, {Name: "pc", Value: 0.3375}},
			Features:  []result.Contribution{{Name: "ms.seg0.mean", Value: 1.5}, {Name: "ms.seg0.skew", Value: 0.3375}, {Name: "pc.seg1.max", Value: 0}},
		}
		r := mkResult(1)
		r.Explain = x
		if err := s.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
		r2 := mkResult(2)
		r2.Explain = x
		if err := s.PublishWith(ctx, r2, Extra{Contributions: json.RawMessage(`{"given":true}`)}); err != nil {
			t.Fatal(err)
		}
		flush(t, s)
		got, err := s.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var back result.Explanation
		if err := json.Unmarshal(got.Contributions, &back); err != nil {
			t.Fatalf("contributions %s: %v", got.Contributions, err)
		}
		if back.Method != "path" || back.Bias != -1.5 || len(back.Segments) != 5 || len(back.Detectors) != 2 || len(back.Features) != 3 || back.Segments[0] != x.Segments[0] {
			t.Fatalf("stored explanation: %+v", back)
		}
		got2, err := s.Get(ctx, r2.ID)
		if err != nil {
			t.Fatal(err)
		}
		var given map[string]bool
		if err := json.Unmarshal(got2.Contributions, &given); err != nil || !given["given"] {
			t.Fatalf("Extra.Contributions not kept: %s", got2.Contributions)
		}
	})
}
